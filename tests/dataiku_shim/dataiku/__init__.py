"""A minimal `dataiku` package for tests of plugin macros (the real one only exists inside DSS).

Only what the macros use: `api_client()` and `default_project_key()`, configured from the same
environment variables DSS sets for the code it runs:

- inside DSS: `DKU_BACKEND_PORT` + `DKU_API_TICKET` (the running user's ticket, sent as the
  X-DKU-APITicket header) and `DKU_CURRENT_PROJECT_KEY`;
- remote use, as documented for the `dataiku` package outside DSS: `DKU_DSS_URL` + `DKU_API_KEY`.

Tests put this folder on sys.path only through the `dataiku_shim` fixture.
"""
from __future__ import annotations

import os

import dataikuapi

__all__ = ["api_client", "default_project_key"]


def api_client() -> dataikuapi.DSSClient:
    """A public-API client authenticated as the user running the code."""
    port = os.environ.get("DKU_BACKEND_PORT")
    ticket = os.environ.get("DKU_API_TICKET")
    if port and ticket:
        return dataikuapi.DSSClient(f"http://127.0.0.1:{port}", internal_ticket=ticket)
    url = os.environ.get("DKU_DSS_URL")
    key = os.environ.get("DKU_API_KEY")
    if url and key:
        return dataikuapi.DSSClient(url, api_key=key)
    raise Exception(
        "No DSS to connect to: set DKU_BACKEND_PORT and DKU_API_TICKET (as inside DSS) "
        "or DKU_DSS_URL and DKU_API_KEY (remote), e.g. with the dataiku_shim fixture"
    )


def default_project_key() -> str:
    """The project the code runs in (a macro's project)."""
    key = os.environ.get("DKU_CURRENT_PROJECT_KEY")
    if not key:
        raise Exception("Default project key is not specified (no DKU_CURRENT_PROJECT_KEY in env)")
    return key
