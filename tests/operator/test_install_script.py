"""manifests/install.sh against a recording fake kubectl: the install order that never blocks pod creation.

There is no API server here, so ``kubectl`` is a small fake that logs every call (and what was applied)
and answers ``get`` from a state file; ``kubectl kustomize`` and client-side ``create --dry-run`` go to
the real kubectl, and certificates are made by the real openssl. What must hold:

* the TLS Secret exists before the controller is applied; the webhook configurations are applied only
  after ``rollout status`` says the controller is Ready, and never when it is not;
* every webhook then carries a caBundle whose CA signed the Secret's certificate, which names the
  webhook Service;
* re-runs keep a valid certificate; a renewal trusts the old and the new CA; cert-manager is used when
  its CRDs exist; ``--nb`` / ``--config`` set the configuration.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from opkit import ROOT

SCRIPT = ROOT / "manifests" / "install.sh"
REAL_KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(not (REAL_KUBECTL and shutil.which("openssl")),
                                reason="needs kubectl (kustomize) and openssl")

FAKE = textwrap.dedent('''\
    #!PYTHON
    import json, os, subprocess, sys
    d = os.environ["FAKE_DIR"]
    state = json.load(open(os.path.join(d, "state.json")))
    argv = sys.argv[1:]
    args = [a for i, a in enumerate(argv) if a != "-n" and (i == 0 or argv[i - 1] != "-n")]
    entry = {"argv": args}

    def out(rc=0, text=""):
        with open(os.path.join(d, "log.jsonl"), "a") as f:
            f.write(json.dumps(entry) + "\\n")
        json.dump(state, open(os.path.join(d, "state.json"), "w"))
        sys.stdout.write(text)
        sys.exit(rc)

    if args[0] == "kustomize" or (args[0] == "create" and "--dry-run=client" in args):
        p = subprocess.run([os.environ["REAL_KUBECTL"], *argv], capture_output=True, text=True)
        sys.stderr.write(p.stderr)
        out(p.returncode, p.stdout)
    if args[0] == "apply":
        f = args[args.index("-f") + 1]
        text = sys.stdin.read() if f == "-" else open(f).read()
        entry["applied"] = text
        lines = []
        import yaml
        for doc in (x for x in yaml.safe_load_all(text) if x):
            name = doc["metadata"]["name"]
            if doc["kind"] == "Secret":
                state["secret"] = doc["data"]
            if doc["kind"] == "MutatingWebhookConfiguration":
                state["webhooks"] = True
            verb = "configured" if f"{doc['kind']}/{name}" in state.get("changed", []) else "created"
            lines.append(f"{doc['kind'].lower()}/{name} {verb}\\n")
        out(0, "".join(lines))
    if args[:2] == ["get", "crd"]:
        out(0 if args[2] in state.get("crds", []) else 1)
    if args[:2] == ["get", "secret"]:
        field = args[-1].split("{.data.")[1].rstrip("}").replace("\\\\.", ".")
        secret = state.get("secret") or {}
        out(0 if secret else 1, secret.get(field, ""))
    if args[:2] == ["get", "mutatingwebhookconfiguration"]:
        out(0 if state.get("webhooks") else 1)
    if args[:2] == ["rollout", "status"] and args[2].startswith("deployment/"):
        out(0 if state.get("ready", True) else 1)
    out(0)
    ''')


class Cluster:
    """The fake's state and log, and a way to run install.sh against it."""

    def __init__(self, tmp: Path, **state: Any) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.dir = tmp
        self.bin = tmp / "kubectl"
        self.bin.write_text(FAKE.replace("PYTHON", sys.executable))
        self.bin.chmod(0o755)
        (tmp / "state.json").write_text(json.dumps(state))

    def install(self, *args: str) -> subprocess.CompletedProcess[str]:
        (self.dir / "log.jsonl").unlink(missing_ok=True)
        env = dict(os.environ, KUBECTL=str(self.bin), FAKE_DIR=str(self.dir), REAL_KUBECTL=REAL_KUBECTL)
        return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=180)

    @property
    def state(self) -> dict:
        return json.loads((self.dir / "state.json").read_text())

    @property
    def log(self) -> list[dict]:
        path = self.dir / "log.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def applies(self) -> list[tuple[int, list[dict]]]:
        """(call index, objects) of every apply, in order."""
        return [(i, [d for d in yaml.safe_load_all(e["applied"]) if d]) for i, e in enumerate(self.log) if "applied" in e]

    def index(self, pred) -> int:
        return next(i for i, e in enumerate(self.log) if pred(e))


def kinds(objs: list[dict]) -> set[str]:
    return {o["kind"] for o in objs}


def webhook_applies(c: Cluster) -> list[tuple[int, list[dict]]]:
    return [(i, objs) for i, objs in c.applies() if "MutatingWebhookConfiguration" in kinds(objs)]


def ca_bundles(objs: list[dict]) -> set[str]:
    return {w["clientConfig"].get("caBundle", "") for o in objs if "webhooks" in o for w in o["webhooks"]}


def pem_certs(b64: str) -> list[str]:
    text = base64.b64decode(b64).decode()
    return ["-----BEGIN" + part for part in text.split("-----BEGIN")[1:]]


def openssl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, check=True).stdout


def verifies(ca_pem: str, cert_pem: str, tmp: Path) -> bool:
    (tmp / "ca.pem").write_text(ca_pem)
    (tmp / "cert.pem").write_text(cert_pem)
    return subprocess.run(["openssl", "verify", "-CAfile", str(tmp / "ca.pem"), str(tmp / "cert.pem")],
                          capture_output=True).returncode == 0


def test_fresh_install_orders_secret_controller_ready_webhooks(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    proc = c.install()
    assert proc.returncode == 0, proc.stderr
    applies = c.applies()
    i_secret = next(i for i, objs in applies if "Secret" in kinds(objs))
    i_main = next(i for i, objs in applies if "Deployment" in kinds(objs))
    i_ready = c.index(lambda e: e["argv"][:3] == ["rollout", "status", "deployment/zonectl-controller"])
    ((i_hooks, hooks),) = webhook_applies(c)
    assert i_secret < i_main < i_ready < i_hooks
    main = next(objs for i, objs in applies if i == i_main)
    assert "ValidatingAdmissionPolicy" in kinds(main) and not kinds(main) & {"MutatingWebhookConfiguration",
                                                                               "ValidatingWebhookConfiguration"}
    assert kinds(hooks) == {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    # every webhook trusts the CA that signed the served certificate, which names the Service
    (bundle,) = ca_bundles(hooks)
    (ca,) = pem_certs(bundle)
    secret = c.state["secret"]
    cert = base64.b64decode(secret["tls.crt"]).decode()
    assert base64.b64decode(secret["ca.crt"]).decode() == ca and verifies(ca, cert, tmp_path)
    text = openssl("x509", "-noout", "-text", stdin=cert)
    assert "DNS:zonectl-webhook.zonectl-system.svc" in text and "TLS Web Server Authentication" in text
    assert sum(len(o["webhooks"]) for o in hooks) == 3


def test_controller_not_ready_means_no_webhooks(tmp_path: Path) -> None:
    c = Cluster(tmp_path, ready=False)
    proc = c.install("--timeout", "5")
    assert proc.returncode == 1
    assert "webhook configurations were NOT installed" in proc.stderr and "pods are still" in proc.stderr
    assert webhook_applies(c) == [] and not c.state.get("webhooks")


def test_rerun_keeps_a_valid_certificate(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    assert c.install().returncode == 0
    first = c.state["secret"]
    proc = c.install()
    assert proc.returncode == 0 and "keeping Secret" in proc.stderr
    assert not [objs for _, objs in c.applies() if "Secret" in kinds(objs)]
    ((_, hooks),) = webhook_applies(c)
    assert ca_bundles(hooks) == {first["ca.crt"]}


def test_renewal_trusts_old_and_new_ca_before_switching(tmp_path: Path) -> None:
    # an existing install whose certificate expires in 10 days
    for args in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=old-ca",
                  "-keyout", "ca.key", "-out", "ca.crt"],
                 ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=x", "-keyout", "tls.key", "-out", "tls.csr"],
                 ["x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                  "-days", "10", "-out", "tls.crt"]):
        subprocess.run(["openssl", *args], cwd=tmp_path, capture_output=True, check=True)
    b64 = {n: base64.b64encode((tmp_path / n).read_bytes()).decode() for n in ("ca.crt", "tls.crt", "tls.key")}
    c = Cluster(tmp_path / "k", secret=b64, webhooks=True)
    proc = c.install()
    assert proc.returncode == 0, proc.stderr
    i_secret = next(i for i, objs in c.applies() if "Secret" in kinds(objs))
    (early, _), (final, hooks) = webhook_applies(c)
    assert early < i_secret < final  # both CAs trusted before the new certificate is served
    new_ca = base64.b64decode(c.state["secret"]["ca.crt"]).decode()
    old_ca = (tmp_path / "ca.crt").read_text()
    assert new_ca != old_ca
    for _, objs in webhook_applies(c):
        (bundle,) = ca_bundles(objs)
        assert pem_certs(bundle) == [old_ca, new_ca]


def test_cert_manager_when_its_crds_exist(tmp_path: Path) -> None:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
    c = Cluster(tmp_path, crds=["certificates.cert-manager.io"], secret={"ca.crt": ca, "tls.crt": "x", "tls.key": "y"})
    proc = c.install("--gateway-sysctl")  # both components at once
    assert proc.returncode == 0, proc.stderr
    assert "webhook certificate: cert-manager" in proc.stderr
    assert not [objs for _, objs in c.applies() if "Secret" in kinds(objs)]  # cert-manager writes it
    main = next(objs for _, objs in c.applies() if "Deployment" in kinds(objs))
    assert {"Certificate", "Issuer"} <= kinds(main)
    assert next(o for o in main if o["kind"] == "DaemonSet")["spec"]["template"]["spec"]["initContainers"]
    i_cert = c.index(lambda e: e["argv"][:1] == ["wait"] and "certificate/zonectl-webhook" in e["argv"])
    ((i_hooks, hooks),) = webhook_applies(c)
    assert i_cert < i_hooks
    assert ca_bundles(hooks) == {ca}
    for o in (o for o in hooks if "webhooks" in o):  # (the component's Certificates come along, unchanged)
        assert o["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "zonectl-system/zonectl-webhook"


def test_nb_config_and_gateway_sysctl_options(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    assert c.install("--nb", "tcp:[fd00:10:96::aaaa]:6641", "--gateway-sysctl").returncode == 0
    main = next(objs for _, objs in c.applies() if "Deployment" in kinds(objs))
    cm = next(o for o in main if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "zonectl-config")
    assert yaml.safe_load(cm["data"]["zonectl.yaml"])["ovn"]["nb"] == "tcp:[fd00:10:96::aaaa]:6641"
    ds = next(o for o in main if o["kind"] == "DaemonSet")
    assert ds["spec"]["template"]["spec"]["initContainers"][0]["name"] == "forwarding"

    own = tmp_path / "mine.yaml"
    own.write_text("layout: {cluster: 'fd00:20::/48'}\n")
    c2 = Cluster(tmp_path / "c2", changed=["ConfigMap/zonectl-config"])  # an upgrade changing the config
    assert c2.install("--config", str(own)).returncode == 0
    main = next(objs for _, objs in c2.applies() if "Deployment" in kinds(objs))
    cm = next(o for o in main if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "zonectl-config")
    assert cm["data"] == {"zonectl.yaml": own.read_text()}
    assert "initContainers" not in next(o for o in main if o["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    restart = c2.index(lambda e: e["argv"][:2] == ["rollout", "restart"])
    assert c2.log[restart]["argv"][2:] == ["deployment/zonectl-controller", "daemonset/zonectl-gateway"]


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    assert c.install("--tls", "vault").returncode == 2
    proc = c.install("--help")
    assert proc.returncode == 0 and "--gateway-sysctl" in proc.stdout and "set -euo" not in proc.stdout
    assert c.log == []  # nothing was touched


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck() -> None:
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
