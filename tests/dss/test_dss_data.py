"""dataset_location / folder_location / connection_access against the DSS stand-in (real dataikuapi)."""
from __future__ import annotations

import logging

import dataikuapi
import pytest

from dku_ray.dss_data import DatasetLocation, connection_access, dataset_location, folder_location
from dku_ray.errors import DSSError

ACCESS_KEY = "ASIAEXAMPLEACCESS0001"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYsecretKEY1"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLEsessionTOKENvalue0001"
PAIR_ACCESS = "AKIAEXAMPLEPAIRKEY002"
PAIR_SECRET = "pairSECRETvalue/should/never/show0002"
SECRETS = (SECRET_KEY, SESSION_TOKEN, PAIR_SECRET, ACCESS_KEY, PAIR_ACCESS)


@pytest.fixture
def dss(dss_standin):
    """A project PROJ with an STS connection, a key-pair connection and typical objects."""
    s = dss_standin
    s.add_s3_connection("s3_sts", access_key=ACCESS_KEY, secret_key=SECRET_KEY, session_token=SESSION_TOKEN,
                        region_or_endpoint="eu-west-3")
    s.add_s3_connection("s3_pair", access_key=PAIR_ACCESS, secret_key=PAIR_SECRET,
                        region_or_endpoint="http://127.0.0.1:9000", use_path_mode=True)
    s.add_connection("filesystem_managed", "Filesystem", {"root": "/data/dss/managed"})
    s.add_connection("pg", "PostgreSQL", {"host": "db", "user": "dss"})
    s.add_dataset("PROJ", "train", connection="s3_sts", bucket="lake")
    s.add_dataset("PROJ", "train_csv", connection="s3_sts", bucket="lake", format_type="csv")
    s.add_dataset("PROJ", "local", connection="filesystem_managed", type="Filesystem", format_type="csv")
    s.add_dataset("PROJ", "table", connection="pg", type="PostgreSQL", path=None, format_type=None,
                  extra_params={"mode": "table", "table": "${projectKey}_table"})
    s.add_managed_folder("PROJ", "CcLoevDh", connection="s3_pair", bucket="results", name="models")
    s.add_managed_folder("PROJ", "LocalFdr", connection="filesystem_managed", type="Filesystem")
    return s


def test_s3_parquet_dataset(dss, dss_client):
    loc = dataset_location(dss_client, "PROJ", "train")
    assert isinstance(loc, DatasetLocation)
    assert loc.dataset == "PROJ.train" and loc.format_type == "parquet" and loc.partition_dimensions == ()
    s3 = loc.location
    assert (s3.bucket, s3.prefix, s3.uri) == ("lake", "PROJ/train", "s3://lake/PROJ/train")
    assert (s3.region, s3.endpoint_url, s3.connection) == ("eu-west-3", None, "s3_sts")
    assert s3.credentials.access_key == ACCESS_KEY
    assert s3.credentials.secret_key == SECRET_KEY
    assert s3.credentials.session_token == SESSION_TOKEN
    info_calls = [r for r in dss.requests if r.path.endswith("/connections/s3_sts/info")]
    assert info_calls and info_calls[-1].query == {"contextualProjectKey": "PROJ"}


def test_dataset_of_another_project(dss, dss_client):
    dss.add_dataset("OTHER", "shared", connection="s3_sts", bucket="lake", partition_dimensions=["day"])
    loc = dataset_location(dss_client, "PROJ", "OTHER.shared")
    assert loc.dataset == "OTHER.shared" and loc.location.prefix == "OTHER/shared"
    assert loc.partition_dimensions == ("day",)
    info_calls = [r for r in dss.requests if r.path.endswith("/info")]
    assert info_calls[-1].query == {"contextualProjectKey": "OTHER"}


def test_project_and_instance_variables_are_expanded(dss, dss_client):
    dss.set_instance_variables({"env": "prod", "zone": "instance"})
    dss.set_project_variables("PROJ", standard={"zone": "standard", "team": "std"}, local={"team": "local"})
    dss.add_dataset("PROJ", "vars", connection="s3_sts", bucket="lake-${env}", path="/${zone}/${team}/${projectKey}/x")
    loc = dataset_location(dss_client, "PROJ", "vars").location
    assert (loc.bucket, loc.prefix) == ("lake-prod", "standard/local/PROJ/x")


def test_builtin_variables_need_no_extra_call(dss, dss_client):
    dataset_location(dss_client, "PROJ", "train")
    assert not any("variables" in r.path for r in dss.requests)


def test_undefined_variable_is_named(dss, dss_client):
    dss.add_dataset("PROJ", "broken", connection="s3_sts", bucket="lake", path="/${projectKey}/${nope}/x")
    with pytest.raises(DSSError, match=r"PROJ\.broken.*\$\{nope\}.*Variables"):
        dataset_location(dss_client, "PROJ", "broken")


def test_csv_dataset_is_refused_with_the_fix(dss, dss_client):
    with pytest.raises(DSSError) as err:
        dataset_location(dss_client, "PROJ", "train_csv")
    text = str(err.value)
    assert "PROJ.train_csv" in text and "S3 dataset in csv format" in text
    assert "Sync recipe" in text and "Parquet" in text


def test_non_s3_dataset_is_refused_with_its_type(dss, dss_client):
    with pytest.raises(DSSError, match=r"PROJ\.local is a Filesystem dataset in csv format.*'filesystem_managed'"):
        dataset_location(dss_client, "PROJ", "local")
    with pytest.raises(DSSError, match=r"PROJ\.table is a PostgreSQL dataset on connection 'pg'"):
        dataset_location(dss_client, "PROJ", "table")


def test_unknown_dataset_and_unknown_project(dss, dss_client):
    with pytest.raises(DSSError, match=r"dataset PROJ\.nope: not found.*case-sensitive"):
        dataset_location(dss_client, "PROJ", "nope")
    with pytest.raises(DSSError, match=r"dataset My Project\.train: access refused.*project key"):
        dataset_location(dss_client, "My Project", "train")


def test_dataset_without_project(dss_client):
    with pytest.raises(DSSError, match="PROJECTKEY.train"):
        dataset_location(dss_client, "", "train")


def test_folder_on_s3_uses_its_own_connection(dss, dss_client):
    loc = folder_location(dss_client, "PROJ", "CcLoevDh")
    assert (loc.bucket, loc.prefix, loc.connection) == ("results", "PROJ/CcLoevDh", "s3_pair")
    assert (loc.region, loc.endpoint_url) == (None, "http://127.0.0.1:9000")
    assert loc.credentials.access_key == PAIR_ACCESS and loc.credentials.session_token is None
    assert folder_location(dss_client, "X", "PROJ.CcLoevDh") == loc


def test_folder_not_on_s3_or_unknown(dss, dss_client):
    with pytest.raises(DSSError, match=r"PROJ\.LocalFdr.*Filesystem connection.*Amazon S3"):
        folder_location(dss_client, "PROJ", "LocalFdr")
    with pytest.raises(DSSError, match=r"PROJ\.models: not found.*id"):
        folder_location(dss_client, "PROJ", "models")  # the display name, not the id


def test_sts_and_key_pair_credentials(dss, dss_client):
    sts = connection_access(dss_client, "s3_sts", "PROJ")
    assert sts.credentials.session_token == SESSION_TOKEN and sts.region == "eu-west-3"
    pair = connection_access(dss_client, "s3_pair")
    assert pair.credentials.session_token is None and pair.credentials.secret_key == PAIR_SECRET
    credentials, region, endpoint = pair  # a plain 3-tuple too
    assert (region, endpoint) == (None, "http://127.0.0.1:9000")
    assert "contextualProjectKey" not in [r for r in dss.requests if r.path.endswith("s3_pair/info")][-1].query


@pytest.mark.parametrize(
    ("value", "region", "endpoint"),
    [
        ("", None, None),
        ("us-east-1", "us-east-1", None),
        ("s3.eu-central-1.amazonaws.com", "eu-central-1", None),
        ("https://minio.example.com:9000/", None, "https://minio.example.com:9000"),
        ("objects.example.com", None, "https://objects.example.com"),
        ("https://bucket.vpce-0a1b.s3.us-west-2.vpce.amazonaws.com", "us-west-2",
         "https://bucket.vpce-0a1b.s3.us-west-2.vpce.amazonaws.com"),
    ],
)
def test_region_or_endpoint(dss_standin, dss_client, value, region, endpoint):
    dss_standin.add_s3_connection("c", access_key="AK", secret_key="SK", region_or_endpoint=value)
    access = connection_access(dss_client, "c")
    assert (access.region, access.endpoint_url) == (region, endpoint)


def test_bucket_and_path_restrictions_of_the_connection(dss_standin, dss_client):
    dss_standin.add_s3_connection("jail", access_key="AK", secret_key="SK", chbucket="only-bucket", chroot="/team-a/")
    dss_standin.add_dataset("PROJ", "d", connection="jail", bucket="")
    loc = dataset_location(dss_client, "PROJ", "d").location
    assert (loc.bucket, loc.prefix) == ("only-bucket", "team-a/PROJ/d")


def test_dataset_without_bucket(dss, dss_client):
    dss.add_dataset("PROJ", "nobucket", connection="s3_sts", bucket="")
    with pytest.raises(DSSError, match=r"PROJ\.nobucket has no S3 bucket"):
        dataset_location(dss_client, "PROJ", "nobucket")


def test_details_not_readable_asks_for_the_grant(dss_standin, dss):
    dss_standin.add_s3_connection("locked", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                  session_token=SESSION_TOKEN, details_readable_by=["ml_team"])
    dss_standin.add_dataset("PROJ", "locked_ds", connection="locked", bucket="lake")
    dss_standin.add_api_key("alice-key", login="alice", groups=("analysts",))
    alice = dataikuapi.DSSClient(dss_standin.url, "alice-key")
    with pytest.raises(DSSError) as err:
        dataset_location(alice, "PROJ", "locked_ds")
    assert "'locked'" in str(err.value) and "Details readable by" in str(err.value)
    dss_standin.add_api_key("bob-key", login="bob", groups=("ml_team",))
    bob = dataikuapi.DSSClient(dss_standin.url, "bob-key")
    assert connection_access(bob, "locked").credentials.session_token == SESSION_TOKEN


def test_connection_without_aws_credential(dss_standin, dss_client):
    dss_standin.add_s3_connection("env", access_key=None)
    with pytest.raises(DSSError, match=r"no AWS credential for connection 'env'.*ENVIRONMENT.*key\s+pair or STS"):
        connection_access(dss_client, "env")
    dss_standin.add_s3_connection("mine", access_key=None, per_user=True, aws_mode="KEYPAIR")
    with pytest.raises(DSSError, match=r"Profile > Credentials"):
        connection_access(dss_client, "mine")


def test_not_an_s3_connection_or_unknown(dss, dss_client):
    with pytest.raises(DSSError, match="'pg' is a PostgreSQL connection, not an Amazon S3 one"):
        connection_access(dss_client, "pg")
    with pytest.raises(DSSError, match="'ghost': not found"):
        connection_access(dss_client, "ghost")


def test_wrong_api_key(dss, dss_standin):
    bad = dataikuapi.DSSClient(dss_standin.url, "wrong-key")
    for call in (lambda: dataset_location(bad, "PROJ", "train"), lambda: connection_access(bad, "s3_sts")):
        with pytest.raises(DSSError, match="rejected the credentials of this client"):
            call()


def test_no_secret_in_any_message_repr_or_log(dss, dss_standin, dss_client, caplog):
    caplog.set_level(logging.DEBUG)
    dss_standin.add_s3_connection("locked", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                  session_token=SESSION_TOKEN, details_readable_by="NONE")
    dss_standin.add_api_key("alice-key", login="alice")
    alice = dataikuapi.DSSClient(dss_standin.url, "alice-key")
    texts: list[str] = []
    results = [
        dataset_location(dss_client, "PROJ", "train"),
        folder_location(dss_client, "PROJ", "CcLoevDh"),
        connection_access(dss_client, "s3_sts"),
        connection_access(dss_client, "s3_pair"),
    ]
    for r in results:
        texts += [repr(r), str(r)]
    texts += [repr(results[0].location), str(results[0].location), repr(results[1].credentials)]
    failing = [
        lambda: dataset_location(dss_client, "PROJ", "train_csv"),
        lambda: dataset_location(dss_client, "PROJ", "local"),
        lambda: folder_location(dss_client, "PROJ", "LocalFdr"),
        lambda: connection_access(alice, "locked"),
        lambda: connection_access(dss_client, "pg"),
        lambda: connection_access(dataikuapi.DSSClient(dss_standin.url, SECRET_KEY), "s3_sts"),
    ]
    for call in failing:
        with pytest.raises(DSSError) as err:
            call()
        texts += [str(err.value), repr(err.value)]
    texts.append(caplog.text)
    assert len(texts) > 15
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_variables_inside_dss_use_the_resolved_endpoint(dss, dataiku_shim):
    from dku_ray.dss_cluster import dss_client

    dss.set_project_variables("PROJ", standard={"zone": "z1"})
    dss.add_dataset("PROJ", "vars", connection="s3_sts", bucket="lake", path="/${zone}/${projectKey}")
    assert dataset_location(dss_client(), "PROJ", "vars").location.prefix == "z1/PROJ"
    assert any(r.path.endswith("/projects/PROJ/variables-resolved") for r in dss.requests)


def test_variables_outside_dss_for_a_non_admin(dss, dss_standin):
    """Outside DSS dataikuapi cannot resolve variables; project variables still work for any reader."""
    dss.set_instance_variables({"env": "prod"})
    dss.set_project_variables("PROJ", standard={"zone": "z1"})
    dss.add_dataset("PROJ", "vars", connection="s3_sts", bucket="lake", path="/${zone}/${projectKey}")
    dss.add_dataset("PROJ", "envvar", connection="s3_sts", bucket="lake-${env}")
    dss_standin.add_api_key("alice-key", login="alice")
    alice = dataikuapi.DSSClient(dss_standin.url, "alice-key")
    assert dataset_location(alice, "PROJ", "vars").location.prefix == "z1/PROJ"
    with pytest.raises(DSSError, match=r"\$\{env\}"):  # instance variables need admin rights outside DSS
        dataset_location(alice, "PROJ", "envvar")
