"""Shared DSS fixtures: a stand-in DSS, a real dataikuapi client on it, and the `dataiku` shim.

Enable them for all of tests/ with `pytest_plugins = ["tests.dss.fixtures"]` in tests/conftest.py.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterator

import dataikuapi
import pytest

from tests.dss.macro_runner import SHIM
from tests.dss_standin import DSSStandin

SHIM_TICKET = "standin-macro-ticket"


@pytest.fixture
def dss_standin() -> Iterator[DSSStandin]:
    """An empty DSS stand-in on 127.0.0.1; its admin key is `.api_key`."""
    with DSSStandin() as standin:
        yield standin


@pytest.fixture
def dss_client(dss_standin: DSSStandin) -> dataikuapi.DSSClient:
    """The real dataikuapi client, authenticated with the stand-in's admin API key."""
    return dataikuapi.DSSClient(dss_standin.url, dss_standin.api_key)


@dataclass
class DataikuShim:
    """The environment a macro sees: who runs it, in which project, against which DSS."""

    standin: DSSStandin
    monkeypatch: pytest.MonkeyPatch
    project_key: str = "PROJ"

    def run_as(self, login: str, *, admin: bool = False, groups: tuple[str, ...] = ()) -> None:
        """Make `dataiku.api_client()` authenticate as another user (a new ticket)."""
        ticket = f"standin-ticket-{login}"
        self.standin.add_api_key(ticket, login=login, admin=admin, groups=groups)
        self.monkeypatch.setenv("DKU_API_TICKET", ticket)


def _forget_dataiku() -> None:
    for name in [m for m in sys.modules if m == "dataiku" or m.startswith("dataiku.")]:
        del sys.modules[name]


@pytest.fixture
def dataiku_shim(dss_standin: DSSStandin, monkeypatch: pytest.MonkeyPatch) -> Iterator[DataikuShim]:
    """`import dataiku` works and talks to the stand-in, as an admin, with the env vars DSS sets."""
    dss_standin.add_api_key(SHIM_TICKET, login="admin", admin=True, groups=("administrators",))
    monkeypatch.setenv("DKU_BACKEND_PORT", str(dss_standin.port))
    monkeypatch.setenv("DKU_API_TICKET", SHIM_TICKET)
    monkeypatch.setenv("DKU_CURRENT_PROJECT_KEY", "PROJ")
    monkeypatch.delenv("DKU_DSS_URL", raising=False)
    monkeypatch.delenv("DKU_API_KEY", raising=False)
    monkeypatch.syspath_prepend(str(SHIM))
    _forget_dataiku()
    try:
        yield DataikuShim(dss_standin, monkeypatch)
    finally:
        _forget_dataiku()
