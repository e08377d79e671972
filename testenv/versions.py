"""Pinned component versions and where their binaries and Go module sources live.

testenv/versions.env is the single place where versions are pinned; build.sh sources it and
this module parses it, so the two can never disagree.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

TESTENV_DIR = Path(__file__).resolve().parent
VERSIONS_FILE = TESTENV_DIR / "versions.env"
BUILD_SCRIPT = TESTENV_DIR / "build.sh"


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse the plain KEY=value lines of a shell env file (comments and blanks ignored)."""
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=value: {raw!r}")
        out[key.strip()] = value.strip().strip("'\"")
    return out


@dataclass(frozen=True)
class Versions:
    """The versions of every component of the test environment."""

    kubernetes: str
    etcd: str
    kuberay: str
    kwok: str

    @classmethod
    def load(cls, path: Path = VERSIONS_FILE) -> "Versions":
        env = parse_env_file(path)
        return cls(
            kubernetes=env["K8S_VERSION"],
            etcd=env["ETCD_VERSION"],
            kuberay=env["KUBERAY_VERSION"],
            kwok=env["KWOK_VERSION"],
        )

    def as_dict(self) -> dict[str, str]:
        return {"kubernetes": self.kubernetes, "etcd": self.etcd, "kuberay": self.kuberay, "kwok": self.kwok}


def cache_root() -> Path:
    """Same rule as build.sh: $DKU_RAY_TESTENV_CACHE or ~/.cache/dku-ray/testenv."""
    env = os.environ.get("DKU_RAY_TESTENV_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dku-ray" / "testenv"


# component -> binaries that build.sh puts into <cache>/<component>-<version>/
BINARIES: dict[str, tuple[str, ...]] = {
    "kubernetes": ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
    "etcd": ("etcd",),
    "kwok": ("kwok",),
    "kuberay": ("ray-operator",),
}


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the built binaries for one set of versions."""

    versions: Versions
    root: Path

    def component_dir(self, component: str) -> Path:
        return self.root / f"{component}-{getattr(self.versions, component)}"

    def path(self, component: str, binary: str) -> Path:
        return self.component_dir(component) / binary

    def missing(self) -> list[str]:
        """Components whose build is absent or incomplete (build.sh writes .build-info last)."""
        out = []
        for comp, bins in BINARIES.items():
            d = self.component_dir(comp)
            if not (d / ".build-info").is_file() or not all((d / b).is_file() for b in bins):
                out.append(comp)
        return out

    @property
    def kube_apiserver(self) -> Path:
        return self.path("kubernetes", "kube-apiserver")

    @property
    def kube_controller_manager(self) -> Path:
        return self.path("kubernetes", "kube-controller-manager")

    @property
    def kube_scheduler(self) -> Path:
        return self.path("kubernetes", "kube-scheduler")

    @property
    def kubectl(self) -> Path:
        return self.path("kubernetes", "kubectl")

    @property
    def etcd(self) -> Path:
        return self.path("etcd", "etcd")

    @property
    def kwok(self) -> Path:
        return self.path("kwok", "kwok")

    @property
    def ray_operator(self) -> Path:
        return self.path("kuberay", "ray-operator")


def binaries(versions: Versions | None = None) -> Binaries:
    return Binaries(versions or Versions.load(), cache_root())


@functools.lru_cache(maxsize=None)
def go_module_dir(module: str, version: str) -> Path:
    """Directory of MODULE@VERSION in the Go module cache (downloaded by the go command if absent).

    The CRDs, RBAC rules and kwok stages are read from there so that nothing from upstream is
    copied into this repository.
    """
    env = dict(os.environ, GOTOOLCHAIN="local")
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True, text=True, env=env, cwd=str(TESTENV_DIR), check=False,
    )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"go mod download {module}@{version} failed: {proc.stderr.strip()}") from None
    if info.get("Error") or not info.get("Dir"):
        raise RuntimeError(f"go mod download {module}@{version}: {info.get('Error') or proc.stderr.strip()}")
    return Path(info["Dir"])


KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator"
KWOK_MODULE = "sigs.k8s.io/kwok"


def kuberay_module_dir(versions: Versions | None = None) -> Path:
    return go_module_dir(KUBERAY_MODULE, (versions or Versions.load()).kuberay)


def kwok_module_dir(versions: Versions | None = None) -> Path:
    return go_module_dir(KWOK_MODULE, (versions or Versions.load()).kwok)
