"""Use the testenv fixtures here, unless the plugin was already enabled (e.g. with -p)."""

import pytest

PLUGIN = "testenv.pytest_plugin"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)
