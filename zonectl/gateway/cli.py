"""``zonectl gateway run|apply|status``: the egress gateway from the command line.

Inputs come either from the controller (``--inputs gateway.json``, the GatewayInputs document the
operator publishes into a ConfigMap the DaemonSet mounts) or from files compiled locally
(``--zones`` and ``--policies``, for a standalone egress host). Bad input never replaces good state:
``run`` logs the error and keeps enforcing what it had; ``apply`` exits 2 and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..core.errors import ValidationError
from ..inputs import (CONFIG_HELP, UsageError, change_check, expand, load_config, load_documents, of_kind, read_published, seconds,
                      signature)
from .daemon import Inputs

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("zonectl.gateway")


def _files(args: argparse.Namespace) -> list[Path]:
    paths = [args.config, args.inputs, *(args.zones or []), *(args.policies or [])]
    return expand(p for p in paths if p)


def input_signature(args: argparse.Namespace) -> tuple:
    """What changes when an input file changes: ``run`` re-applies when it does."""
    return tuple((str(f), signature(f)) for f in _files(args))


def load_inputs(args: argparse.Namespace) -> Inputs:
    from ..core.rules import compile_objects
    from ..core.zones import ZoneRegistry
    from .config import parse_gateway

    if args.inputs and (args.zones or args.policies):
        raise UsageError("--inputs FILE and --zones/--policies exclude each other: the published document already "
                         "holds the zones and the compiled rules")
    config = load_config(args.config)
    section = dict(config.section("gateway"))
    if args.uplink:
        section["uplink"] = args.uplink
    if args.state_dir:
        section["stateDir"] = args.state_dir
    listen, any_address = getattr(args, "metrics_listen", None), getattr(args, "metrics_any_address", False)
    metrics = section.get("metrics") or {}
    if (listen or any_address) and isinstance(metrics, dict):  # not a mapping: the parser reports it
        metrics = dict(metrics)
        if listen:
            metrics["listen"] = None if listen == "off" else listen
        if any_address:
            metrics["anyAddress"] = True
        section["metrics"] = metrics
    gateway = parse_gateway(section)
    if args.inputs:
        published = read_published(args.inputs, config.layout)  # the one reader (the OVN node agent's too)
        registry, ruleset = published.registry, published.gateway
    else:
        if not args.zones:
            raise UsageError("give --inputs FILE (published by the controller) or --zones/--policies files")
        docs = load_documents(args.zones)
        registry = ZoneRegistry.from_objects(config.layout, of_kind(docs, "SecurityZone"))
        policies = of_kind(load_documents(args.policies or []), "SecurityZonePolicy")
        ruleset = compile_objects(policies, registry, config.nat64)
    return Inputs(config, gateway, registry, ruleset)


def _gateway(inputs: Inputs, args: argparse.Namespace) -> "Gateway":
    from .gateway import Gateway
    from .host import Host

    return Gateway(inputs.gateway, Host(args.netns))


# --- run ------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from . import daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    inputs = load_inputs(args)  # the first load must succeed: there is no previous state to keep
    changed = change_check(lambda: input_signature(args))
    return daemon.serve(inputs, lambda: load_inputs(args), gateway=_gateway(inputs, args), changed=changed,
                        interval=args.interval, cleanup=args.cleanup_on_exit)


# --- apply ----------------------------------------------------------------------------------------
def cmd_apply(args: argparse.Namespace) -> int:
    from .daemon import DaemonError, read_result, wait_result
    from .status import daemon_pid

    inputs = load_inputs(args)
    gw = _gateway(inputs, args)
    try:
        plan = gw.build(inputs.config.nat64, inputs.registry, inputs.ruleset)
    except ValidationError as exc:
        raise ValidationError(exc.problems, source=f"refused, nothing changed: {exc.source}") from None
    if args.dry_run:
        gw.preflight(plan)
        for inst in plan.instances:
            _out(f"# --- tayga.conf ({inst.name}, {inst.tun}) ---\n{inst.conf_text}")
        loader = "nft -f" if plan.filter_backend == "nftables" else "ip6tables-restore --noflush"
        _out(f"# --- zone filter: {loader} ---\n{plan.filter_text()}")
        _out(f"# --- NAT: nft -f ---\n{plan.nat_text}")
        routes = "\n".join(f"# route {r.describe()}" for r in sorted(plan.routes))
        rules = "\n".join(f"# rule {r.priority}: fwmark {r.fwmark:#x}/{r.mask:#x} lookup {r.table}"
                          for r in sorted(plan.policy_rules))
        _out(f"# --- netlink ---\n{routes}\n{rules}".rstrip())
        _out(f"# checked with {'nft -c' if plan.filter_backend == 'nftables' else 'ip6tables-restore --test, nft -c'} "
             f"and Tayga {gw.version}: OK")
        return 0
    state_dir = Path(inputs.gateway.state_dir)
    pid = daemon_pid(state_dir)
    if pid is not None:
        before = int(read_result(state_dir).get("seq", 0))
        os.kill(pid, signal.SIGHUP)
        result = wait_result(state_dir, before + 1, args.timeout)
        if not result.get("ok"):
            raise DaemonError(f"the running gateway (pid {pid}) refused: {result.get('error')}")
        _out(_changes_text(result.get("changes", []), f"applied by the running gateway (pid {pid})"))
        return 0
    report = gw.apply(plan, tayga=False)
    _out(_changes_text(report.changes, "applied"))
    _out("note: no `zonectl gateway run` is active for this state dir; Tayga configs are written to "
         f"{state_dir}/tayga/*/tayga.conf but Tayga is only started and supervised by `zonectl gateway run`")
    return 0


def _changes_text(changes: Sequence[str], verb: str) -> str:
    return f"{verb}: nothing changed" if not changes else f"{verb}:\n" + "\n".join(f"  {c}" for c in changes)


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# --- status ---------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    from .host import Host
    from .status import read_status, status_config

    config = load_config(args.config)
    status = read_status(status_config(config.section("gateway"), args.state_dir), Host(args.netns))
    if args.output == "json":
        _out(json.dumps(status, indent=2, sort_keys=True))
    else:
        _out(_status_text(status))
    return 0 if all(t["up"] for t in status["tayga"]) and status["tayga"] else 1


def _status_text(status: dict) -> str:
    lines = [f"tayga {status['taygaVersion']}, state {status['stateDir']}, "
             f"daemon {'pid ' + str(status['daemonPid']) if status['daemonPid'] else 'not running'}"]
    if status.get("lastApply"):
        la = status["lastApply"]
        lines.append(f"last apply #{la.get('seq')}: {'ok' if la.get('ok') else 'REFUSED: ' + str(la.get('error'))}")
    lines.append(f"{'INSTANCE':<10} {'UP':<4} {'PID':<8} {'TUN':<12} {'MAPPINGS':>8} {'ACTIVE':>7}")
    for t in status["tayga"]:
        lines.append(f"{t['name']:<10} {('yes' if t['up'] else 'NO'):<4} {str(t['pid'] or '-'):<8} {t['tun']:<12} "
                     f"{t['dynamicMappings']:>8} {t['activeMappings']:>7}")
    lines.append(f"{'ZONE':<12} {'ACTION':<7} {'PACKETS':>12} {'BYTES':>14}")
    for key, v in sorted(status["zones"].items()):
        zone, action = key.split("/")
        lines.append(f"{zone:<12} {action:<7} {v['packets']:>12} {v['bytes']:>14}")
    return "\n".join(lines)


# --- parser ---------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, inputs: bool = True) -> None:
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP + "; its `gateway` section configures the gateway")
    if inputs:
        p.add_argument("--inputs", metavar="FILE",
                       help="GatewayInputs JSON published by the controller (zones + NAT64 rules); "
                            "or use --zones/--policies")
        p.add_argument("--zones", metavar="FILE", action="extend", nargs="+",
                       help="files or directories with SecurityZone objects (compiled locally)")
        p.add_argument("--policies", metavar="FILE", action="extend", nargs="+",
                       help="files or directories with SecurityZonePolicy objects (compiled locally)")
        p.add_argument("--uplink", metavar="IFNAME", help="override gateway.uplink")
    else:
        p.add_argument("--uplink", metavar="IFNAME", help=argparse.SUPPRESS)
    p.add_argument("--state-dir", metavar="DIR", help="override gateway.stateDir")
    p.add_argument("--netns", metavar="NAME", help="act inside this network namespace (labs and tests)")


def add_run_parser(sub: argparse._SubParsersAction, name: str = "run") -> argparse.ArgumentParser:
    """``gateway run`` (also reached as ``zonectl run gateway``)."""
    p = sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="apply, supervise Tayga, serve metrics, re-apply on change",
                       description="Apply the inputs, keep Tayga running (restart with backoff when it dies),\n"
                       "serve Prometheus metrics and re-apply when an input file changes or on SIGHUP.\n"
                       "Input that does not validate is logged and the previous state stays in force.\n"
                       "SIGTERM stops Tayga; the zone filter stays in place (fail closed) unless\n"
                       "--cleanup-on-exit removes everything zonectl added.",
                       epilog="example:\n  zonectl run gateway --config /etc/zonectl/zonectl.yaml --inputs /etc/zonectl/gateway.json")
    _common(p)
    p.add_argument("--interval", type=seconds, default=2.0, help="seconds between input file checks (default 2)")
    p.add_argument("--metrics-listen", metavar="[ADDRESS]:PORT",
                   help="override gateway.metrics.listen (default [::1]:9464; 'off' disables)")
    p.add_argument("--metrics-any-address", action="store_true",
                   help="allow an unspecified address ([::]: every address, the uplink too) for the metrics")
    p.add_argument("--cleanup-on-exit", action="store_true", help="remove rules, routes, TUNs and NAT on exit")
    p.set_defaults(func=cmd_run)
    return p


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``zonectl gateway`` and its sub-commands (called by zonectl.cli)."""
    fmt = argparse.RawDescriptionHelpFormatter
    gp = subparsers.add_parser(
        "gateway", formatter_class=fmt, help="egress gateway: NAT64 (Tayga), zone filter and masquerade on a host",
        description="The egress gateway: pods' IPv6 traffic to the NAT64 prefix becomes IPv4 here.\n"
        "Tayga translates (one instance for the shared pool, one per zone with an IPv4 pool of its own),\n"
        "the zone filter (nftables verdict maps, or ip6tables) drops NAT64-bound traffic from zones no\n"
        "policy allows, nftables masquerades the shared pool and SNATs each own pool to its zone's egress address.",
        epilog="examples:\n"
        "  zonectl gateway apply --dry-run --config examples/config.yaml --zones examples/zones.yaml \\\n"
        "      --policies examples/policies.yaml --uplink eth1\n"
        "  zonectl gateway run --config /etc/zonectl/config.yaml --inputs /etc/zonectl/gateway.json\n"
        "  zonectl gateway status --config /etc/zonectl/config.yaml",
    )
    sub = gp.add_subparsers(dest="gateway_command", metavar="SUBCOMMAND", required=True)

    add_run_parser(sub)

    p = sub.add_parser("apply", formatter_class=fmt, help="validate and apply once (or --dry-run: print and check)",
                       description="Validate the inputs and apply them once. With a `run` daemon active on the same\n"
                       "state dir, ask it to re-apply (SIGHUP) and report its result. --dry-run prints\n"
                       "tayga.conf, the zone filter and NAT files and the routes, after checking them\n"
                       "with nft -c (or ip6tables-restore --test) and the installed Tayga; nothing is changed.\n"
                       "Exit status 2 (and nothing changed) when the input is refused.")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="print and check the plan; change nothing")
    p.add_argument("--timeout", type=seconds, default=30.0, help="seconds to wait for a running daemon (default 30)")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("status", formatter_class=fmt, help="Tayga instances, mappings and per-zone counters",
                       description="Show the Tayga instances (up, pid, TUN, dynamic mappings), the last apply\n"
                       "and the per-zone packet/byte counters of the zone filter. Exit 1 if a Tayga is down.")
    _common(p, inputs=False)
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_status)
    return gp
