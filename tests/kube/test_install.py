"""manifests/install.sh against the real API server: namespace, RBAC, ConfigMap, CRDs, the controller,
and the webhook configurations only once the controller is Ready."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from kubeplane import NS, ZonectlCluster


def test_refused_config_stops_the_install_before_the_webhooks(zonectl_cluster: ZonectlCluster) -> None:
    broken = zonectl_cluster.installs[0]
    assert broken.returncode == 1, broken.stderr
    assert "the controller is not Ready, so the webhook configurations were NOT installed" in broken.stderr
    assert broken.webhooks_after == ()
    # the controller said why, naming the field (exit status 2, one line)
    assert "zonectl: error: " in zonectl_cluster.controller_logs() and "spoofedHints" in zonectl_cluster.controller_logs()


def test_install_applies_the_webhooks_last(zonectl_cluster: ZonectlCluster) -> None:
    good = zonectl_cluster.installs[1]
    assert good.returncode == 0, good.stderr
    assert "configuration changed: restarting the controller" in good.stderr  # the fixed ConfigMap
    out = good.stdout
    rolled = out.index('deployment "zonectl-controller" successfully rolled out')
    assert rolled < out.index("mutatingwebhookconfiguration.admissionregistration.k8s.io/zonectl")
    assert rolled < out.index("validatingwebhookconfiguration.admissionregistration.k8s.io/zonectl")
    assert sorted(good.webhooks_after) == ["mutatingwebhookconfiguration.admissionregistration.k8s.io/zonectl",
                                           "validatingwebhookconfiguration.admissionregistration.k8s.io/zonectl"]


def test_every_webhook_trusts_the_certificate_the_controller_serves(zonectl_cluster: ZonectlCluster, tmp_path: Path) -> None:
    secret = json.loads(zonectl_cluster.kubectl("-n", NS, "get", "secret", "zonectl-webhook-tls", "-o", "json").stdout)
    (tmp_path / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        config = json.loads(zonectl_cluster.kubectl("get", kind, "zonectl", "-o", "json").stdout)
        for hook in config["webhooks"]:
            (tmp_path / "ca.crt").write_bytes(base64.b64decode(hook["clientConfig"]["caBundle"]))
            verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")],
                                    capture_output=True, text=True)
            assert verify.returncode == 0, (hook["name"], verify.stderr)
            assert hook["clientConfig"]["service"] == {"name": "zonectl-webhook", "namespace": NS,
                                                       "path": hook["clientConfig"]["service"]["path"], "port": 443}


def test_the_webhook_service_has_every_ready_replica(zonectl_cluster: ZonectlCluster) -> None:
    """The API server reaches the webhook through the Service's EndpointSlice, as in a cluster."""
    slices = json.loads(zonectl_cluster.kubectl("-n", NS, "get", "endpointslices", "-l",
                                                "kubernetes.io/service-name=zonectl-webhook", "-o", "json").stdout)["items"]
    ready = sorted(e["addresses"][0] for s in slices for e in s["endpoints"] if e["conditions"].get("ready"))
    pods = json.loads(zonectl_cluster.kubectl("-n", NS, "get", "pods", "-l", "app.kubernetes.io/component=controller",
                                              "-o", "json").stdout)["items"]
    assert ready == sorted(p["status"]["podIP"] for p in pods if not p["metadata"].get("deletionTimestamp"))
    assert len(ready) == 2 and all(s["addressType"] == "IPv6" and s["ports"][0]["port"] == 8443 for s in slices)


def test_rerun_keeps_the_certificate_and_changes_nothing(zonectl_cluster: ZonectlCluster) -> None:
    pods = sorted(p["metadata"]["name"] for p in json.loads(zonectl_cluster.kubectl(
        "-n", NS, "get", "pods", "-o", "json").stdout)["items"])
    again = zonectl_cluster.kube.install("--tls", "openssl", "--nb", zonectl_cluster.nb.nb_tcp_remote)
    assert again.returncode == 0, again.stderr
    assert f"keeping Secret {NS}/zonectl-webhook-tls (valid for 90 more days)" in again.stderr
    assert "configuration changed" not in again.stderr
    assert "configmap/zonectl-config unchanged" in again.stdout
    after = sorted(p["metadata"]["name"] for p in json.loads(zonectl_cluster.kubectl(
        "-n", NS, "get", "pods", "-o", "json").stdout)["items"])
    assert after == pods  # no restart
