"""kubeconfig_for_dss_cluster / dss_client against the DSS stand-in, through the real dataikuapi."""
from __future__ import annotations

import os
from pathlib import Path

import dataikuapi
import pytest

from dku_ray.dss_cluster import dss_client, kubeconfig_for_dss_cluster
from dku_ray.errors import DSSError


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "clusters" / "eks1" / "exec" / "kube_config"
    path.parent.mkdir(parents=True)
    path.write_text("apiVersion: v1\nkind: Config\n")
    return path


@pytest.fixture(autouse=True)
def no_dip_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIP_HOME", raising=False)


def test_running_cluster_gives_the_plugin_data_path(dss_standin, dss_client, kubeconfig):
    dss_standin.add_cluster("eks1", kube_config_path=str(kubeconfig))
    assert kubeconfig_for_dss_cluster(dss_client, "eks1") == str(kubeconfig)
    paths = [r.path for r in dss_standin.requests]
    # status is checked before the settings are read
    assert paths.index("/dip/publicapi/admin/clusters/eks1/status") < paths.index("/dip/publicapi/admin/clusters/eks1")


def test_plugin_data_wins_over_the_override(dss_standin, dss_client, kubeconfig, tmp_path):
    other = tmp_path / "other_kube_config"
    other.write_text("x")
    dss_standin.add_cluster("eks1", kube_config_path=str(kubeconfig), kube_config_override=str(other))
    assert kubeconfig_for_dss_cluster(dss_client, "eks1") == str(kubeconfig)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("NONE", "start it in Administration > Clusters"),
        ("STARTING", "still starting"),
        ("STOPPING", "being stopped"),
        ("WEIRD", "Expected RUNNING"),
    ],
)
def test_cluster_not_running_is_a_clear_error(dss_standin, dss_client, kubeconfig, state, expected):
    dss_standin.add_cluster("eks1", state=state, kube_config_path=str(kubeconfig),
                            plugin_data={"kube_config_path": str(kubeconfig)})
    with pytest.raises(DSSError) as err:
        kubeconfig_for_dss_cluster(dss_client, "eks1")
    assert "'eks1'" in str(err.value) and f"state {state}" in str(err.value)
    assert expected in str(err.value)


def test_hadoop_cluster_is_not_kubernetes(dss_standin, dss_client):
    dss_standin.add_cluster("yarn", kube_config_path=None)
    dss_standin.state.clusters["yarn"]["settings"]["architecture"] = "HADOOP"
    with pytest.raises(DSSError, match="'yarn' is a HADOOP cluster, not a Kubernetes one"):
        kubeconfig_for_dss_cluster(dss_client, "yarn")


def test_unknown_cluster(dss_standin, dss_client):
    with pytest.raises(DSSError, match=r"'nope'.*not found.*Administration > Clusters"):
        kubeconfig_for_dss_cluster(dss_client, "nope")


def test_empty_cluster_id(dss_client):
    with pytest.raises(DSSError, match="No DSS cluster was given"):
        kubeconfig_for_dss_cluster(dss_client, " ")


def test_no_plugin_data_falls_back_to_the_container_override(dss_standin, dss_client, kubeconfig):
    dss_standin.add_cluster("eks1", kube_config_path=str(kubeconfig), plugin_data=None)
    assert kubeconfig_for_dss_cluster(dss_client, "eks1") == str(kubeconfig)


def test_no_plugin_data_nor_override_falls_back_to_dip_home(dss_standin, dss_client, kubeconfig, tmp_path, monkeypatch):
    monkeypatch.setenv("DIP_HOME", str(tmp_path))
    dss_standin.add_cluster("eks1", kube_config_path=None)  # e.g. a manually declared cluster
    assert kubeconfig_for_dss_cluster(dss_client, "eks1") == str(kubeconfig)


def test_stale_plugin_path_falls_back_to_dip_home(dss_standin, dss_client, kubeconfig, tmp_path, monkeypatch):
    monkeypatch.setenv("DIP_HOME", str(tmp_path))
    dss_standin.add_cluster("eks1", kube_config_path=str(tmp_path / "gone"))
    assert kubeconfig_for_dss_cluster(dss_client, "eks1") == str(kubeconfig)


def test_no_kubeconfig_anywhere_is_a_clear_error(dss_standin, dss_client):
    dss_standin.add_cluster("eks1", kube_config_path=None)
    with pytest.raises(DSSError) as err:
        kubeconfig_for_dss_cluster(dss_client, "eks1")
    text = str(err.value)
    assert "'eks1'" in text and "no plugin data" in text and "Stop and start it again" in text


def test_missing_file_lists_every_path_tried(dss_standin, dss_client, tmp_path, monkeypatch):
    monkeypatch.setenv("DIP_HOME", str(tmp_path / "dss"))
    missing = tmp_path / "missing_kube_config"
    dss_standin.add_cluster("eks1", kube_config_path=str(missing))
    with pytest.raises(DSSError) as err:
        kubeconfig_for_dss_cluster(dss_client, "eks1")
    text = str(err.value)
    assert str(missing) in text and "does not exist" in text
    assert str(tmp_path / "dss" / "clusters" / "eks1" / "exec" / "kube_config") in text
    assert text.count(str(missing)) == 1  # the same path from plugin data and override is tried once
    assert "'eks1'" in text and "Administration > Clusters" in text


def test_directory_is_not_a_kubeconfig(dss_standin, dss_client, tmp_path):
    dss_standin.add_cluster("eks1", kube_config_path=str(tmp_path))
    with pytest.raises(DSSError, match="not a regular file"):
        kubeconfig_for_dss_cluster(dss_client, "eks1")


def test_unreadable_file(dss_standin, dss_client, kubeconfig, monkeypatch):
    kubeconfig.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make os.access answer as for the DSS user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(kubeconfig) else real_access(p, mode))
    dss_standin.add_cluster("eks1", kube_config_path=str(kubeconfig))
    with pytest.raises(DSSError, match="not readable"):
        kubeconfig_for_dss_cluster(dss_client, "eks1")


def test_non_admin_is_told_admin_rights_are_needed(dss_standin, kubeconfig):
    dss_standin.add_cluster("eks1", kube_config_path=str(kubeconfig))
    dss_standin.add_api_key("user-key", login="alice", groups=("data_team",))
    client = dataikuapi.DSSClient(dss_standin.url, "user-key")
    with pytest.raises(DSSError, match="administrator rights"):
        kubeconfig_for_dss_cluster(client, "eks1")


def test_wrong_api_key_is_reported_as_such(dss_standin, kubeconfig):
    dss_standin.add_cluster("eks1", kube_config_path=str(kubeconfig))
    client = dataikuapi.DSSClient(dss_standin.url, "not-a-key")
    with pytest.raises(DSSError) as err:
        kubeconfig_for_dss_cluster(client, "eks1")
    assert "rejected the credentials" in str(err.value)
    assert "not-a-key" not in str(err.value)


def test_unreachable_dss(kubeconfig):
    client = dataikuapi.DSSClient("http://127.0.0.1:9", "key")  # discard port: nothing listens
    with pytest.raises(DSSError, match="cannot reach DSS"):
        kubeconfig_for_dss_cluster(client, "eks1")


def test_dss_client_outside_dss_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dataiku", None)  # as if not installed
    with pytest.raises(DSSError, match="only works inside DSS"):
        dss_client()


def test_dss_client_inside_dss_runs_as_the_current_user(dataiku_shim, kubeconfig):
    dataiku_shim.standin.add_cluster("eks1", kube_config_path=str(kubeconfig))
    client = dss_client()
    assert isinstance(client, dataikuapi.DSSClient)
    assert client.get_auth_info()["authIdentifier"] == "admin"
    assert kubeconfig_for_dss_cluster(client, "eks1") == str(kubeconfig)
    dataiku_shim.run_as("bob")
    with pytest.raises(DSSError, match="administrator rights"):
        kubeconfig_for_dss_cluster(dss_client(), "eks1")
