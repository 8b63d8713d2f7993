"""The ``zonectl`` command: explain addresses, compile policies, export zones for firewalls, render configs.

Start-up stays fast and robust: only the core and PyYAML are imported up front. Renderers are imported
inside the command that needs them, and the sub-commands of the I/O layers (``ovn``, ``gateway``,
``operator``, ``lab``) are only built when named on the command line, so ``zonectl explain`` works even when
ovsdbapp, pyroute2 or kopf are missing or broken. Every error a user can cause (bad input, a missing
file, an unavailable part) ends as one message on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from . import __version__
from .core.errors import ValidationError, ZonectlError, one_line
from .inputs import (
    CONFIG_ENV,
    CONFIG_HELP,
    DEFAULT_CONFIG,
    UsageError,
    load_config,
    load_nodes,
    load_policies,
    load_registry,
)

if TYPE_CHECKING:  # type names only: the modules themselves are imported where they are needed
    from .core.config import Config
    from .core.rules import RuleSet
    from .core.zones import ZoneRegistry

EXIT_ERROR = 2

# Sub-commands that live with their layer: module name and the one-line help shown before importing it.
PLUGINS: dict[str, tuple[str, str]] = {
    "ovn": ("zonectl.ovn.cli", "OVN backend: sync compiled rules to the OVN Northbound database"),
    "gateway": ("zonectl.gateway.cli", "egress gateway: NAT64 (Tayga), zone filter and masquerade on a host"),
    "operator": ("zonectl.operator.cli", "Kubernetes operator: watch SecurityZone/SecurityZonePolicy, webhook"),
    "lab": ("zonectl.lab.cli", "the whole system on this machine: OVN, pods in namespaces, NAT64 gateway"),
    "run": ("zonectl.runcmd", "run a zonectl daemon: controller (operator run) or gateway (gateway run)"),
    "doctor": ("zonectl.doctor", "check a deployment: config, OVN, drift, hiding SNAT rows, Tayga, routes, CRDs"),
}


def _emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# --- explain ----------------------------------------------------------------------------------------
def cmd_explain(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    registry = load_registry(config.layout, args.zones)
    text = args.address.strip()
    try:
        address = IPv6Address(text)
    except ValueError:
        try:
            v4 = IPv4Address(text)
        except ValueError:
            raise UsageError(f"{text!r} is not an IPv6 (or IPv4) address") from None
        return _explain_ipv4(v4, config, args.output)
    exp = config.layout.explain(address, registry.names())
    result = exp.as_dict()
    notes: list[str] = []
    if config.nat64 is not None and address in config.nat64.network:
        v4 = config.nat64.extract(address)
        result["nat64"] = {"prefix": str(config.nat64.network), "ipv4": str(v4)}
        notes.append(f"NAT64: stands for IPv4 {v4} (prefix {config.nat64.network})")
    matches: dict[str, str] = {}
    if exp.in_cluster and exp.zone_id:
        from .render.export.model import default_scopes

        matches = {s: config.layout.zone_match(exp.zone_id, s).text for s in default_scopes(config.layout)}
        result["matches"] = matches
        if exp.zone_name is None:
            notes.append("no SecurityZone has this id" if args.zones else "pass --zones FILE to name the zone")
    if args.output == "json":
        _emit(json.dumps(result | {"notes": notes}, indent=2))
        return 0
    lines = [str(exp)] + [f"{'mask (' + s + '):':<19} {m}" for s, m in matches.items()] + [f"note:     {n}" for n in notes]
    _emit("\n".join(lines))
    return 0


def _explain_ipv4(v4: IPv4Address, config: "Config", output: str) -> int:
    if config.nat64 is None:
        raise UsageError(f"{v4} is IPv4 and NAT64 is disabled in the config: pods cannot reach it")
    v6 = config.nat64.embed(v4)
    if output == "json":
        _emit(json.dumps({"address": str(v4), "nat64": {"prefix": str(config.nat64.network), "ipv6": str(v6)}}, indent=2))
    else:
        _emit(f"address:  {v4} (IPv4)\nnat64:    pods reach it as {v6} (prefix {config.nat64.network})")
    return 0


# --- compile ----------------------------------------------------------------------------------------
def _render_ir(ruleset: "RuleSet", config: "Config", registry: "ZoneRegistry", args: argparse.Namespace) -> str:
    from .render.ir import render_ir

    return render_ir(ruleset)


def _render_ovn(ruleset: "RuleSet", config: "Config", registry: "ZoneRegistry", args: argparse.Namespace) -> str:
    """The ACL rows `zonectl ovn` would write, shaped by the config's ``ovn`` section."""
    ovn = _optional("zonectl.render.ovn_match", "--target ovn")
    sync = _optional("zonectl.ovn.sync", "--target ovn")
    settings = sync.SyncSettings.build(config.section("ovn"), registry.layout.cluster, has_tier=args.ovn_tier)
    return json.dumps(ovn.render_ruleset(ruleset, settings.acl), indent=2, sort_keys=True)


def _gateway_inputs(ruleset: "RuleSet", config: "Config", registry: "ZoneRegistry", what: str) -> tuple:
    """What the egress gateway's filter is rendered from: its rules, the NAT64 match, the zones."""
    if config.nat64 is None:
        raise UsageError(f"{what} renders the egress gateway's filter, which needs a NAT64 prefix (nat64.prefix)")
    from .render.ip6tables import ZoneMatch

    zones = tuple(ZoneMatch(z.name, registry.layout.zone_match(z.id)) for z in registry)
    return ruleset.for_gateway(), config.nat64.match(), zones


def _render_ip6tables(ruleset: "RuleSet", config: "Config", registry: "ZoneRegistry", args: argparse.Namespace) -> str:
    mod = _optional("zonectl.render.ip6tables", "--target ip6tables")
    return mod.render_restore(*_gateway_inputs(ruleset, config, registry, "--target ip6tables"))


def _render_nftables(ruleset: "RuleSet", config: "Config", registry: "ZoneRegistry", args: argparse.Namespace) -> str:
    mod = _optional("zonectl.render.nftables", "--target nftables")
    return mod.render_filter(*_gateway_inputs(ruleset, config, registry, "--target nftables"))


# Each target: (rule set, config, zone registry, parsed arguments) -> text.
TARGETS: dict[str, Callable[[Any, Any, Any, argparse.Namespace], str]] = {
    "ir": _render_ir,
    "ovn": _render_ovn,
    "ip6tables": _render_ip6tables,
    "nftables": _render_nftables,
}


def cmd_compile(args: argparse.Namespace) -> int:
    from .core.rules import compile_objects

    config = load_config(args.config)
    registry = load_registry(config.layout, args.zones)
    policies = load_policies(args.files)
    ruleset = compile_objects(policies, registry, config.nat64)
    _emit(TARGETS[args.target](ruleset, config, registry, args))  # rendered whole before anything is written
    return 0


# --- export -----------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from .render import export

    config = load_config(args.config)
    registry = load_registry(config.layout, args.zones)
    nodes = load_nodes(args.nodes, config.layout)
    if args.format in export.CIDR_FORMATS and args.scope == "datacenter":
        raise UsageError(
            f"{args.format} has no wildcard masks: it lists this cluster's node CIDRs (--nodes), so it cannot "
            "cover the datacenter; export each cluster with its own --config and --nodes instead"
        )
    scopes = [args.scope] if args.scope else None
    data = export.build(registry, scopes, nodes)
    export.write(args.format, data, sys.stdout)
    return 0


# --- render -----------------------------------------------------------------------------------------
def cmd_render_coredns(args: argparse.Namespace) -> int:
    coredns = _optional("zonectl.render.coredns", "render coredns")
    config = load_config(args.config)
    if config.nat64 is None:
        raise UsageError("render coredns: NAT64 is disabled in the config (nat64.enabled: false), so there is no dns64 prefix")
    dns = coredns.parse_dns(config.section("dns"))
    render = coredns.render_configmap if args.output == "configmap" else coredns.render_corefile
    _emit(render(config.nat64, dns))
    return 0


# --- plugins ----------------------------------------------------------------------------------------
def _optional(module: str, what: str) -> Any:
    """Import a part that may be missing or broken; either way the user gets one clear sentence."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken dependency failing at import time
        raise UsageError(f"{what} is not available: {module} could not be imported ({type(exc).__name__}: {exc})") from None


def _add_plugin(sub: argparse._SubParsersAction, name: str, wanted: bool) -> None:
    """The plugin's own sub-parser when ``wanted`` (named on the command line), else a cheap stand-in.

    A plugin that cannot be imported still gets a stand-in, whose only action is to say why.
    """
    module, summary = PLUGINS[name]
    reason = f"{module} is not installed"
    if wanted:
        try:
            importlib.import_module(module).add_parser(sub)
            return
        except Exception as exc:  # a missing module or a dependency broken at import time
            reason = f"{module} could not be loaded ({type(exc).__name__}: {exc})"
    p = sub.add_parser(name, help=summary, description=f"{summary}\n(not loaded: {reason})" if wanted else summary)

    def unavailable(_: argparse.Namespace, reason: str = reason) -> int:
        raise UsageError(f"zonectl {name} is not available: {reason}")

    p.set_defaults(func=unavailable, _stand_in=True)


# --- parser -----------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with a usage error as one line (like every other error), naming the command to ask for help.

    Sub-parsers are made with the class of their parent, so every sub-command, plugins included, uses it."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"zonectl: error: {one_line(message)} (see: {self.prog} --help)\n")
        sys.exit(EXIT_ERROR)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole parser; a plugin's real sub-parser is built only when ``argv`` names it."""
    from .render.export import FORMATS

    parser = Parser(
        prog="zonectl",
        formatter_class=_formatter,
        description="Security zones encoded in IPv6 pod addresses, enforced with wildcard masks.",
        epilog="examples:\n"
        "  zonectl explain fd00:10:244:2:2000::5 --config examples/config.yaml --zones examples/zones.yaml\n"
        "  zonectl compile -f examples/policies.yaml --zones examples/zones.yaml --config examples/config.yaml --target ir\n"
        "  zonectl export --format json --zones examples/zones.yaml --config examples/config.yaml\n"
        "  zonectl render coredns --config examples/config.yaml\n"
        "  zonectl run controller --config FILE      (= zonectl operator run; run gateway = gateway run)\n\n"
        f"The config file comes from --config, else ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}.\n"
        "Errors go to stderr; the exit status is 2 for bad input, missing files or unavailable parts.",
    )
    parser.add_argument("--version", action="version", version=f"zonectl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "explain", formatter_class=_formatter, help="decode an address: cluster, node, zone, IPAM offset",
        description="Decode a pod address into cluster prefix, node podCIDR, zone (id and name) and IPAM offset,\n"
        "or say that it is not in this cluster. Addresses inside the NAT64 prefix also show their IPv4\n"
        "address; an IPv4 address shows the IPv6 address pods reach it at.",
        epilog="examples:\n"
        "  zonectl explain fd00:10:244:2:2000::5 --config examples/config.yaml --zones examples/zones.yaml\n"
        "  zonectl explain fd00:10:244:2:2000::5 --config examples/config.yaml -o json\n"
        "  zonectl explain 198.51.100.7 --config examples/config.yaml",
    )
    p.add_argument("address", metavar="ADDRESS", help="an IPv6 pod address (or an IPv4 destination)")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("--zones", metavar="FILE", action="extend", nargs="+",
                   help="files or directories with SecurityZone objects, to name the zone")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format (default: text)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "compile", formatter_class=_formatter, help="compile SecurityZonePolicy objects for a backend",
        description="Parse and compile SecurityZonePolicy objects against the zones, and print the result for\n"
        "one backend. Nothing is printed unless every policy compiles; errors name the field path.\n\n"
        "targets:\n"
        "  ir         the backend-neutral rules as JSON (stable ids, order, masks)\n"
        "  ovn        OVN Northbound ACL rows as JSON (the `ovn` config section shapes them)\n"
        "  ip6tables  the egress gateway's filter (rules toward the NAT64 prefix, zones fail closed)\n"
        "             as ip6tables-restore --noflush input, in chains of zonectl's own\n"
        "  nftables   the same filter as an nftables table of zonectl's own (nft -f)\n"
        "The gateway (`zonectl gateway`) adds the marks of zones with an IPv4 egress pool of their own.",
        epilog="example:\n"
        "  zonectl compile -f examples/policies.yaml --zones examples/zones.yaml \\\n"
        "      --config examples/config.yaml --target nftables",
    )
    p.add_argument("-f", "--filename", dest="files", metavar="POLICY", action="extend", nargs="+", required=True,
                   help="files or directories with SecurityZonePolicy objects (repeatable)")
    p.add_argument("--zones", metavar="FILE", action="extend", nargs="+", required=True,
                   help="files or directories with SecurityZone objects")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("--target", choices=tuple(TARGETS), required=True, help="what to print: " + ", ".join(TARGETS))
    p.add_argument("--ovn-tier", action=argparse.BooleanOptionalAction, default=True,
                   help="--target ovn: rows for an NB schema with the ACL tier column (OVN >= 23.06); "
                        "--no-ovn-tier for older OVN (default: with tier)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser(
        "export", formatter_class=_formatter, help="export the zones for external firewalls",
        description="Print every zone's match for a firewall. Wildcard formats carry one value/mask per zone\n"
        "and scope; CIDR formats (for firewalls without IPv6 wildcard masks) expand each zone into one\n"
        "CIDR per node and need --nodes. Values are always normalised (value AND mask).\n\n"
        "formats:\n"
        "  json          zone, id, scope, value, mask (and CIDRs per node with --nodes)\n"
        "  csv           the same, one row per zone and scope, and one per node CIDR\n"
        "  nftables      defines per zone and scope, per-node sets, counter chains (nft -f)\n"
        "  ip6tables     commented matches in chains ZONECTL-ZONE-SRC/DST (ip6tables-restore --noflush)\n"
        "  checkpoint    mgmt_cli `add wildcard` commands (Check Point masks are inverted: 1 = any)\n"
        "  panos         `set address` / `set address-group` commands (needs --nodes)\n"
        "  fortigate     `config firewall address6` / `addrgrp6` (needs --nodes)\n"
        "  asa           `object-group network` with one network-object per CIDR (needs --nodes)",
        epilog="examples:\n"
        "  zonectl export --format json --zones examples/zones.yaml --config examples/config.yaml\n"
        "  kubectl get nodes -o yaml > nodes.yaml\n"
        "  zonectl export --format panos --zones examples/zones.yaml --nodes nodes.yaml --config zonectl.yaml",
    )
    p.add_argument("--format", choices=tuple(FORMATS), required=True, help="output format")
    p.add_argument("--zones", metavar="FILE", action="extend", nargs="+", required=True,
                   help="files or directories with SecurityZone objects")
    p.add_argument("--nodes", metavar="FILE", action="extend", nargs="+",
                   help="node podCIDRs: a `kubectl get nodes -o yaml` dump, or a YAML `cidrs:` list")
    p.add_argument("--scope", choices=("cluster", "datacenter"),
                   help="only this scope (default: cluster, and datacenter if the layout has one)")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("render", formatter_class=_formatter, help="render configuration for other components",
                       description="Render configuration for components zonectl works with.",
                       epilog="example:\n  zonectl render coredns --config examples/config.yaml")
    rsub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    r = rsub.add_parser(
        "coredns", formatter_class=_formatter, help="CoreDNS server blocks with dns64 for the NAT64 prefix",
        description="Print CoreDNS server blocks that synthesise AAAA records inside the NAT64 prefix (dns64),\n"
        "from the config's nat64 and dns sections: names of the cluster (and dns.nativeZones) keep their\n"
        "real AAAA records, every other name gets a synthesised one inside the NAT64 prefix.",
        epilog="examples:\n  zonectl render coredns --config examples/config.yaml\n"
        "  zonectl render coredns --config zonectl.yaml -o configmap | kubectl apply -f -",
    )
    r.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    r.add_argument("-o", "--output", choices=("corefile", "configmap"), default="corefile",
                   help="the Corefile alone, or the CoreDNS ConfigMap for `kubectl apply -f -` (default: corefile)")
    r.set_defaults(func=cmd_render_coredns)

    command = next((a for a in argv if not a.startswith("-")), None)
    for name in PLUGINS:
        _add_plugin(sub, name, wanted=(name == command))
    return parser


def format_error(exc: BaseException) -> str:
    """One message; a ValidationError with several problems lists each on its own line."""
    if isinstance(exc, ValidationError) and len(exc.problems) > 1:
        head = f"{exc.source}: " if exc.source else ""
        return "zonectl: error: " + head + f"{len(exc.problems)} problems:\n" + "\n".join(f"  {p}" for p in exc.problems)
    return f"zonectl: error: {exc}"


class _QuietPipe:
    """stdout whose reader may leave early (``zonectl ovn sync ... | head -1``): the rest of the output is
    dropped and the command still finishes and exits with its own status; a write already made to NB is
    not reported as a failed command with a broken-pipe traceback."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        """Point the descriptor at /dev/null, so that the interpreter's last flush at exit is quiet too."""
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # not a real descriptor (captured output): nothing more to write to
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    stdout = sys.stdout
    quiet = _QuietPipe(stdout)
    sys.stdout = quiet  # type: ignore[assignment]
    try:
        return _main(argv)
    finally:
        quiet.flush()  # a buffered stdout (no PYTHONUNBUFFERED) meets the gone reader here, not at exit
        sys.stdout = stdout


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args, extra = parser.parse_known_args(args_list)
    if extra and not getattr(args, "_stand_in", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(func(args) or 0)
    except (ZonectlError, OSError) as exc:
        print(format_error(exc), file=sys.stderr)
        return int(getattr(exc, "exit_status", EXIT_ERROR))  # e.g. 3: an OVN sync whose outcome is unknown
    except ImportError as exc:  # a layer imports its dependencies lazily, inside its command
        print(f"zonectl: error: zonectl {args.command} is not available: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
