"""``zonectl doctor``: what is wrong with a deployment, one line per check, read-only.

It answers the questions a user debugging "my pod cannot reach X" or "the firewall sees the node IP"
asks first: does the config validate, can zonectl reach OVN's Northbound database, do the ACLs match
the policies, does any SNAT row hide a zone pod's source address, is Tayga up, is forwarding on, does
the NAT64 prefix route into Tayga, are the CRDs installed. Each check is a small function returning a
``Check``; nothing here writes anything. Exit status: 0 all fine (skips allowed), 1 a check failed,
2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Sequence

from .core.errors import ZonectlError
from .inputs import CONFIG_HELP, seconds

Status = Literal["ok", "warn", "fail", "skip"]
CRD_NAMES = ("securityzones.zonectl.io", "securityzonepolicies.zonectl.io")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"[{self.status.upper():4}] {self.name}: {self.detail}"


# --- OVN ----------------------------------------------------------------------------------------------
def check_ovn(config: Any, registry: Any, rules: Any, remote: str | None, timeout: float) -> list[Check]:
    """Connectivity, owned rows, drift against the policies, and SNAT rows that hide zone pods."""
    from .ovn.config import parse_ovn
    from .ovn.connection import NbSettings, connect
    from .ovn.status import status
    from .ovn.sync import SyncSettings

    try:
        ovn = parse_ovn(config.section("ovn"))
        settings = NbSettings.from_config(ovn, remote)
    except ZonectlError as exc:
        return [Check("ovn connection", "fail", str(exc))]
    if not settings.remote:
        return [Check("ovn connection", "skip", "no NB remote (pass --nb or set ovn.nb in the config)")]
    settings = replace(settings, timeout=timeout)
    try:
        settings.validate()
        nb = connect(settings)
    except Exception as exc:  # any connection failure is this check's finding, not a crash
        return [Check("ovn connection", "fail", f"{settings.remote}: {exc}")]
    try:
        sync_settings = SyncSettings.from_config(ovn, config.layout, nb.has_tier)
        st = status(nb, sync_settings, config.layout, registry, rules.rules if rules is not None else None)
    finally:
        nb.close()
    out = [Check("ovn connection", "ok", f"{st.remote}, NB schema {st.schema_version}, "
                 f"ACL tiers {'yes' if st.has_tier else 'no (priorities used)'}, {len(st.switches)} node switches")]
    if not st.switches:  # zonectl's rules would be enforced nowhere: say why no switch is a node switch
        why = "; ".join(f"{n}: {r}" for n, r in list(st.not_selected.items())[:6]) or "this NB has no logical switch"
        out.append(Check("ovn switches", "fail", f"no node switch selected, so no zone rule can be enforced ({why}); "
                         "check layout.cluster and ovn.switches against OVN-K's switches (zonectl ovn status)"))
    owned = sum(st.rows_by_policy.values())
    out.append(Check("ovn owned ACLs", "ok" if owned or rules is None else "warn",
                     f"{owned} rule rows for {len(st.rows_by_policy)} policies, {st.exemptions} exemptions"))
    if st.refused is not None:
        out.append(Check("ovn drift", "fail", f"a sync would be refused: {st.refused}"))
    elif st.drift is None:
        out.append(Check("ovn drift", "skip", "pass --zones and -f POLICY to compare NB with the policies"))
    elif st.drift.in_sync:
        out.append(Check("ovn drift", "ok", "NB matches the policies"))
    else:
        out.append(Check("ovn drift", "fail", "; ".join(st.drift.lines()) + " (fix: zonectl ovn sync --mode repair)"))
    if st.snat:
        out.append(Check("ovn snat", "fail", f"{len(st.snat)} NAT rows hide zone pods' sources: "
                         + "; ".join(str(f) for f in st.snat[:5]) + " (zonectl ovn snat --help)"))
    else:
        out.append(Check("ovn snat", "ok", "no NAT row on a gateway router hides a zone pod's source"))
    return out


# --- gateway host -------------------------------------------------------------------------------------
def check_forwarding(host: Any) -> Check:
    """The gateway routes pods' IPv6 in and IPv4 out: both forwarding switches must be on."""
    values = {}
    for key in ("net.ipv6.conf.all.forwarding", "net.ipv4.ip_forward"):
        try:
            values[key] = host.sysctl_get(key)
        except ZonectlError as exc:
            return Check("forwarding", "fail", f"cannot read {key}: {exc}")
    off = [k for k, v in values.items() if v != "1"]
    if off:
        return Check("forwarding", "fail", f"{', '.join(off)} is off (zonectl gateway apply turns it on)")
    return Check("forwarding", "ok", "IPv6 and IPv4 forwarding on")


def check_tayga(config: Any, host: Any, state_dir: str | None = None) -> list[Check]:
    """Tayga instances up (pid alive, TUN up, answering through it), and the NAT64 prefix routed into Tayga."""
    from .gateway.status import read_status, status_config

    st = read_status(status_config(config.section("gateway"), state_dir), host)
    instances = st["tayga"]
    if not instances:
        return [Check("tayga", "fail", f"no Tayga instance configured under {st['stateDir']} (zonectl gateway apply)")]
    out = []
    for inst in instances:
        ok = inst["up"]
        why = (f"pid {inst['pid']} does not answer through {inst['tun']} (stopped or hung): zonectl gateway run "
               "restarts it" if inst["pid"] and not inst.get("answering", True)
               else f"not running (pid {inst['pid']}, tun {inst['tun']}): zonectl gateway run restarts it")
        out.append(Check(f"tayga {inst['name']}", "ok" if ok else "fail",
                         f"pid {inst['pid']}, tun {inst['tun']} up, {inst['activeMappings']} active mappings" if ok
                         else why))
    if config.nat64 is not None:
        probe = str(config.nat64.embed("192.0.2.1"))
        proc = host.run(["ip", "-6", "-j", "route", "get", probe], check=False)
        try:
            dev = json.loads(proc.stdout)[0].get("dev") if proc.returncode == 0 else None
        except (ValueError, IndexError):
            dev = None
        tuns = {i["tun"] for i in instances}
        out.append(Check("nat64 route", "ok" if dev in tuns else "fail",
                         f"{config.nat64.network} -> {dev}" if dev in tuns else
                         f"{config.nat64.network} routes to {dev or 'nowhere'}, not to a Tayga TUN ({', '.join(sorted(tuns))})"))
    return out


# --- Kubernetes ---------------------------------------------------------------------------------------
def check_crds(kubeconfig: str | None) -> Check:
    """Both CRDs installed and established (needs a kubeconfig or an in-cluster service account)."""
    try:
        from kubernetes import client, config as kconfig
    except Exception as exc:  # a broken client library is a finding, not a crash
        return Check("crds", "skip", f"kubernetes client not available: {exc}")
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            kconfig.load_incluster_config()
        else:
            path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
            if not Path(path.split(os.pathsep)[0]).exists():
                return Check("crds", "skip", "no cluster (no kubeconfig); pass --kubeconfig to check the CRDs")
            kconfig.load_kube_config(config_file=path)
        api = client.ApiextensionsV1Api()
        found = {c.metadata.name: c for c in api.list_custom_resource_definition(_request_timeout=10).items
                 if c.metadata is not None}
    except Exception as exc:
        return Check("crds", "fail", f"cannot list CRDs: {exc}")
    missing = [n for n in CRD_NAMES if n not in found]
    if missing:
        return Check("crds", "fail", f"missing {', '.join(missing)} (kubectl apply -k manifests/)")
    return Check("crds", "ok", ", ".join(CRD_NAMES) + " installed")


# --- command ------------------------------------------------------------------------------------------
def run_checks(args: argparse.Namespace) -> list[Check]:
    from .core.rules import compile_objects
    from .inputs import load_config, load_policies, load_registry, read_mapping

    # An input that does not load is an input error like in every command (one line, exit status 2), not a
    # finding about the deployment: nothing can be checked against a config that does not parse.
    config = load_config(args.config)
    registry = load_registry(config.layout, args.zones)
    rules = compile_objects(load_policies(args.files), registry, config.nat64) if args.files else None
    if args.kubeconfig:  # read strictly first: the client library would block on a FIFO or trace back on binary
        read_mapping(args.kubeconfig, "kubeconfig")
    checks: list[Check] = []
    checks.append(Check("config", "ok", f"layout {config.layout.cluster}, {len(registry)} zones"
                        + (f", {len(rules)} compiled rules" if rules is not None else "")))
    if "ovn" in args.skip:
        checks.append(Check("ovn", "skip", "--skip ovn"))
    else:
        checks += check_ovn(config, registry, rules, args.nb, args.timeout)
    if "gateway" in args.skip or (not args.gateway and not config.section("gateway")):
        checks.append(Check("gateway", "skip", "not a gateway host (pass --gateway or add a gateway section)"))
    else:
        from .gateway.host import Host

        host = Host(args.netns)
        checks.append(check_forwarding(host))
        checks += check_tayga(config, host, args.state_dir)
    checks.append(Check("crds", "skip", "--skip crds") if "crds" in args.skip else check_crds(args.kubeconfig))
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(args)
    if args.output == "json":
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for c in checks:
            print(c.line())
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        print(f"doctor: {len(failed)} check(s) failed", file=sys.stderr)
    return 1 if failed else 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "doctor",
        help="check a deployment: config, OVN, drift, SNAT hiding zone pods, Tayga, routes, forwarding, CRDs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  zonectl doctor --config zonectl.yaml --nb tcp:[fd00::10]:6641 --zones zones.yaml -f policies/\n"
        "  zonectl doctor --config zonectl.yaml --gateway --skip ovn,crds      # on the egress host\n",
    )
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--zones", action="append", help="SecurityZone objects (file or directory; repeatable)")
    p.add_argument("-f", "--files", action="append", help="SecurityZonePolicy objects, to check OVN for drift")
    p.add_argument("--nb", help="OVN NB remote (unix:PATH, tcp:HOST:PORT, ssl:HOST:PORT); default: ovn.nb")
    p.add_argument("--timeout", type=seconds, default=5.0, help="seconds to wait for OVN (default 5)")
    p.add_argument("--gateway", action="store_true", help="also check this host as the egress gateway")
    p.add_argument("--netns", help="run the gateway checks inside this network namespace")
    p.add_argument("--state-dir", help="the gateway's state dir (default: gateway.stateDir in the config)")
    p.add_argument("--kubeconfig", help="kubeconfig for the CRD check (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--skip", type=_skip_list, default=(), help="comma-separated: ovn, gateway, crds")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_doctor)
    return p


def _skip_list(text: str) -> tuple[str, ...]:
    parts = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in parts if s not in ("ovn", "gateway", "crds")]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown check(s) {', '.join(bad)} (ovn, gateway, crds)")
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zonectl")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
