"""A throw-away PKI for one control-plane run, made with the openssl command line tool.

TLS and client-certificate authentication are on everywhere, as in a real cluster, so the
tests exercise the same auth paths as production.  EC P-256 keys keep generation fast (~20 ms
per certificate); openssl avoids a Python crypto dependency.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=str(cwd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


class Pki:
    """CA plus serving/client certificates, all written to one directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = CertPair(self.dir / "ca.crt", self.dir / "ca.key")

    def _key(self, name: str) -> Path:
        key = self.dir / f"{name}.key"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key.name, cwd=self.dir)
        return key

    def create_ca(self) -> CertPair:
        self._key("ca")
        _openssl("req", "-x509", "-new", "-key", "ca.key", "-days", "30", "-subj", "/CN=dku-ray-testenv-ca",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                 "-out", "ca.crt", cwd=self.dir)
        return self.ca

    def issue(self, name: str, cn: str, orgs: tuple[str, ...] = (), *, server_sans: tuple[str, ...] = (),
              client: bool = False) -> CertPair:
        """Issue a leaf certificate signed by the CA (server if SANs given, client if client=True)."""
        key = self._key(name)
        subj = "/" + "/".join([f"O={o}" for o in orgs] + [f"CN={cn}"])
        usages = (["serverAuth"] if server_sans else []) + (["clientAuth"] if client else [])
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={','.join(usages)}",
        ]
        if server_sans:
            ext.append("subjectAltName=" + ",".join(server_sans))
        extfile = self.dir / f"{name}.ext"
        extfile.write_text("\n".join(ext) + "\n")
        _openssl("req", "-new", "-key", key.name, "-subj", subj, "-out", f"{name}.csr", cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "30", "-extfile", extfile.name, "-out", f"{name}.crt", cwd=self.dir)
        return CertPair(self.dir / f"{name}.crt", key)

    def service_account_keys(self) -> tuple[Path, Path]:
        """Key pair with which the apiserver signs (private) and verifies (public) SA tokens."""
        key = self._key("sa")
        _openssl("pkey", "-in", key.name, "-pubout", "-out", "sa.pub", cwd=self.dir)
        return key, self.dir / "sa.pub"


def write_kubeconfig(path: Path, server: str, ca: Path, client: CertPair, *, user: str,
                     namespace: str = "default") -> Path:
    """Write a kubeconfig that authenticates with a client certificate (paths, not inline data)."""
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: dku-ray-testenv\n"
        f"  cluster: {{server: '{server}', certificate-authority: '{ca}'}}\n"
        "users:\n"
        f"- name: {user}\n"
        f"  user: {{client-certificate: '{client.cert}', client-key: '{client.key}'}}\n"
        "contexts:\n"
        "- name: dku-ray-testenv\n"
        f"  context: {{cluster: dku-ray-testenv, user: {user}, namespace: {namespace}}}\n"
        "current-context: dku-ray-testenv\n"
    )
    return path


def write_token_kubeconfig(path: Path, server: str, ca: Path, token: str, *, user: str,
                           namespace: str = "default") -> Path:
    """Write a kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount token)."""
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: dku-ray-testenv\n"
        f"  cluster: {{server: '{server}', certificate-authority: '{ca}'}}\n"
        "users:\n"
        f"- name: {user}\n"
        f"  user: {{token: '{token}'}}\n"
        "contexts:\n"
        "- name: dku-ray-testenv\n"
        f"  context: {{cluster: dku-ray-testenv, user: {user}, namespace: {namespace}}}\n"
        "current-context: dku-ray-testenv\n"
    )
    path.chmod(0o600)
    return path
