"""pytest fixtures for the local control plane.  Enable with
`pytest_plugins = ["testenv.pytest_plugin"]` or `-p testenv.pytest_plugin`.

Fixtures: control_plane (session), kube_api, kuberay_crds (session), namespace,
third_party_operator (session).  A fresh clone works: missing binaries are built first
(testenv/build.sh, progress shown live), and every process is stopped at session end, also
when tests fail or the run is interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import signal
import threading
import time
import uuid
from typing import Any, Iterator, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .controlplane import ControlPlane, ensure_built
from .versions import binaries


@contextlib.contextmanager
def _uncaptured(config: pytest.Config) -> Iterator[None]:
    """Let long setup (builds, startup timing) print live instead of into pytest's capture."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        yield
        return
    with capman.global_and_fixture_disabled():
        yield


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + controller-manager + scheduler + kwok, once per session."""
    # SIGTERM (e.g. a CI timeout) would skip all teardown: turn it into a KeyboardInterrupt,
    # on which pytest still finalizes fixtures.  (A SIGKILLed run is cleaned by the next one.)
    previous = signal.getsignal(signal.SIGTERM)
    own_handler = previous == signal.SIG_DFL and threading.current_thread() is threading.main_thread()
    if own_handler:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    cp = ControlPlane()
    atexit.register(cp.stop)  # last resort if the session dies without fixture teardown
    try:
        with _uncaptured(request.config):
            ensure_built(binaries())
            cp.start()
        yield cp
    finally:
        if request.session.testsfailed:
            cp.failed = True  # keep logs and print their tails
        with _uncaptured(request.config):
            cp.stop()
        atexit.unregister(cp.stop)
        if own_handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """A fresh kubernetes ApiClient (admin) for this test; the global config is never touched."""
    api = control_plane.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def kuberay_crds(control_plane: ControlPlane) -> list[str]:
    """The official KubeRay CRDs, installed with server-side apply; returns their names."""
    return control_plane.install_kuberay_crds()


def _namespace_name(node_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace with a unique name (its `default` ServiceAccount exists), deleted after."""
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    name = _namespace_name(request.node.name)
    core.create_namespace(cast(Any, {"metadata": {"name": name, "labels": {"dku-ray-testenv/test": "true"}}}),
                          _preload_content=False)
    deadline = time.monotonic() + 30  # pods are rejected until kube-controller-manager made it
    while True:
        try:
            core.read_namespaced_service_account("default", name, _preload_content=False)
            break
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, _preload_content=False)  # not waited for
        except ApiException as exc:
            if exc.status != 404:
                raise
        finally:
            api.close()


@pytest.fixture(scope="session")
def third_party_operator(control_plane: ControlPlane, kuberay_crds: list[str]) -> Iterator[str]:
    """The KubeRay operator installed "by someone else" (Helm-like objects); yields its namespace."""
    ns = control_plane.install_operator_as_third_party()
    try:
        yield ns
    finally:
        control_plane.uninstall_third_party_operator()
