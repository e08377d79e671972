"""DSS dataset and folder names in submit(): resolved through dku_ray.dss_data against the DSS
stand-in (real dataikuapi, and `import dataiku` through the shim), then checked on moto S3 and
the real Ray head."""
from __future__ import annotations

import pytest

from dku_ray.errors import PreflightError
from dku_ray.submit import submit


@pytest.fixture
def dss(dss_standin, s3env):
    creds = s3env.credentials
    dss_standin.add_s3_connection("lake", access_key=creds.access_key, secret_key=creds.secret_key,
                                  session_token=creds.session_token, region_or_endpoint=s3env.moto.endpoint_url)
    dss_standin.add_dataset("PROJ", "train", connection="lake", bucket=s3env.data_bucket, path="/binary")
    dss_standin.add_dataset("PROJ", "train_csv", connection="lake", bucket=s3env.data_bucket, path="/csv",
                            format_type="csv")
    dss_standin.add_managed_folder("PROJ", "Fld12345", connection="lake", bucket=s3env.folder_bucket,
                                   path="/dss/${odbId}")
    return dss_standin


def test_dss_names_resolve_to_s3_with_the_connection_credentials(dss, dataiku_shim, s3env, ray_head) -> None:
    """Names, no client passed: dataiku.api_client() and the current project are used."""
    with pytest.raises(PreflightError) as info:
        submit("train", "churned", "Fld12345", cluster=ray_head.dashboard_url, show_progress=False)
    # the dataset was found on S3 through the connection (its schema was read), only the label is wrong
    assert info.value.fields == ["label"]
    assert "s3://dkr-data/binary" in str(info.value) and "f00" in str(info.value)
    assert s3env.folder_keys("dss/") == []
    assert any(r.path.endswith("/connections/lake/info") for r in dss.requests)


def test_dss_dataset_that_is_not_parquet(dss, dss_client, ray_head) -> None:
    with pytest.raises(PreflightError, match="Sync recipe"):
        submit("train_csv", "label", "Fld12345", cluster=ray_head.dashboard_url, client=dss_client,
               project_key="PROJ", show_progress=False)
