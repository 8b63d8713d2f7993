"""`zonectl lab up | test | sync | down`: argparse sub-commands (wired into `zonectl` as a plugin).

Also runnable alone while the main CLI does not list it: ``python -m zonectl.lab.cli up``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..core.errors import ZonectlError
from ..inputs import count
from .topology import MAX_NODES


def _state_dir(args: argparse.Namespace) -> Path:
    from .runner import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _cmd_up(args: argparse.Namespace) -> int:
    from .runner import Inputs, up

    d = Inputs.defaults()
    inputs = Inputs(Path(args.config or d.config), Path(args.zones or d.zones), Path(args.policies or d.policies))
    up(_state_dir(args), inputs, nodes=args.nodes, with_kube=not args.no_kube)
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    from .runner import test

    return test(_state_dir(args), repair=args.repair, export_format=args.export_format)


def _cmd_sync(args: argparse.Namespace) -> int:
    from .runner import sync

    sync(_state_dir(args))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from .runner import down

    down(_state_dir(args))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``lab`` with its sub-commands to the ``zonectl`` parser."""
    lab = subparsers.add_parser(
        "lab", help="the whole system on one machine: OVN, pods in namespaces, Tayga gateway, IPv4 internet",
        description="Run zonectl end to end on this machine (root): `lab up` starts OVN (NB, SB, northd, a chassis\n"
        "with the userspace datapath), node switches and a cluster router as OVN-Kubernetes lays them out, pods\n"
        "as network namespaces with zone-encoded addresses, a Tayga NAT64 egress gateway and an IPv4 'internet',\n"
        "then applies the policies; `lab test` sends real TCP/UDP/ICMPv6 and prints the reachability matrix.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lab.add_argument("--state-dir", help="where the lab keeps its ledger, daemons and logs "
                     "(default /var/lib/zonectl-lab, or /tmp/zonectl-lab if /var/lib is not writable)")
    sub = lab.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)
    # --state-dir is accepted before or after the sub-command (SUPPRESS: absent here keeps the outer value).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", default=argparse.SUPPRESS, help="as above")

    p = sub.add_parser("up", parents=[common], help="bring the lab up (cleans up a previous run of the same state dir first)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Start OVN (NB, SB, northd, a chassis with the userspace datapath), lay out node\n"
                       "switches and ovn_cluster_router as OVN-Kubernetes does, add pods (namespaces with zone-encoded\n"
                       "addresses, two per zone plus a no-zone pod), the Tayga NAT64 gateway and an IPv4 'internet',\n"
                       "then a Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler; built\n"
                       "by scripts/testbin.sh on the first run, then cached) with zonectl installed by\n"
                       "manifests/install.sh: the zones and policies are applied with kubectl and the zonectl\n"
                       "controller writes the OVN ACLs and the gateway's published document. --no-kube: the lab\n"
                       "compiles and applies the policies itself (OVN sync + gateway apply). Needs root. Bad input\n"
                       "is refused (exit 2) before anything is made; a previous or crashed run is removed first.",
                       epilog="examples:\n  zonectl lab up\n  zonectl lab up --no-kube --nodes 3 --policies my-policies.yaml")
    p.add_argument("--config", help="zonectl config (default: examples/config.yaml)")
    p.add_argument("--zones", help="SecurityZone objects (default: examples/zones.yaml)")
    p.add_argument("--policies", help="SecurityZonePolicy objects (default: examples/policies.yaml)")
    p.add_argument("--nodes", type=count(2, MAX_NODES), default=2, help="number of nodes (logical switches), 2-8 (default 2)")
    p.add_argument("--no-kube", action="store_true",
                   help="no Kubernetes control plane: the lab applies the policies itself (OVN sync + gateway apply)")
    p.set_defaults(func=_cmd_up)

    p = sub.add_parser("test", parents=[common], help="probe every zone pair and the IPv4 internet; exit 1 on any mismatch or drift",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Send real TCP, UDP and ICMPv6 from every zone to every zone and to the IPv4\n"
                       "servers through the NAT64 prefix; print the matrix (observed vs what the compiled rules\n"
                       "predict), drift between OVN/gateway and the policies, the firewall export and the per-zone\n"
                       "gateway counters; write matrix.html/.svg to the state dir. Exit 1 on any disagreement.",
                       epilog="examples:\n  zonectl lab test\n  zonectl lab test --repair --export-format json")
    p.add_argument("--repair", action="store_true", help="if drift is found, sync and test again")
    p.add_argument("--export-format", default="csv", help="firewall export format printed (default csv)")
    p.set_defaults(func=_cmd_test)

    p = sub.add_parser("sync", parents=[common], help="re-apply the policies (OVN sync + gateway apply): repairs drift",
                       description="Re-apply the lab's policies through the same code as `up`: an OVN sync (creates\n"
                       "what is missing, deletes what is not wanted) and a gateway apply; restarts a dead gateway.")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("down", parents=[common], help="remove every namespace, process and file the lab made",
                       description="Stop every process the lab started (by pid, after checking the pid still runs the\n"
                       "recorded program), delete its namespaces and links, and remove the state dir.")
    p.set_defaults(func=_cmd_down)
    return lab


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zonectl")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ZonectlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
