"""``zonectl doctor`` against a real NB: finds drift and SNAT rows that hide zone pods, and says so."""

from __future__ import annotations

import json
from pathlib import Path

from zonectl.cli import main
from zonectl.doctor import check_forwarding
from zonectl.gateway.host import Host
from zonectl.harness.netns import Netns

EX = Path(__file__).resolve().parents[2] / "examples"
BASE = ["--config", str(EX / "config.yaml"), "--zones", str(EX / "zones.yaml"), "--skip", "gateway,crds"]


def _checks(capsys) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(capsys.readouterr().out)}


def test_doctor_reports_drift_and_snat_then_passes_after_repair(lab, capsys) -> None:
    args = ["doctor", "--nb", lab.sb.nb_remote, *BASE, "-f", str(EX / "policies.yaml"), "-o", "json"]
    assert main(args) == 1
    checks = _checks(capsys)
    assert checks["ovn connection"]["status"] == "ok"
    assert checks["ovn drift"]["status"] == "fail" and "create" in checks["ovn drift"]["detail"]
    assert checks["ovn snat"]["status"] == "fail" and "GR_node1" in checks["ovn snat"]["detail"]

    assert main(["ovn", "sync", "--nb", lab.sb.nb_remote, "--config", str(EX / "config.yaml"),
                 "--zones", str(EX / "zones.yaml"), "-f", str(EX / "policies.yaml")]) == 0
    for nat in lab.sb.nbctl("--bare", "--columns=_uuid", "find", "NAT", "type=snat").split():
        for router in lab.sb.nbctl("--bare", "--columns=name", "find", "Logical_Router", f"nat{{>=}}{nat}").split():
            lab.sb.nbctl("remove", "Logical_Router", router, "nat", nat)
    capsys.readouterr()
    assert main(args) == 0
    checks = _checks(capsys)
    assert checks["ovn drift"]["status"] == "ok" and checks["ovn snat"]["status"] == "ok"
    assert checks["ovn owned ACLs"]["detail"].startswith("24 rule rows for 3 policies, 6 exemptions")


def test_doctor_unreachable_nb_is_a_failed_check(capsys) -> None:
    assert main(["doctor", "--nb", "tcp:127.0.0.1:1", "--timeout", "1", *BASE, "-o", "json"]) == 1
    checks = _checks(capsys)
    assert checks["config"]["status"] == "ok"
    assert checks["ovn connection"]["status"] == "fail" and "127.0.0.1:1" in checks["ovn connection"]["detail"]


def test_doctor_bad_config_fails_first(tmp_path, capsys) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("layout: {cluster: fd00:10:244::/48, zoneField: {offset: 40}}\n")
    assert main(["doctor", "--config", str(bad), "--skip", "ovn,gateway,crds"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "layout.zoneField: " in err and "overlaps the node prefix" in err


def test_forwarding_check_in_a_namespace() -> None:
    with Netns.create("zdoc") as ns:
        host = Host(ns.name)
        assert check_forwarding(host).status == "fail"
        ns.sysctl("net.ipv6.conf.all.forwarding", "1")
        ns.sysctl("net.ipv4.ip_forward", "1")
        assert check_forwarding(host).status == "ok"
