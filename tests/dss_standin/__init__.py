"""A small, faithful stand-in for the DSS public REST API, for tests driven by the real dataikuapi.

    with DSSStandin() as dss:
        dss.add_cluster("eks1", kube_config_path="/tmp/kc")
        client = dataikuapi.DSSClient(dss.url, dss.api_key)

Endpoints and their dataikuapi callers are listed in `routes.py`; setup helpers in `server.py`.
"""
from .server import DSSStandin, Principal, Request

__all__ = ["DSSStandin", "Principal", "Request"]
