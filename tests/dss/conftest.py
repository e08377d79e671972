"""DSS fixtures for this folder (tests/conftest.py may also load them for every folder)."""
from tests.dss.fixtures import dataiku_shim, dss_client, dss_standin  # noqa: F401 - pytest fixtures
