"""manifests/ovn-agent (interconnect mode) validates offline and fits the controller's manifests.

Same checks as test_manifests.py (``kubernetes-validate``, strict), for the agent kustomization alone and
for manifests/ + manifests/ovn-agent built together (as manifests/kind/install.sh applies them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from opkit import ROOT
from zonectl.core import published
from zonectl.operator.config import parse_controller_config

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (offline Kubernetes schemas)")

MANIFESTS = ROOT / "manifests"
AGENT = MANIFESTS / "ovn-agent"
K8S_VERSION = "1.30.0"  # as test_manifests.py: the oldest Kubernetes zonectl supports


def kustomize(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(directory)], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def plain(directory: Path) -> list[dict[str, Any]]:
    """The objects of a kustomization's own ``resources`` files (no transformers): without kubectl."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return [d for res in k["resources"] for d in yaml.safe_load_all((directory / res).read_text()) if d]


@pytest.fixture(scope="module")
def agent_bundle() -> list[dict[str, Any]]:
    return kustomize(AGENT) if shutil.which("kubectl") else plain(AGENT)


@pytest.fixture(scope="module")
def together(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    if not shutil.which("kubectl"):
        pytest.skip("building manifests/ with manifests/ovn-agent needs kubectl (kustomize)")
    d = tmp_path_factory.mktemp("interconnect")
    (d / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [os.path.relpath(MANIFESTS, d),
                                                                         os.path.relpath(AGENT, d)]}))
    return kustomize(d)


def one(objs: list[dict], kind: str, name: str) -> dict:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def test_agent_objects_validate(agent_bundle: list[dict]) -> None:
    for obj in agent_bundle:
        kv.validate(obj, K8S_VERSION, strict=True)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in agent_bundle) == [
        ("DaemonSet", "zonectl-ovn-agent"), ("ServiceAccount", "zonectl-ovn-agent")]


def test_agent_runs_on_every_node_without_privileges(agent_bundle: list[dict]) -> None:
    ds = one(agent_bundle, "DaemonSet", "zonectl-ovn-agent")
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    # root only as the NB socket's owner: no capability, no escalation, nothing writable but nothing needed
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True and not sc.get("privileged") and sc["runAsUser"] == 0
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and pod["automountServiceAccountToken"] is False
    assert pod["tolerations"] == [{"operator": "Exists"}] and "nodeSelector" not in pod
    assert all(m.get("readOnly") for m in c["volumeMounts"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    run = volumes["ovn-run"]["hostPath"]
    assert run["type"] == "Directory" and run["path"] in ("/var/run/openvswitch", "/var/run/ovn")
    # the arguments are a valid `zonectl ovn run --inputs` against the mounted socket and ConfigMap
    from zonectl.cli import build_parser
    from zonectl.ovn.cli import cmd_run

    args = build_parser(c["args"][:2]).parse_args(c["args"])
    assert args.func is cmd_run and not args.files and not args.zones
    assert args.nb == f"unix:{mounts['ovn-run']['mountPath']}/ovnnb_db.sock"
    assert args.inputs == f"{mounts['inputs']['mountPath']}/{published.DATA_KEY}"
    assert args.config == mounts["config"]["mountPath"]
    assert volumes["config"]["configMap"]["name"] == "zonectl-config"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    (port,) = c["ports"]
    assert args.metrics_listen.endswith(f":{port['containerPort']}") and port["name"] == "metrics"


def test_agent_fits_the_controller_manifests(together: list[dict]) -> None:
    idents = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in together]
    assert len(idents) == len(set(idents))  # nothing defined twice
    agent = one(together, "DaemonSet", "zonectl-ovn-agent")["spec"]["template"]["spec"]
    controller = one(together, "Deployment", "zonectl-controller")["spec"]["template"]["spec"]
    assert agent["containers"][0]["image"] == controller["containers"][0]["image"]  # images: in step
    config = parse_controller_config(yaml.safe_load(one(together, "ConfigMap", "zonectl-config")["data"]["zonectl.yaml"]))
    inputs = next(v for v in agent["volumes"] if v["name"] == "inputs")
    assert inputs["configMap"]["name"] == config.operator.gateway_configmap  # where the controller publishes
    assert agent["serviceAccountName"] == "zonectl-ovn-agent"
    # RBAC: the agent's ServiceAccount is bound to nothing (its token is not even mounted)
    subjects = [s for o in together if o["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in o["subjects"]]
    assert not [s for s in subjects if s["name"] == "zonectl-ovn-agent"]


def test_shipped_placeholder_is_never_taken_as_the_complete_rule_set(together: list[dict]) -> None:
    """Re-applying the manifests puts the empty placeholder back (until the controller republishes):
    the agents must refuse it rather than delete every row."""
    config = parse_controller_config(yaml.safe_load(one(together, "ConfigMap", "zonectl-config")["data"]["zonectl.yaml"]))
    placeholder = one(together, "ConfigMap", config.operator.gateway_configmap)["data"][published.DATA_KEY]
    assert published.parse_document(yaml.safe_load(placeholder), config.core.layout).complete is None


def test_install_scripts_interconnect_config() -> None:
    """manifests/kind/install.sh's own pipeline (run as written there) makes a valid interconnect config."""
    script = (MANIFESTS / "kind" / "install.sh").read_text()
    m = re.search(r"^  (awk .*?)> \"\$tmp/zonectl.yaml\"$", script, flags=re.M | re.S)
    assert m, "the config pipeline moved: update this test"
    out = subprocess.run(["bash", "-c", m.group(1).replace("\\\n", " ")], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    config = parse_controller_config(yaml.safe_load(out))
    shipped = parse_controller_config(yaml.safe_load(one(
        [d for d in yaml.safe_load_all((MANIFESTS / "config.yaml").read_text()) if d], "ConfigMap",
        "zonectl-config")["data"]["zonectl.yaml"]))
    assert config.interconnect and config.ovn.nb == ""
    assert config.operator == shipped.operator and config.core.layout == shipped.core.layout
