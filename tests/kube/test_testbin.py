"""testbin/ and scripts/testbin.sh: versions pinned in go.mod, replace lines that are exactly the ones
generated from k8s.io/kubernetes' own go.mod, binaries cached by version, static, stripped, without
local paths, reporting the pinned version; a second run builds nothing."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from kubeplane import ROOT
from zonectl.harness.controlplane import Binaries

SCRIPT = ROOT / "scripts" / "testbin.sh"


def required(module: str, path: str) -> str:
    text = (ROOT / "testbin" / module / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(path)} (v\S+)", text, re.M)
    assert match, f"testbin/{module}/go.mod does not require {path}"
    return match.group(1)


def test_replace_lines_are_generated_from_kubernetes_go_mod(kube_binaries: Binaries) -> None:
    version = required("kube", "k8s.io/kubernetes")
    generated = subprocess.run([str(SCRIPT), "replaces", version], capture_output=True, text=True, timeout=300)
    assert generated.returncode == 0, generated.stderr
    committed = re.search(r"^replace \(\n.*?^\)\n", (ROOT / "testbin" / "kube" / "go.mod").read_text(), re.M | re.S)
    assert committed and committed.group(0) == generated.stdout
    minor = version.split(".")[1]
    lines = generated.stdout.splitlines()[1:-1]
    assert len(lines) > 25 and all(re.fullmatch(rf"\t(k8s\.io/[a-z-]+) => \1 v0\.{minor}\.\d+", line) for line in lines)


def test_binaries_are_cached_by_version(kube_binaries: Binaries) -> None:
    versions = {"etcd": required("etcd", "go.etcd.io/etcd/server/v3")}
    versions |= {n: required("kube", "k8s.io/kubernetes") for n in
                 ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")}
    for name, version in versions.items():
        path = kube_binaries[name]
        assert path.name == name and path.parent.name == f"{name}-{version}"
        assert not path.is_relative_to(ROOT)  # outside the repository


def test_binaries_report_the_pinned_version(kube_binaries: Binaries) -> None:
    version = required("kube", "k8s.io/kubernetes")
    client = subprocess.run([str(kube_binaries["kubectl"]), "version", "--client"], capture_output=True, text=True)
    assert f"Client Version: {version}" in client.stdout
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        out = subprocess.run([str(kube_binaries[name]), "--version"], capture_output=True, text=True).stdout
        assert out.strip() == f"Kubernetes {version}", (name, out)
    etcd = subprocess.run([str(kube_binaries["etcd"]), "--version"], capture_output=True, text=True).stdout
    assert f"etcd Version: {required('etcd', 'go.etcd.io/etcd/server/v3').lstrip('v')}" in etcd


def test_binaries_are_static_stripped_and_trimmed(kube_binaries: Binaries) -> None:
    path = kube_binaries["kube-scheduler"]
    if shutil.which("ldd"):
        ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
        assert "not a dynamic executable" in ldd.stdout + ldd.stderr  # CGO_ENABLED=0
    data = path.read_bytes()
    assert b".symtab" not in data  # -s -w: no symbol table
    assert b"/pkg/mod/" not in data and str(ROOT).encode() not in data  # -trimpath


def test_second_run_builds_nothing(kube_binaries: Binaries) -> None:
    started = time.monotonic()
    proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "building" not in proc.stderr, proc.stderr
    assert time.monotonic() - started < 10
    printed = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert {k: str(v) for k, v in kube_binaries.paths.items() if k in printed} == {k: printed[k] for k in kube_binaries.paths}


@pytest.mark.parametrize("script", ["testbin.sh", "test.sh"])
def test_scripts_pass_shellcheck(script: str) -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (scripts/install.sh installs it)")
    proc = subprocess.run(["shellcheck", str(ROOT / "scripts" / script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
