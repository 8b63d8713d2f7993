"""The `zonectl` command, in-process (main(argv)) and as a real subprocess (python -m zonectl)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zonectl import cli

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
CONFIG = str(EX / "config.yaml")
ZONES = str(EX / "zones.yaml")
POLICIES = str(EX / "policies.yaml")
NODES = str(EX / "nodes.yaml")

BAD_POLICY = """\
apiVersion: zonectl.io/v1alpha1
kind: SecurityZonePolicy
metadata: {name: broken, namespace: team}
spec:
  zones: [dmz]
  priority: 500
  ingress:
    - name: web
      action: Allow
      from: [{any: true}]
      ports:
        - {protocol: TCP, port: 70000}
  egress: []
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_run(*argv: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "ZONECTL_CONFIG"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "zonectl", *argv], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZONECTL_CONFIG", raising=False)


# --- explain ---------------------------------------------------------------------------------------------
def test_explain_names_cluster_node_zone_offset(capsys) -> None:
    code, out, err = run(capsys, "explain", "fd00:10:244:2:2000::5", "--config", CONFIG, "--zones", ZONES)
    assert (code, err) == (0, "")
    assert "cluster:  fd00:10:244::/48" in out
    assert "node:     fd00:10:244:2::/64" in out
    assert "zone:     dmz (0x2000)" in out
    assert "offset:   5 (::5)" in out
    assert "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::" in out


def test_explain_subprocess_json() -> None:
    proc = subprocess_run("explain", "fd00:10:244:2:2000::5", "--config", CONFIG, "--zones", ZONES, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["cluster"] == "fd00:10:244::/48"
    assert doc["node"] == "fd00:10:244:2::/64"
    assert (doc["zone"], doc["zoneIdHex"], doc["offset"]) == ("dmz", "0x2000", 5)
    assert doc["matches"]["datacenter"] == "fd00:10:200:0:2000::/ffff:ffff:ff00:0:ffff::"


@pytest.mark.parametrize("address,expected", [
    ("fd00:10:245::1", "is in the datacenter prefix but not in this cluster"),
    ("2001:db8::1", "is not in this cluster"),
    ("fd64:ff9b::c633:6407", "stands for IPv4 198.51.100.7"),
    ("198.51.100.7", "pods reach it as fd64:ff9b::c633:6407"),
    ("fd00:10:244:2::5", "zone:     no zone (0x0)"),
    ("fd00:10:244:2:4242::5", "no SecurityZone has this id"),
])
def test_explain_other_addresses(capsys, address: str, expected: str) -> None:
    code, out, _ = run(capsys, "explain", address, "--config", CONFIG, "--zones", ZONES)
    assert code == 0 and expected in out, out


def test_explain_rejects_garbage(capsys) -> None:
    code, out, err = run(capsys, "explain", "fd00::zz", "--config", CONFIG)
    assert (code, out) == (2, "")
    assert err == "zonectl: error: 'fd00::zz' is not an IPv6 (or IPv4) address\n"


# --- config discovery -------------------------------------------------------------------------------------
def test_no_config_is_a_clear_error(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "explain", "fd00:10:244:2:2000::5")
    assert (code, out) == (2, "")
    assert "no config: pass --config FILE or set $ZONECTL_CONFIG" in err


def test_config_from_env_then_cwd(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZONECTL_CONFIG", CONFIG)
    assert run(capsys, "explain", "fd00:10:244:2:2000::5")[0] == 0
    monkeypatch.delenv("ZONECTL_CONFIG")
    shutil.copy(CONFIG, tmp_path / "zonectl.yaml")
    code, out, _ = run(capsys, "explain", "fd00:10:244:2:2000::5")
    assert code == 0 and "node:     fd00:10:244:2::/64" in out


def test_bad_config_names_the_field(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("layout: {cluster: fd00:10:244::/48, zoneField: {offset: 56, width: 16}}\n")
    code, _, err = run(capsys, "explain", "fd00::1", "--config", str(bad))
    assert code == 2
    assert "zoneField" in err and "overlaps the node prefix" in err and "Traceback" not in err


# --- export -----------------------------------------------------------------------------------------------
def test_export_json_gives_the_masks(capsys) -> None:
    code, out, err = run(capsys, "export", "--format", "json", "--zones", ZONES, "--config", CONFIG)
    assert (code, err) == (0, "")
    dmz = next(z for z in json.loads(out)["zones"] if z["zone"] == "dmz")
    assert [m["match"] for m in dmz["matches"]] == [
        "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::",
        "fd00:10:200:0:2000::/ffff:ffff:ff00:0:ffff::",
    ]


def test_export_subprocess_panos_with_nodes_and_scope() -> None:
    proc = subprocess_run("export", "--format", "panos", "--zones", ZONES, "--nodes", NODES, "--config", CONFIG)
    assert proc.returncode == 0, proc.stderr
    assert "set address zonectl-dmz-fd00-10-244-3-2000--_80 ip-netmask fd00:10:244:3:2000::/80" in proc.stdout
    proc = subprocess_run("export", "--format", "csv", "--scope", "datacenter", "--zones", ZONES, "--config", CONFIG)
    assert proc.returncode == 0 and "cluster" not in proc.stdout.split("\n", 1)[1]


@pytest.mark.parametrize("argv,message", [
    (["--format", "asa"], "has no IPv6 wildcard masks: give the node podCIDRs (--nodes FILE"),
    (["--format", "fortigate", "--nodes", NODES, "--scope", "datacenter"], "cannot cover the datacenter"),
    (["--format", "json", "--nodes", ZONES], "document 1: kind: 'SecurityZone' is not one zonectl reads here (Node)"),
])
def test_export_refusals(capsys, argv: list[str], message: str) -> None:
    code, out, err = run(capsys, "export", "--zones", ZONES, "--config", CONFIG, *argv)
    assert (code, out) == (2, "")
    assert message in err


# --- compile ----------------------------------------------------------------------------------------------
def test_compile_ir_is_stable(capsys) -> None:
    argv = ("compile", "-f", POLICIES, "--zones", ZONES, "--config", CONFIG, "--target", "ir")
    code, first, _ = run(capsys, *argv)
    assert code == 0
    rules = json.loads(first)
    assert {r["policy"] for r in rules} == {"zonectl-system/dmz", "zonectl-system/web", "zonectl-system/db"}
    https = next(r for r in rules if r["name"] == "https-from-lb")
    assert (https["src"], https["dst"], https["portMin"], https["portMax"]) == (
        "2001:db8:100::/ffff:ffff:ffff:ff00::", "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::", 443, 443)
    assert run(capsys, *argv)[1] == first


def test_bad_policy_exit_2_with_field_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_POLICY)
    proc = subprocess_run("compile", "-f", str(bad), "--zones", ZONES, "--config", CONFIG, "--target", "ir")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "SecurityZonePolicy team/broken: spec.ingress[0].ports[0].port: 70000 must be an integer from 1 to 65535" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_several_problems_are_listed_one_per_line(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_POLICY.replace("action: Allow", "action: allow").replace("[dmz]", "[dmz, nope]"))
    code, out, err = run(capsys, "compile", "-f", str(bad), "--zones", ZONES, "--config", CONFIG, "--target", "ir")
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines[0] == "zonectl: error: policies: 3 problems:"
    assert any("spec.zones[1]: unknown zone 'nope'" in line for line in lines)
    assert any("spec.ingress[0].action: 'allow' is not one of Allow, Deny" in line for line in lines)


@pytest.mark.parametrize("argv,message", [
    (["-f", "/nonexistent/p.yaml"], "/nonexistent/p.yaml"),
    (["-f", ZONES], "no SecurityZonePolicy object in"),
])
def test_compile_input_errors(capsys, argv: list[str], message: str) -> None:
    code, out, err = run(capsys, "compile", *argv, "--zones", ZONES, "--config", CONFIG, "--target", "ir")
    assert (code, out) == (2, "") and message in err and err.startswith("zonectl: error: ")


def test_broken_yaml_is_one_message(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "zones.yaml"
    bad.write_text("kind: SecurityZone\nspec: {id: [\n")
    code, _, err = run(capsys, "export", "--format", "json", "--zones", str(bad), "--config", CONFIG)
    assert code == 2 and str(bad) in err and "Traceback" not in err


# --- help, version, plugins -------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [[], ["explain"], ["compile"], ["export"], ["render"], ["render", "coredns"],
                                  ["run"], ["run", "gateway"], ["lab", "up"], ["lab", "test"], ["doctor"],
                                  ["gateway"], ["ovn", "sync"]])
def test_help_texts_have_examples(capsys, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "example" in out and "usage: zonectl" in out


def test_help_lists_every_format_and_target(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    out = capsys.readouterr().out
    for fmt in ("json", "csv", "nftables", "ip6tables", "checkpoint", "panos", "fortigate", "asa"):
        assert f"  {fmt} " in out
    with pytest.raises(SystemExit):
        cli.main(["compile", "--help"])
    out = capsys.readouterr().out
    for target in ("ir", "ovn", "ip6tables", "nftables"):
        assert f"  {target} " in out


def test_version() -> None:
    proc = subprocess_run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "zonectl 0.1.0"


def test_missing_plugin_says_not_available(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.PLUGINS, "ovn", ("zonectl.no_such_module", "OVN backend"))
    code, out, err = run(capsys, "ovn", "sync", "--dry-run")
    assert (code, out) == (2, "")
    assert err.startswith("zonectl: error: zonectl ovn is not available: zonectl.no_such_module could not be loaded")


def test_explain_works_when_backends_are_broken(tmp_path: Path) -> None:
    """Fake ovsdbapp, kopf and pyroute2 that explode on import: explain and export must not notice."""
    for name in ("ovsdbapp", "kopf", "pyroute2", "kubernetes"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is broken here')\n")
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess_run("explain", "fd00:10:244:2:2000::5", "--config", CONFIG, "--zones", ZONES, env=env)
    assert proc.returncode == 0 and "zone:     dmz (0x2000)" in proc.stdout, proc.stderr
    proc = subprocess_run("export", "--format", "nftables", "--zones", ZONES, "--config", CONFIG, env=env)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess_run("operator", "run", "--config", CONFIG, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("zonectl: error: zonectl operator is not available: ") and "broken here" in proc.stderr


def test_startup_imports_no_backend() -> None:
    code = ("import sys; from zonectl.cli import main; main(['explain', 'fd00:10:244:2:2000::5', '--config', "
            f"{CONFIG!r}]); bad = [m for m in ('ovsdbapp', 'kopf', 'pyroute2', 'kubernetes') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- compile targets rendered by the backends' renderers ---------------------------------------------------
def test_compile_ovn_rows(capsys) -> None:
    argv = ["compile", "-f", POLICIES, "--zones", ZONES, "--config", CONFIG, "--target", "ovn"]
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    rows = json.loads(out)
    to_web = next(r for r in rows if r["external_ids"]["zonectl.io/rule-name"] == "to-web")
    assert to_web["direction"] == "from-lport" and to_web["tier"] == 1
    assert "ip6.dst == fd00:10:244:0:2100::/ffff:ffff:ffff:0:ffff::" in to_web["match"]
    code, out, _ = run(capsys, *argv, "--no-ovn-tier")
    assert code == 0 and all("tier" not in r for r in json.loads(out))


@pytest.mark.parametrize("target,check", [
    ("ip6tables", ["sh", "-c", "ip6tables-restore --test < {path}"]),
    ("nftables", ["nft", "-c", "-f", "{path}"]),
])
def test_compile_gateway_filter_loads(capsys, tmp_path: Path, target: str, check: list[str]) -> None:
    if os.geteuid() != 0 or shutil.which(check[0] if check[0] != "sh" else "ip6tables-restore") is None:
        pytest.skip("loading rulesets needs root and nft/ip6tables")
    from zonectl.harness.netns import Netns

    code, out, err = run(capsys, "compile", "-f", POLICIES, "--zones", ZONES, "--config", CONFIG, "--target", target)
    assert (code, err) == (0, "")
    assert "fd00:10:244:0:2000::" in out
    assert ("fd64:ff9b::c633:6400/120" if target == "ip6tables" else '0xc63364 . tcp . 443 comment "198.51.100.0/24"') in out
    path = tmp_path / "rules"
    path.write_text(out)
    with Netns.create("zxcli") as ns:
        ns.run([a.format(path=path) for a in check])


def test_compile_gateway_target_needs_nat64(capsys, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(Path(CONFIG).read_text() + "  enabled: false\n")
    db_only = tmp_path / "db.yaml"
    db_only.write_text(Path(POLICIES).read_text().split("---")[-1])  # the db policy has no nat64 peer
    code, out, err = run(capsys, "compile", "-f", str(db_only), "--zones", ZONES, "--config", str(cfg), "--target", "nftables")
    assert (code, out) == (2, "")
    assert "--target nftables renders the egress gateway's filter, which needs a NAT64 prefix" in err
    assert run(capsys, "compile", "-f", str(db_only), "--zones", ZONES, "--config", str(cfg), "--target", "ir")[0] == 0


# --- render -----------------------------------------------------------------------------------------------
def test_render_coredns(capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "render", "coredns", "--config", CONFIG)
    assert (code, err) == (0, "")
    assert "dns64 {" in out and "prefix fd64:ff9b::/96" in out and "translate_all" in out
    cfg = tmp_path / "c.yaml"
    cfg.write_text(Path(CONFIG).read_text() + "dns: {clusterDomain: corp.example, translateAll: false}\n")
    code, out, _ = run(capsys, "render", "coredns", "--config", str(cfg), "-o", "configmap")
    assert code == 0
    import yaml

    doc = yaml.safe_load(out)
    assert doc["kind"] == "ConfigMap" and "kubernetes corp.example" in doc["data"]["Corefile"]
    assert "translate_all" not in doc["data"]["Corefile"]
    cfg.write_text(Path(CONFIG).read_text() + "dns: {cacheSeconds: -1}\n")
    code, out, err = run(capsys, "render", "coredns", "--config", str(cfg))
    assert (code, out) == (2, "") and "dns.cacheSeconds: -1 must be an integer from 0 to 86400" in err


@pytest.mark.parametrize("name", list(cli.PLUGINS))
def test_plugins_are_wired(capsys, name: str) -> None:
    """A layer's sub-commands appear under `zonectl NAME` as soon as its cli module exists."""
    import importlib.util

    module = cli.PLUGINS[name][0]
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0 and f"usage: zonectl {name}" in out
    if importlib.util.find_spec(module) is not None:
        assert "not loaded" not in out, out
    else:
        assert f"not loaded: {module} could not be loaded" in out


def test_run_names_the_daemons(capsys) -> None:
    from zonectl.cli import main

    with pytest.raises(SystemExit):
        main(["run", "controller", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: zonectl run controller") and "--kubeconfig" in out
    with pytest.raises(SystemExit):
        main(["run", "gateway", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: zonectl run gateway") and "--cleanup-on-exit" in out
    with pytest.raises(SystemExit) as exc:
        main(["run", "tayga"])
    assert exc.value.code == 2 and "invalid choice: 'tayga'" in capsys.readouterr().err
