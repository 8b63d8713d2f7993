"""Certificates and kubeconfigs for a throwaway control plane, made with the openssl command.

Why openssl rather than a Python library: it is already a dependency of the install script and the OVN
sandbox, so the harness needs nothing more. Keys are EC P-256 (fast to make; kube-apiserver accepts
them for serving, client certificates and service-account tokens, ES256). Everything is written into
one directory the caller owns and removes.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class PkiError(RuntimeError):
    """openssl failed; the message carries its stderr."""


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as files."""

    cert: Path
    key: Path


class Pki:
    """A CA in ``directory`` that issues serving and client certificates."""

    def __init__(self, directory: Path, name: str = "zonectl-harness-ca") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = Pair(self.dir / "ca.crt", self.dir / "ca.key")
        _openssl("req", "-x509", *_EC, "-keyout", str(self.ca.key), "-out", str(self.ca.cert), "-days", "2",
                 "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)

    def issue(self, name: str, cn: str, *, org: str | None = None, server_names: tuple[str, ...] = (),
              client: bool = False) -> Pair:
        """A certificate for ``cn``; ``server_names`` (DNS names and IP addresses) make it a serving one."""
        pair = Pair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        csr = self.dir / f"{name}.csr"
        subject = f"/CN={cn}" + (f"/O={org}" if org else "")
        _openssl("req", *_EC, "-keyout", str(pair.key), "-out", str(csr), "-subj", subject, cwd=self.dir)
        ext = ["keyUsage=critical,digitalSignature,keyEncipherment",
               "extendedKeyUsage=" + ",".join((["serverAuth"] if server_names else []) + (["clientAuth"] if client else []))]
        if server_names:
            ext.append("subjectAltName=" + ",".join(_san(n) for n in server_names))
        extfile = self.dir / f"{name}.ext"
        extfile.write_text("\n".join(ext) + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca.cert), "-CAkey", str(self.ca.key),
                 "-CAcreateserial", "-days", "2", "-extfile", str(extfile), "-out", str(pair.cert), cwd=self.dir)
        csr.unlink()
        extfile.unlink()
        return pair

    def signing_key(self, name: str) -> Pair:
        """A bare key pair (``cert`` is the public key): the service-account token signer."""
        key, pub = self.dir / f"{name}.key", self.dir / f"{name}.pub"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", str(key), cwd=self.dir)
        _openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub), cwd=self.dir)
        return Pair(pub, key)


def _san(name: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return f"DNS:{name}"
    return f"IP:{name}"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, ca: Path, *, user: str, client: Pair | None = None,
                     token: str | None = None) -> Path:
    """A kubeconfig with everything embedded (a client certificate, or a bearer token)."""
    creds: dict[str, str] = {"token": token} if token else {}
    if client is not None:
        creds = {"client-certificate-data": _b64(client.cert), "client-key-data": _b64(client.key)}
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "harness", "preferences": {},
        "clusters": [{"name": "harness", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "harness", "context": {"cluster": "harness", "user": user}}],
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path
