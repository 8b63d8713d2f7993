"""manifests/install.sh against the real API server: namespace, RBAC, ConfigMap, CRDs, the controller,
and the webhook configurations only once the controller is Ready."""

from __future__ import annotations

import base64
import json
import subprocess

from kubeplane import NS, ZonectlCluster


def test_refused_config_stops_the_install_before_the_webhooks(zonectl_cluster: ZonectlCluster) -> None:
    broken = zonectl_cluster.installs[0]
    assert broken.returncode == 1, broken.stderr
    assert "the controller is not Ready, so the webhook configurations were NOT installed" in broken.stderr
    assert broken.webhooks_after == ()


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
