"""``zonectl ovn ...`` in-process against a real NB: a policy that fails to compile changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from zonectl.cli import main
from zonectl.harness.ovnk_cluster import foreign_snapshot

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"


def _args(lab, *extra: str) -> list[str]:
    return ["--nb", lab.sb.nb_remote, "--config", str(EX / "config.yaml"), "--zones", str(EX / "zones.yaml"), *extra]


def _nb_rows(lab) -> dict:
    snap = foreign_snapshot(lab.sb.nbctl, controller="nobody")  # "nobody" owns nothing: every row counts
    return snap


def test_sync_log_repair_status(lab, capsys) -> None:
    before = _nb_rows(lab)
    assert main(["ovn", "sync", *_args(lab, "-f", str(EX / "policies.yaml"), "--mode", "log")]) == 0
    out = capsys.readouterr().out
    assert "would apply: 30 create" in out and "ip6.src == fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::" in out
    assert _nb_rows(lab) == before  # log mode wrote nothing
    assert main(["ovn", "sync", *_args(lab, "-f", str(EX / "policies.yaml"), "-o", "json")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["applied"] and len(report["changes"]) == 30
    assert main(["ovn", "status", *_args(lab, "-f", str(EX / "policies.yaml"))]) == 0
    out = capsys.readouterr().out
    assert "drift: none" in out and "zonectl-system/dmz: 13" in out
    assert "GR_node1: snat fd00:10:244:1:2000::5" in out  # the lab's per-pod SNAT rows are reported


def test_policy_that_fails_to_compile_changes_nothing(lab, tmp_path, capsys) -> None:
    assert main(["ovn", "sync", *_args(lab, "-f", str(EX / "policies.yaml"))]) == 0
    capsys.readouterr()
    before = _nb_rows(lab)
    docs = list(yaml.safe_load_all((EX / "policies.yaml").read_text()))
    docs[1]["spec"]["ingress"][0]["ports"] = [{"protocol": "TCP", "port": 70000}]
    docs[2]["spec"]["egress"] = [{"name": "x", "action": "Allow", "to": [{"zone": "nowhere"}]}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    assert main(["ovn", "sync", *_args(lab, "-f", str(bad))]) == 2
    err = capsys.readouterr().err
    assert "spec.ingress[0].ports[0].port" in err and "nowhere" in err
    assert _nb_rows(lab) == before


def test_unreachable_nb_is_one_clear_error(capsys) -> None:
    code = main(["ovn", "sync", "--nb", "tcp:127.0.0.1:1", "--timeout", "2", "--config", str(EX / "config.yaml"),
                 "--zones", str(EX / "zones.yaml"), "-f", str(EX / "policies.yaml")])
    assert code == 2
    assert "tcp:127.0.0.1:1: Connection refused" in capsys.readouterr().err
