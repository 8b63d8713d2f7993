"""Where the daemons serve /metrics: one parser and one rule (zonectl/metrics_server.py) for all three.

A bad address or port is one line naming the flag or field, exit status 2, before anything starts; an
unspecified address (every address of the host) is refused unless asked for explicitly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zonectl.cli import main
from zonectl.core.errors import Collector
from zonectl.metrics_server import Listen, ListenError, MetricsServer, parse_listen, registry_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("text, want", [
    ("[::1]:9464", Listen("::1", 9464)),
    ("127.0.0.1:9464", Listen("127.0.0.1", 9464)),
    ("[127.0.0.1]:1", Listen("127.0.0.1", 1)),  # what "[$(POD_IP)]:PORT" becomes with an IPv4 pod address
    ("[fd00:10:244:1::5]:65535", Listen("fd00:10:244:1::5", 65535)),
])
def test_good_listen_addresses(text: str, want: Listen) -> None:
    errs = Collector()
    assert parse_listen(text, "x", errs) == want and not errs.problems
    assert parse_listen(str(want), "x", errs) == want  # printed as it is written


@pytest.mark.parametrize("value, reason", [
    ("[::]:9464", "every address"),
    ("0.0.0.0:9464", "every address"),
    (":9464", "must be [ADDRESS]:PORT"),
    ("[::1]:99999", "port 99999 is not from 1 to 65535"),
    ("[::1]:0", "port 0 is not from 1 to 65535"),
    ("::1:9464", "must be [ADDRESS]:PORT"),
    ("localhost:9464", "must be [ADDRESS]:PORT"),
    ("[nope]:9464", "must be [ADDRESS]:PORT"),
    ("[1.2.3]:9464", "is not an IP address"),
    ("[ff02::1]:9464", "multicast"),
    ("[::1]:9464\n", "control characters"),
    ("[::1%lo]:9464", "must be [ADDRESS]:PORT"),
    (9464, "must be [ADDRESS]:PORT, not a number"),
    ({"port": 9464}, "not an object"),
])
def test_bad_listen_addresses(value: object, reason: str) -> None:
    errs = Collector()
    assert parse_listen(value, "gateway.metrics.listen", errs) is None
    (problem,) = errs.problems
    assert problem.path == "gateway.metrics.listen" and reason in problem.reason, problem


def test_every_address_only_when_asked_for() -> None:
    errs = Collector()
    assert parse_listen("[::]:9464", "x", errs, any_address=True) == Listen("::", 9464) and not errs.problems
    parse_listen("[::]:9464", "x", errs, allow="--metrics-any-address")
    assert "--metrics-any-address" in errs.problems[0].reason


def test_an_address_not_on_this_host_is_one_error() -> None:
    with pytest.raises(ListenError, match=r"cannot serve metrics on \[2001:db8::1\]:9464"):
        MetricsServer(Listen("2001:db8::1", 9464), registry_of(lambda: []))


def config_with(tmp_path: Path, **sections: object) -> str:
    body = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    body.update(sections)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def exit_2(capsys, argv: list[str], *named: str) -> None:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse refuses a bad option value itself, with one line and status 2
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc == 2 and not out, (rc, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for text in named:
        assert text in err, err


def test_gateway_metrics_refusals(tmp_path: Path, capsys) -> None:
    run = ["run", "gateway", "--inputs", str(tmp_path / "none.json"), "--uplink", "eth0"]
    config = config_with(tmp_path, gateway={"uplink": "eth0"})
    exit_2(capsys, [*run, "--config", config, "--metrics-listen", "[::1]:99999"], "gateway.metrics.listen", "99999")
    exit_2(capsys, [*run, "--config", config, "--metrics-listen", "abc"], "gateway.metrics.listen", "'abc'")
    exit_2(capsys, [*run, "--config", config, "--metrics-listen", "[::]:9464"], "gateway.metrics.listen",
           "gateway.metrics.anyAddress: true")
    wide = config_with(tmp_path, gateway={"uplink": "eth0", "metrics": {"listen": "[::]:9464"}})
    exit_2(capsys, [*run, "--config", wide], "gateway.metrics.listen", "every address")  # the old default
    typo = config_with(tmp_path, gateway={"uplink": "eth0", "metrics": {"listen": "[::]:9464", "anyAdress": True}})
    exit_2(capsys, [*run, "--config", typo], "gateway.metrics", "anyAdress (did you mean anyAddress?)")
    # asked for: accepted, and the run goes on to read its inputs (which do not exist here)
    ok = config_with(tmp_path, gateway={"uplink": "eth0", "metrics": {"listen": "[::]:9464", "anyAddress": True}})
    exit_2(capsys, [*run, "--config", ok], "none.json")
    exit_2(capsys, [*run, "--config", config, "--metrics-listen", "[::]:9464", "--metrics-any-address"], "none.json")
    for interval in ("nan", "-1", "0"):  # would spin without a pause
        exit_2(capsys, [*run, "--config", config, "--interval", interval], "--interval")


def test_ovn_agent_metrics_refusals(tmp_path: Path, capsys) -> None:
    """Checked before the agent connects to NB (which does not exist here: it would retry forever)."""
    run = ["ovn", "run", "--config", str(EXAMPLES / "config.yaml"), "--nb", f"unix:{tmp_path}/nb.sock",
           "--inputs", str(tmp_path / "gateway.json")]
    exit_2(capsys, [*run, "--metrics-listen", "[::1]:99999"], "--metrics-listen", "99999")
    exit_2(capsys, [*run, "--metrics-listen", "nope"], "--metrics-listen", "[ADDRESS]:PORT")
    exit_2(capsys, [*run, "--metrics-listen", "[::]:9465"], "--metrics-listen", "--metrics-any-address")
    exit_2(capsys, [*run, "--poll", "nan"], "--poll")
    exit_2(capsys, [*run, "--interval", "-5"], "--interval")
    exit_2(capsys, [*run[:-2], "--zones", "x", "-f", "y", "--metrics-listen", "[::1]:9465"],
           "--metrics-listen", "node agent only")


def test_controller_metrics_refusals(tmp_path: Path, capsys) -> None:
    """``operator run`` checks its address before it looks for a cluster (there is none here)."""
    config = config_with(tmp_path)
    run = ["run", "controller", "--config", config, "--kubeconfig", str(tmp_path / "none")]
    exit_2(capsys, [*run, "--metrics-address", "nope"], "--metrics-address", "'nope' is not an IP address")
    exit_2(capsys, [*run, "--metrics-address", "::"], "--metrics-address", "operator.metrics.anyAddress: true")
    exit_2(capsys, [*run, "--metrics-address", "fd00::1"], "no Kubernetes credentials")  # went on
    for metrics, named in (({"address": "0.0.0.0"}, "every address"), ({"port": 99999}, "operator.metrics.port"),
                           ({"address": "::1", "anyAddress": "yes"}, "operator.metrics.anyAddress")):
        bad = config_with(tmp_path, operator={"metrics": metrics})
        exit_2(capsys, ["operator", "check-config", "--config", bad], "operator.metrics", named)
    wide = config_with(tmp_path, operator={"metrics": {"address": "::", "anyAddress": True}})
    assert main(["operator", "check-config", "--config", wide]) == 0
    assert '"address": "::"' in capsys.readouterr().out
