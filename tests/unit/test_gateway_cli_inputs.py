"""`zonectl gateway` input loading and the parser, without touching the host."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from zonectl.cli import build_parser, main
from zonectl.gateway.cli import load_inputs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _args(**kw) -> argparse.Namespace:
    base = dict(config=str(EXAMPLES / "config.yaml"), inputs=None, zones=None, policies=None, uplink="eth1",
                state_dir="/tmp/unused-zonectl-state", metrics_listen=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_local_files_and_published_document_give_the_same_rules(tmp_path: Path) -> None:
    from zonectl.core import published

    local = load_inputs(_args(zones=[str(EXAMPLES / "zones.yaml")], policies=[str(EXAMPLES / "policies.yaml")]))
    doc = published.document(local.ruleset.rules, local.registry)
    path = tmp_path / "gateway.json"
    path.write_text(published.render(doc))
    published = load_inputs(_args(inputs=str(path)))
    assert [r.id for r in published.ruleset.for_gateway()] == [r.id for r in local.ruleset.for_gateway()]
    assert published.registry.get("web").egress == local.registry.get("web").egress
    assert published.gateway.uplink == "eth1" and published.gateway.state_dir == "/tmp/unused-zonectl-state"


def test_missing_inputs_is_a_clear_error() -> None:
    from zonectl.inputs import UsageError

    with pytest.raises(UsageError, match="--inputs FILE"):
        load_inputs(_args())


def test_bad_gateway_section_exits_2(tmp_path: Path, capsys) -> None:
    cfg = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    cfg["gateway"] = {"uplink": "eth1", "tayga": {"pool": "not-a-cidr"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc = main(["gateway", "apply", "--dry-run", "--config", str(path), "--zones", str(EXAMPLES / "zones.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and "gateway.tayga.pool" in err and "Traceback" not in err


def test_parser_has_the_three_commands() -> None:
    parser = build_parser(["gateway"])
    for cmd in ("run", "apply", "status"):
        args = parser.parse_args(["gateway", cmd, "--config", "x"])
        assert callable(args.func)


def test_dry_run_reports_a_refused_document(tmp_path: Path, capsys) -> None:
    """The injection of issue 9: a newline in portMin. --dry-run used to print the rule and say OK."""
    import json

    from zonectl.core import published

    local = load_inputs(_args(zones=[str(EXAMPLES / "zones.yaml")], policies=[str(EXAMPLES / "policies.yaml")]))
    doc = published.document(local.ruleset.rules, local.registry)
    doc["rules"][0]["portMin"] = "53\n-A INPUT -s ::/0 -j ACCEPT"
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(doc))
    rc = main(["gateway", "apply", "--dry-run", "--config", str(EXAMPLES / "config.yaml"), "--inputs", str(path),
               "--uplink", "eth1"])
    out, err = capsys.readouterr()
    assert (rc, out) == (2, "") and err.count("\n") == 1
    assert f"inputs {path}: rules[0].portMin: '53\\n-A INPUT -s ::/0 -j ACCEPT' must be an integer" in err


def test_inputs_and_local_files_exclude_each_other(tmp_path: Path, capsys) -> None:
    rc = main(["gateway", "apply", "--dry-run", "--config", str(EXAMPLES / "config.yaml"), "--inputs", "x.json",
               "--zones", str(EXAMPLES / "zones.yaml")])
    assert rc == 2 and "--inputs FILE and --zones/--policies exclude each other" in capsys.readouterr().err
