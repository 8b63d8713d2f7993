"""``zonectl ovn sync|status|snat|run``: the OVN backend from the command line.

The operator calls the same functions (``zonectl.ovn.sync.sync``/``remove_policy``); these commands are
for operators and for standalone use. Every input is loaded and compiled before NB is opened, so a
policy that fails to compile changes nothing. Errors are ZonectlError: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from zonectl.core.errors import ValidationError
from zonectl.inputs import CONFIG_HELP, UsageError, load_config, load_policies, load_registry, read_pem, seconds

from .config import DRIFT_MODES, SNAT_MODES, OvnConfig, parse_ovn

if TYPE_CHECKING:
    from zonectl.metrics_server import Listen
    from zonectl.core.config import Config
    from zonectl.core.layout import Layout
    from zonectl.core.rules import Rule, RuleSet
    from zonectl.core.zones import ZoneRegistry

    from .connection import NbClient, NbSettings
    from .snat import SnatGuard
    from .sync import OutcomeUnknown, SyncReport, SyncSettings

LOG = logging.getLogger("zonectl.ovn")


@dataclass(frozen=True)
class _Inputs:
    config: Config
    ovn: OvnConfig
    registry: ZoneRegistry
    rules: RuleSet | None


def _load(args: argparse.Namespace, *, need_policies: bool) -> _Inputs:
    from zonectl.core.rules import compile_objects

    config = load_config(args.config)
    ovn = parse_ovn(config.section("ovn"))
    registry = load_registry(config.layout, args.zones)
    rules = None
    if args.files:
        if not args.zones:
            raise UsageError("-f POLICY needs --zones FILE (the SecurityZone objects the policies name)")
        rules = compile_objects(load_policies(args.files), registry, config.nat64)
    elif need_policies:
        raise UsageError("nothing to sync: pass -f POLICY (files or directories with SecurityZonePolicy objects)"
                         + (" or --inputs FILE (the document the controller publishes)" if "inputs" in args else "")
                         + (" (--allow-empty without -f removes every zonectl row)" if args.ovn_command == "sync" else ""))
    return _Inputs(config, ovn, registry, rules)


def _open(args: argparse.Namespace, config: Config, ovn: OvnConfig) -> tuple[NbClient, SyncSettings]:
    from zonectl.ovn.connection import NbSettings, connect
    from zonectl.ovn.sync import SyncSettings

    settings = NbSettings.from_config(ovn, args.nb)
    overrides: dict[str, Any] = {k: v for k, v in (("private_key", args.ssl_key), ("certificate", args.ssl_cert),
                                                    ("ca_cert", args.ssl_ca)) if v}
    for option, path in (("--ssl-key", args.ssl_key), ("--ssl-cert", args.ssl_cert), ("--ssl-ca", args.ssl_ca)):
        if path:
            read_pem(path, option)
    if args.timeout is not None:
        overrides["timeout"] = args.timeout
    if overrides:
        settings = replace(settings, **overrides)
    if not settings.remote:
        raise ValidationError("no NB remote: pass --nb unix:PATH|tcp:HOST:PORT|ssl:HOST:PORT or set ovn.nb "
                              "in the config", source="ovn")
    settings.validate()
    nb = connect(settings)
    try:
        sync_settings = SyncSettings.from_config(ovn, config.layout, nb.has_tier).allowing(
            empty=True if getattr(args, "allow_empty", False) else None,
            switch_drop=getattr(args, "allow_switch_drop", False))
    except BaseException:
        nb.close()
        raise
    return nb, sync_settings


def _print(data: Any, lines: list[str], output: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if output == "json" else "\n".join(lines))


def cmd_sync(args: argparse.Namespace) -> int:
    from zonectl.ovn.sync import OutcomeUnknown, sync

    inputs = _load(args, need_policies=not args.allow_empty)
    rules = list(inputs.rules) if inputs.rules is not None else []  # none: --allow-empty, remove every row
    nb, settings = _open(args, inputs.config, inputs.ovn)
    try:
        report = sync(nb, rules, settings, mode=args.mode or inputs.ovn.drift)
    except OutcomeUnknown as exc:
        nb.close(timeout=1)  # its thread may wait for an answer that never comes
        report = _reread(nb.settings, rules, settings, exc)
    finally:
        nb.close()
    _print(report.as_dict(), report.lines(), args.output)
    return 0


def _reread(nb_settings: NbSettings, rules: list[Rule], settings: SyncSettings, unknown: OutcomeUnknown) -> SyncReport:
    """After "sent, no answer": read NB again on a new connection (for up to the NB timeout) and say what is there.

    All of the sync is in NB: the report of what it applied. None of it: an error (exit 2). NB could not be
    read again: the outcome stays unknown (exit 3)."""
    from zonectl.ovn.connection import OvnError, brief, connect
    from zonectl.ovn.sync import OutcomeUnknown, SyncReport, sync

    LOG.warning("%s; reading NB again", unknown)
    deadline = time.monotonic() + nb_settings.timeout
    while True:
        try:
            with connect(replace(nb_settings, timeout=max(1.0, deadline - time.monotonic()))) as fresh:
                now = sync(fresh, rules, settings, mode="log")
            break
        except OvnError as exc:
            if time.monotonic() >= deadline:
                raise OutcomeUnknown(unknown.remote, unknown.cause, unknown.changes,
                                     f"NB could not be read again within {nb_settings.timeout:g}s ({brief(exc)}): check "
                                     "with `zonectl ovn status`, or run the sync again") from None
            time.sleep(0.5)
    if not now.in_sync:
        raise OvnError(f"ovn sync failed ({nb_settings.remote}): the answer to the transaction was lost ({unknown.cause}), "
                       f"and NB, read again on a new connection, does not hold it: {len(now.changes)} changes still "
                       "to make (none of this sync was applied, or NB changed since); run the sync again")
    return SyncReport("repair", unknown.changes, applied=True, desired=now.desired, owned_before=now.owned_before,
                      switches=now.switches, note="the answer was lost; NB read again on a new connection holds "
                      "every change: applied")


def cmd_status(args: argparse.Namespace) -> int:
    from zonectl.ovn.status import status

    inputs = _load(args, need_policies=False)
    nb, settings = _open(args, inputs.config, inputs.ovn)
    try:
        st = status(nb, settings, inputs.config.layout, inputs.registry if args.zones else None, inputs.rules)
    finally:
        nb.close()
    _print(st.as_dict(), st.lines(), args.output)
    return 0


def cmd_snat(args: argparse.Namespace) -> int:
    from zonectl.ovn.snat import SnatGuard, find_hiding_nats, remove_nats

    inputs = _load(args, need_policies=False)
    nb, _ = _open(args, inputs.config, inputs.ovn)
    zones = inputs.registry if args.zones else None
    mode = args.mode or inputs.ovn.snat
    try:
        if mode == "report":
            with nb.locked():
                found = find_hiding_nats(nb.api.tables, inputs.config.layout, zones)
            _print([f.as_dict() for f in found], [str(f) for f in found] or ["no SNAT row hides a zone pod"],
                   args.output)
            return 0
        removed = remove_nats(nb, inputs.config.layout, zones)
        _print([f.as_dict() for f in removed], [f"removed {f}" for f in removed] or ["nothing to remove"],
               args.output)
        if args.watch:
            stop = _stop_event()
            with SnatGuard(nb, inputs.config.layout, zones):
                stop.wait()
        return 0
    finally:
        nb.close()


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _snat_guard(args: argparse.Namespace, ovn: OvnConfig, nb: NbClient, layout: Layout,
                zones: ZoneRegistry | None) -> SnatGuard | None:
    """The SNAT guard, started, when ovn.snat is remove or --remove-snat is given."""
    from zonectl.ovn.snat import SnatGuard

    return SnatGuard(nb, layout, zones).start() if ovn.snat == "remove" or args.remove_snat else None


def cmd_run(args: argparse.Namespace) -> int:
    """Periodic sync (drift repair) until SIGTERM; inputs are re-read and re-compiled every round.

    A round whose inputs fail to load or compile logs the error and keeps NB as it is (fail closed: the
    last good rows stay); an OVN error is logged and retried next round. With ``--inputs FILE`` this is
    the node agent of interconnect mode (``zonectl.ovn.agent``).
    """
    from zonectl.ovn.resync import Resyncer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = _run_flags(args)
    if args.inputs:
        if args.zones or args.files:
            raise UsageError("--inputs FILE and --zones/-f exclude each other: the published document already "
                             "holds the compiled rules")
        return _run_agent(args, metrics)
    inputs = _load(args, need_policies=True)
    nb, settings = _open(args, inputs.config, inputs.ovn)
    guard = _snat_guard(args, inputs.ovn, nb, inputs.config.layout, inputs.registry)
    stop = _stop_event()
    resyncer = Resyncer(nb, lambda: _load(args, need_policies=True).rules, settings, mode=args.mode or inputs.ovn.drift,
                        interval=args.interval or inputs.ovn.resync_seconds)
    try:
        with resyncer:
            stop.wait()
    finally:
        if guard is not None:
            guard.stop()
        nb.close()
    return 0


def _run_flags(args: argparse.Namespace) -> "Listen | None":
    """``run``'s own flags, checked before anything starts (one line naming the flag, exit status 2)."""
    from zonectl.core.errors import Collector
    from zonectl.metrics_server import parse_listen

    errs = Collector()
    listen = None
    if args.metrics_listen not in (None, "off"):
        if not args.inputs:
            errs.add("--metrics-listen", "is served by the node agent only (with --inputs FILE)")
        listen = parse_listen(args.metrics_listen, "--metrics-listen", errs, any_address=args.metrics_any_address,
                              allow="--metrics-any-address")
    errs.raise_if_any("ovn run")
    return listen


def _run_agent(args: argparse.Namespace, metrics: "Listen | None") -> int:
    """``zonectl ovn run --inputs FILE``: the node agent (zonectl/ovn/agent.py)."""
    from zonectl.ovn.agent import Agent, IncompleteInputs, InputsFile, open_retrying, serve

    config = load_config(args.config)  # a broken config fails at start (exit 2), and so does a broken document:
    ovn = parse_ovn(config.section("ovn"))
    source = InputsFile(args.inputs, config.layout)
    try:  # later ones are refused and logged, the rows of the last good one staying in NB
        source.load()
    except IncompleteInputs:
        pass  # the placeholder the manifests ship: wait for the controller to publish
    stop = _stop_event()
    opened = open_retrying(lambda: _open(args, config, ovn), stop)
    if opened is None:
        return 0
    nb, settings = opened
    mode = args.mode or ovn.drift
    interval = args.interval or ovn.resync_seconds
    agent = Agent(nb, source, settings, mode, interval=interval, poll=args.poll)
    LOG.info("ovn agent: NB %s, inputs %s, drift %s, resync every %.0fs", nb.settings.remote, args.inputs, mode,
             interval)
    try:
        guard = _snat_guard(args, ovn, nb, config.layout, None)
    except BaseException:
        nb.close()
        raise
    return serve(agent, stop, metrics_listen=metrics, snat_guard=guard)


def _common(p: argparse.ArgumentParser, *, policies_required: bool) -> None:
    p.add_argument("--nb", metavar="REMOTE",
                   help="OVN Northbound: unix:PATH, tcp:HOST:PORT, ssl:HOST:PORT or a comma-separated list "
                        "(default: ovn.nb in the config)")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("--zones", metavar="FILE", action="extend", nargs="+", required=policies_required,
                   help="files or directories with SecurityZone objects")
    p.add_argument("-f", "--filename", dest="files", metavar="POLICY", action="extend", nargs="+",
                   required=policies_required, help="files or directories with SecurityZonePolicy objects")
    p.add_argument("--timeout", type=seconds, metavar="SECONDS", help="connect and transaction timeout (default 10)")
    p.add_argument("--ssl-key", metavar="FILE", help="private key for ssl: remotes")
    p.add_argument("--ssl-cert", metavar="FILE", help="certificate for ssl: remotes")
    p.add_argument("--ssl-ca", metavar="FILE", help="CA certificate for ssl: remotes")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``zonectl ovn ...`` on the top-level parser (called by zonectl.cli)."""
    fmt = argparse.RawDescriptionHelpFormatter
    ovn = subparsers.add_parser(
        "ovn", formatter_class=fmt, help="OVN backend: sync compiled rules to the OVN Northbound database",
        description="Program OVN Northbound ACLs from SecurityZonePolicy objects: one ACL per rule, shared by\n"
        "every node switch, matching zone masks (ip6.src == fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::).\n"
        "Rows carry k8s.ovn.org/owner-controller=zonectl; OVN-Kubernetes' rows are never changed.",
    )
    sub = ovn.add_subparsers(dest="ovn_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "sync", formatter_class=fmt, help="make NB match the policies (or show what would change)",
        description="Compile the policies, then make zonectl's NB rows equal to them in one transaction:\n"
        "create what is missing, delete what is no longer wanted, repair edited rows and duplicates.\n"
        "Nothing is written unless every policy compiles. A second run writes nothing. Refused (nothing\n"
        "written, exit 2): a config that selects no node switch, names a switch NB lacks, or would take the\n"
        "rows off switches that carry them (--allow-switch-drop), and an empty rule set (--allow-empty).\n"
        "If NB dies after the transaction was sent, NB is read again: exit 0 if it holds the changes, 2 if\n"
        "it does not, 3 if it cannot be read (outcome unknown).",
        epilog="example:\n  zonectl ovn sync --nb unix:/var/run/ovn/ovnnb_db.sock --config examples/config.yaml \\\n"
        "      --zones examples/zones.yaml -f examples/policies.yaml --mode log",
    )
    _common(p, policies_required=False)
    p.add_argument("--mode", choices=DRIFT_MODES[1:], help="log: only print; repair: write (default: ovn.drift "
                                                               "in the config, else repair)")
    p.add_argument("--allow-empty", action="store_true",
                   help="allow deleting every row zonectl owns (without -f: remove every zone rule); refused otherwise")
    p.add_argument("--allow-switch-drop", action="store_true",
                   help="allow taking the rows off node switches that carry them and still exist (refused otherwise, "
                        "beyond ovn.maxSwitchDrop)")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser(
        "status", formatter_class=fmt, help="owned rows, drift, SNAT rows that hide zone pods",
        description="Show zonectl's rows in NB per policy, the node switches they are on, the drift against\n"
        "the policies (with --zones and -f) and every gateway-router NAT row that hides a zone pod's source.",
    )
    _common(p, policies_required=False)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "snat", formatter_class=fmt, help="report (default) or remove SNAT rows that hide zone pods",
        description="OVN-K's --disable-snat-multiple-gws still adds one SNAT row per pod on GR_<node>: the\n"
        "firewall sees the node, not the zone. --mode remove deletes those rows (logging each);\n"
        "--watch keeps them removed as OVN-K re-adds them (until SIGTERM).",
    )
    _common(p, policies_required=False)
    p.add_argument("--mode", choices=SNAT_MODES, help="default: ovn.snat in the config, else report")
    p.add_argument("--watch", action="store_true", help="with --mode remove: keep watching NB")
    p.set_defaults(func=cmd_snat)

    p = sub.add_parser(
        "run", formatter_class=fmt, help="sync periodically (drift repair) until stopped",
        description="Re-read and re-compile the inputs and sync every --interval seconds. A round that fails\n"
        "to compile leaves NB as it is. --remove-snat (or ovn.snat: remove) also runs the SNAT guard.\n\n"
        "--inputs FILE instead of --zones/-f: the node agent of OVN-K interconnect mode (one NB per node).\n"
        "FILE is the document the controller publishes (ConfigMap zonectl-gateway-rules, with ovn.mode:\n"
        "interconnect). It is re-read when it changes; a document that does not parse or lacks the complete\n"
        "rule set is logged and refused, and the rows of the last good one stay. NB is also re-synced when\n"
        "its rows change (drift repair) and every --interval seconds. An unreachable NB is retried.",
        epilog="example (what the zonectl-ovn-agent DaemonSet runs on every node):\n"
        "  zonectl ovn run --config /etc/zonectl/zonectl.yaml --nb unix:/var/run/ovn/ovnnb_db.sock \\\n"
        "      --inputs /etc/zonectl/inputs/gateway.json --metrics-listen '[$POD_IP]:9465'",
    )
    _common(p, policies_required=False)
    p.add_argument("--inputs", metavar="FILE",
                   help="the published rules (GatewayInputs JSON with the `ovn` part) instead of --zones/-f")
    p.add_argument("--mode", choices=DRIFT_MODES, help="default: ovn.drift in the config, else repair")
    p.add_argument("--interval", type=seconds, metavar="SECONDS", help="default: ovn.resyncSeconds, else 60")
    p.add_argument("--poll", type=seconds, default=2.0, metavar="SECONDS",
                   help="with --inputs: how often the file is checked for changes (default 2)")
    p.add_argument("--metrics-listen", metavar="[ADDRESS]:PORT",
                   help="with --inputs: serve /metrics and /healthz here, e.g. [::1]:9465 or the pod's address "
                        "(default: off)")
    p.add_argument("--metrics-any-address", action="store_true",
                   help="allow an unspecified --metrics-listen address ([::]: every address of the host)")
    p.add_argument("--remove-snat", action="store_true", help="also remove hiding SNAT rows and keep them removed")
    p.set_defaults(func=cmd_run)
    return ovn
