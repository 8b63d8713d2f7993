"""``zonectl run controller|gateway``: the long-running daemons by role, as the manifests start them.

The same parsers as ``zonectl operator run`` and ``zonectl gateway run`` (one definition each); their
modules import kopf, ovsdbapp and pyroute2 only inside the command that runs.
"""

from __future__ import annotations

import argparse
import importlib

DAEMONS = {
    "controller": ("zonectl.operator.cli", "the Kubernetes controller: pod webhook, zone registry, policies -> OVN"),
    "gateway": ("zonectl.gateway.cli", "the NAT64 egress gateway: Tayga, zone filter, masquerade, metrics"),
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run", help="run a zonectl daemon: controller or gateway",
        description="Run a zonectl daemon until SIGTERM:\n" + "\n".join(f"  {n:11} {h}" for n, (_, h) in DAEMONS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  zonectl run controller --config /etc/zonectl/zonectl.yaml\n"
        "  zonectl run gateway --config /etc/zonectl/zonectl.yaml --inputs /etc/zonectl/gateway/gateway.json",
    )
    sub = p.add_subparsers(dest="daemon", metavar="DAEMON", required=True)
    for name, (module, _) in DAEMONS.items():
        importlib.import_module(module).add_run_parser(sub, name)
    return p
