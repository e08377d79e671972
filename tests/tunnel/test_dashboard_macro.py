"""The Ray Dashboard Port-Forward macro, run the way DSS runs it (runnable.json defaults, `dataiku` shim,
DSS stand-in holding a cluster whose kubeconfig is the control plane's)."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from dku_ray.errors import DSSError, ExposureRefusedError
from testenv.local_ray import free_port
from tests.dss.macro_runner import load_descriptor, run_macro

from .support import get_json, tunnel_threads

MACRO = "port-forward-ray-dashboard"


def test_descriptor_keeps_the_reference_id_and_is_safe_by_default():
    descriptor = load_descriptor(MACRO)
    params = {p["name"]: p for p in descriptor["params"]}
    assert params["k8s_cluster_name"]["type"] == "CLUSTER" and params["k8s_cluster_name"]["mandatory"]
    assert descriptor["macroRoles"] == [{"type": "CLUSTER", "targetParamsKey": "k8s_cluster_name"}]
    assert descriptor["impersonate"] is False and descriptor["requiresGlobalAdmin"] is True
    assert descriptor["resultType"] == "HTML"
    assert params["bind_address"]["defaultValue"] == "127.0.0.1"
    assert params["allow_non_loopback"]["defaultValue"] is False
    assert params["ray_cluster_name"]["defaultValue"] == "ray" and params["local_port"]["defaultValue"] == 0


def test_macro_serves_for_its_duration_reports_and_frees_the_port(dataiku_shim, dss_standin, secure, ray_head,
                                                                  cluster_token, caplog):
    caplog.set_level(logging.INFO, logger="dku_ray")
    dss_standin.add_cluster("eks1", kube_config_path=str(secure.kubeconfig))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    answers: list[str] = []

    def use_the_tunnel() -> None:  # what a user does while the macro runs
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not answers:
            try:
                answers.append(get_json(url, "/api/version", {"Authorization": f"Bearer {cluster_token}"},
                                        timeout=10)["ray_version"])
            except OSError:
                time.sleep(0.2)

    user = threading.Thread(target=use_the_tunnel)
    user.start()
    began = time.monotonic()
    result = run_macro(MACRO, {"k8s_cluster_name": "eks1", "ray_cluster_name": secure.name,
                               "namespace": secure.namespace, "local_port": port, "duration_minutes": 0.1})
    elapsed = time.monotonic() - began
    user.join()
    assert answers == ["2.60.0"]
    assert 6 <= elapsed < 40
    html, progress = result
    assert url in html and "the chosen duration of 6 s ended" in html and "token auth (Secret secure" in html
    assert "Reconnections" in html and "received" in html
    assert progress and progress == sorted(progress) and progress[-1] >= 4  # uptime in seconds
    logged = caplog.text
    assert f"open {url}" in logged and "Listening on 127.0.0.1" in logged and "Tunnel: " in logged
    assert cluster_token not in logged + html
    with pytest.raises(OSError):
        get_json(url, "/api/version", timeout=2)  # nothing listens any more
    assert not tunnel_threads()


def test_aborting_the_macro_closes_the_tunnel(dataiku_shim, dss_standin, open_cluster):
    """DSS may abort a running macro with SIGTERM: the tunnel closes cleanly and nothing listens."""
    dss_standin.add_cluster("eks1", kube_config_path=str(open_cluster.kubeconfig))
    port = free_port()
    before = signal.getsignal(signal.SIGTERM)
    abort = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGTERM))
    abort.start()
    try:
        html, progress = run_macro(MACRO, {"k8s_cluster_name": "eks1", "ray_cluster_name": open_cluster.name,
                                           "namespace": open_cluster.namespace, "local_port": port})
    finally:
        abort.cancel()
    assert "stopped on request" in html and f"http://127.0.0.1:{port}" in html
    assert progress and max(progress) >= 2
    assert signal.getsignal(signal.SIGTERM) is before  # the macro's handler is gone again
    with pytest.raises(OSError):
        get_json(f"http://127.0.0.1:{port}", "/whoami", timeout=2)
    assert not tunnel_threads()


def test_macro_refuses_a_public_address_without_the_option(dataiku_shim, dss_standin, secure):
    dss_standin.add_cluster("eks1", kube_config_path=str(secure.kubeconfig))
    with pytest.raises(ExposureRefusedError, match="not a loopback address"):
        run_macro(MACRO, {"k8s_cluster_name": "eks1", "ray_cluster_name": secure.name, "namespace": secure.namespace,
                          "bind_address": "0.0.0.0", "duration_minutes": 0.05})


def test_macro_on_a_stopped_dss_cluster_says_what_to_do(dataiku_shim, dss_standin):
    dss_standin.add_cluster("eks1", state="NONE")
    with pytest.raises(DSSError, match="not running.*start it"):
        run_macro(MACRO, {"k8s_cluster_name": "eks1", "duration_minutes": 0.05})
