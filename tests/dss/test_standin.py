"""The DSS stand-in, the `dataiku` shim and the macro runner behave like the real things."""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import dataikuapi
import pytest
import requests
from dataikuapi.dss.admin import DSSConnectionInfo
from dataikuapi.dss.dataset import FSLikeDatasetSettings
from dataikuapi.utils import DataikuException

from tests.dss.macro_runner import load_descriptor, run_macro
from tests.dss_standin import DSSStandin


def test_binds_loopback_only_and_stops(dss_standin):
    assert dss_standin.url.startswith("http://127.0.0.1:")
    with DSSStandin() as other:
        port = other.port
        assert other._server.server_address[0] == "127.0.0.1"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_api_key_is_enforced_with_dss_error_bodies(dss_standin):
    url = dss_standin.url + "/dip/publicapi/auth/info"
    for auth in (None, ("wrong", "")):
        res = requests.get(url, auth=auth, timeout=5)
        assert res.status_code == 401
        body = res.json()
        assert body["errorType"] == "com.dataiku.dip.exceptions.UnauthorizedException" and body["message"]
    ok = requests.get(url, auth=(dss_standin.api_key, ""), timeout=5)
    assert ok.status_code == 200 and ok.json()["authIdentifier"] == "admin"
    with pytest.raises(DataikuException, match="UnauthorizedException"):
        dataikuapi.DSSClient(dss_standin.url, "wrong").get_auth_info()


def test_internal_ticket_authenticates_like_inside_dss(dss_standin):
    dss_standin.add_api_key("tkt", login="carol", groups=("g",))
    info = dataikuapi.DSSClient(dss_standin.url, internal_ticket="tkt").get_auth_info()
    assert (info["authIdentifier"], info["groups"]) == ("carol", ["g"])


def test_not_found_and_project_refusal_match_dss(dss_standin, dss_client):
    dss_standin.add_project("PROJ")
    with pytest.raises(DataikuException, match=r"NotFoundException: dataset does not exist: PROJ\.x"):
        dss_client.get_project("PROJ").get_dataset("x").get_settings()
    with pytest.raises(DataikuException, match="UnauthorizedException: Failed to read project permissions"):
        dss_client.get_project("NOPE").get_dataset("x").get_settings()
    res = requests.get(dss_standin.url + "/dip/publicapi/projects/PROJ/datasets/x",
                       auth=(dss_standin.api_key, ""), timeout=5)
    assert res.status_code == 404 and res.headers["Content-Type"] == "application/json"
    res = requests.get(dss_standin.url + "/dip/publicapi/no/such/endpoint", auth=(dss_standin.api_key, ""), timeout=5)
    assert res.status_code == 404


def test_cluster_endpoints_are_admin_only(dss_standin, dss_client):
    dss_standin.add_cluster("eks1", kube_config_path="/x/kube_config")
    dss_standin.add_cluster("gke", state="NONE")
    listed = {c["id"]: c["state"] for c in dss_client.list_clusters()}
    assert listed == {"eks1": "RUNNING", "gke": "NONE"}
    settings = dss_client.get_cluster("eks1").get_settings()
    assert settings.get_plugin_data()["kube_config_path"] == "/x/kube_config"
    overrides = settings.get_raw()["containerSettings"]["executionConfigsGenericOverrides"]
    assert overrides["kubeConfigPath"] == "/x/kube_config"
    assert dss_client.get_cluster("gke").get_settings().get_plugin_data() is None
    dss_standin.set_cluster_state("gke", "STARTING")
    assert dss_client.get_cluster("gke").get_status().get_raw()["state"] == "STARTING"
    dss_standin.add_api_key("k", login="dave")
    with pytest.raises(DataikuException, match="not admin"):
        dataikuapi.DSSClient(dss_standin.url, "k").get_cluster("eks1").get_status()


def test_connection_info_shape_and_readability(dss_standin, dss_client):
    dss_standin.add_project("PROJ")
    dss_standin.add_s3_connection("sts", access_key="AK", secret_key="SK", session_token="TK")
    dss_standin.add_s3_connection("pair", access_key="AK2", secret_key="SK2", details_readable_by=["ops"])
    info = dss_client.get_connection("sts").get_info(contextual_project_key="PROJ")
    assert isinstance(info, DSSConnectionInfo) and info.get_type() == "EC2"
    assert info.get_aws_credential() == {"accessKey": "AK", "secretKey": "SK", "sessionToken": "TK"}
    assert info.get_params()["credentialsMode"] == "STS_ASSUME_ROLE" and info.get_credential_mode() == "GLOBAL"
    assert dss_standin.requests[-1].query == {"contextualProjectKey": "PROJ"}
    assert "sessionToken" not in dss_client.get_connection("pair").get_info().get_aws_credential()
    dss_standin.add_api_key("k", login="erin", groups=("analysts",))
    with pytest.raises(DataikuException, match="not readable"):
        dataikuapi.DSSClient(dss_standin.url, "k").get_connection("pair").get_info()
    dss_standin.add_s3_connection("env", access_key=None)
    with pytest.raises(ValueError, match="No AWS credential"):
        dss_client.get_connection("env").get_info().get_aws_credential()


def test_dataset_and_folder_settings_keep_variables_unexpanded(dss_standin, dss_client):
    dss_standin.add_s3_connection("s3", access_key="AK", secret_key="SK")
    dss_standin.add_dataset("PROJ", "train", connection="s3", bucket="b")
    dss_standin.add_managed_folder("PROJ", "AbCd1234", connection="s3", bucket="b", name="models")
    settings = dss_client.get_project("PROJ").get_dataset("train").get_settings()
    assert isinstance(settings, FSLikeDatasetSettings) and settings.type == "S3"
    assert settings.get_raw_params()["path"] == "/${projectKey}/train"
    assert settings.get_raw()["formatType"] == "parquet"
    folder = dss_client.get_project("PROJ").get_managed_folder("AbCd1234").get_settings()
    assert folder.type == "S3" and folder.get_raw_params()["path"] == "/${projectKey}/${odbId}"
    assert folder.get_raw()["name"] == "models"


def test_variables(dss_standin, dss_client):
    dss_standin.set_instance_variables({"a": "inst", "n": 3})
    dss_standin.set_project_variables("PROJ", standard={"a": "std", "b": "std"}, local={"b": "loc"})
    assert dss_client.get_project("PROJ").get_variables() == {"standard": {"a": "std", "b": "std"}, "local": {"b": "loc"}}
    res = requests.get(dss_standin.url + "/dip/publicapi/projects/PROJ/variables-resolved",
                       params={"typed": "false"}, auth=(dss_standin.api_key, ""), timeout=5)
    assert res.json() == {"a": "std", "b": "loc", "n": "3"}
    assert dss_client.get_global_variables() == {"a": "inst", "n": 3}


def test_shim_api_client_and_project_key(dataiku_shim):
    import dataiku

    assert dataiku.default_project_key() == "PROJ"
    assert dataiku.api_client().get_auth_info()["authIdentifier"] == "admin"
    dataiku_shim.run_as("frank", groups=("g1",))
    assert dataiku.api_client().get_auth_info()["authIdentifier"] == "frank"


def test_shim_remote_mode(dataiku_shim, monkeypatch):
    import dataiku

    monkeypatch.delenv("DKU_BACKEND_PORT")
    monkeypatch.setenv("DKU_DSS_URL", dataiku_shim.standin.url)
    monkeypatch.setenv("DKU_API_KEY", dataiku_shim.standin.api_key)
    assert dataiku.api_client().get_auth_info()["authIdentifier"] == "admin"


def test_shim_is_not_importable_without_the_fixture():
    assert "dataiku" not in sys.modules
    with pytest.raises(ImportError):
        import dataiku  # noqa: F401


def test_result_table(dataiku_shim):
    from dataiku.runnables import ResultTable

    rt = ResultTable()
    rt.set_name("Pods")
    rt.add_column("pod", "Pod", "STRING")
    rt.add_column("ports", "Ports", "STRING_LIST")
    rt.add_record(["head-0", ["8265", "10001"]])
    with pytest.raises(ValueError, match="1 cell.*2 column"):
        rt.add_record(["Ray Cluster endpoint: http://10.0.0.1:8265"])  # the upstream plugin's bug
    with pytest.raises(TypeError):
        rt.add_record("head-1")
    with pytest.raises(TypeError, match="STRING_LIST"):
        rt.add_record(["head-1", "8265"])
    with pytest.raises(ValueError, match="type 'INT'"):
        rt.add_column("n", "N", "INT")
    with pytest.raises(ValueError, match="after rows"):
        rt.add_column("extra", "Extra", "STRING")
    assert rt.to_dict() == {
        "name": "Pods",
        "columns": [{"id": "pod", "label": "Pod", "type": "STRING"},
                    {"id": "ports", "label": "Ports", "type": "STRING_LIST"}],
        "records": [["head-0", ["8265", "10001"]]],
    }
    assert rt.rows_as_dicts() == [{"pod": "head-0", "ports": ["8265", "10001"]}]


def _write_macro(root: Path, macro_id: str, descriptor: str, code: str) -> None:
    folder = root / macro_id
    folder.mkdir(parents=True)
    (folder / "runnable.json").write_text(descriptor)
    (folder / "runnable.py").write_text(code)


MACRO = '''
import dataiku
from dataiku.runnables import Runnable, ResultTable
from dku_ray.dss_cluster import kubeconfig_for_dss_cluster


class Helper:
    pass


class ShowKubeconfig(Runnable):
    def __init__(self, project_key, config, plugin_config):
        self.project_key, self.config, self.plugin_config = project_key, config, plugin_config

    def get_progress_target(self):
        return (2, "NONE")

    def run(self, progress_callback):
        progress_callback(1)
        path = kubeconfig_for_dss_cluster(dataiku.api_client(), self.config["cluster"])
        progress_callback(2)
        rt = ResultTable()
        rt.add_column("key", "Key", "STRING")
        rt.add_column("value", "Value", "STRING")
        rt.add_record(["kubeconfig", path])
        rt.add_record(["project", self.project_key + "/" + dataiku.default_project_key()])
        rt.add_record(["workers", str(self.config["workers"])])
        rt.add_record(["plugin", self.plugin_config.get("p", "-")])
        return rt
'''
DESCRIPTOR = json.dumps({
    "meta": {"label": "Show kubeconfig"},
    "resultType": "RESULT_TABLE",
    "params": [{"name": "cluster", "type": "CLUSTER"}, {"name": "workers", "type": "INT", "defaultValue": 2}],
})


def test_run_macro(dataiku_shim, tmp_path):
    kube = tmp_path / "kube_config"
    kube.write_text("x")
    dataiku_shim.standin.add_cluster("eks1", kube_config_path=str(kube))
    _write_macro(tmp_path, "show", DESCRIPTOR, MACRO)
    seen = []
    result, progress = run_macro("show", {"cluster": "eks1"}, {"p": "v"}, project_key="P2",
                                 progress=seen.append, runnables=tmp_path)
    assert progress == [1, 2] == seen
    assert result.rows_as_dicts() == [
        {"key": "kubeconfig", "value": str(kube)},
        {"key": "project", "value": "P2/P2"},
        {"key": "workers", "value": "2"},
        {"key": "plugin", "value": "v"},
    ]
    assert not any(name.startswith("_macro_show") for name in sys.modules)


def test_run_macro_checks_the_descriptor_and_the_result(dataiku_shim, tmp_path):
    _write_macro(tmp_path, "badjson", "{not json", MACRO)
    with pytest.raises(AssertionError, match="not valid JSON"):
        load_descriptor("badjson", tmp_path)
    _write_macro(tmp_path, "html", json.dumps({"resultType": "HTML"}), MACRO)
    kube = tmp_path / "kube_config"
    kube.write_text("x")
    dataiku_shim.standin.add_cluster("eks1", kube_config_path=str(kube))
    with pytest.raises(AssertionError, match="resultType HTML"):
        run_macro("html", {"cluster": "eks1", "workers": 1}, runnables=tmp_path)
    _write_macro(tmp_path, "two", DESCRIPTOR, MACRO + "\nclass Second(ShowKubeconfig):\n    pass\n")
    with pytest.raises(AssertionError, match="exactly one Runnable subclass"):
        run_macro("two", {"cluster": "eks1"}, runnables=tmp_path)
