"""``zonectl operator``: run the controller, or check its config file without starting anything.

    zonectl operator run --config /etc/zonectl/zonectl.yaml
    zonectl operator check-config --config examples/config.yaml

Loaded by zonectl/cli.py only when ``operator`` is named on the command line (so kopf is imported only
then). Errors are ZonectlErrors: the main CLI prints them as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from .config import load_controller_config


def cmd_run(args: argparse.Namespace) -> int:
    from .run import RunOptions, configure_logging, run

    configure_logging(args.log_format, args.verbose)
    options = RunOptions(Path(args.config), kubeconfig=args.kubeconfig, ovn_remote=args.ovn_nb,
                         log_format=args.log_format, verbose=args.verbose, metrics_address=args.metrics_address)
    return asyncio.run(run(options))


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_controller_config(args.config)
    op = config.operator
    print(json.dumps({
        "layout": config.core.layout.as_dict(),
        "nat64": str(config.core.nat64.network) if config.core.nat64 else None,
        "operator": {
            "labelKey": op.label_key, "hintAnnotation": op.hint_annotation, "spoofedHint": op.spoofed_hint,
            "adminNamespaces": list(op.admin_namespaces), "tenantPriorityFloor": op.tenant_priority_floor,
            "resyncSeconds": op.resync_seconds, "checkSeconds": op.check_seconds, "statusSeconds": op.status_seconds,
            "peering": {"name": op.peering_name, "priority": op.peering_priority},
            "webhook": {"addr": op.webhook.addr, "port": op.webhook.port, "certFile": op.webhook.cert_file,
                        "keyFile": op.webhook.key_file, "insecure": op.webhook.insecure},
            "metrics": {"address": op.metrics_address, "port": op.metrics_port, "anyAddress": op.metrics_any_address},
            "livenessPort": op.liveness_port,
            "gateway": {"configMap": op.gateway_configmap, "file": op.gateway_file}, "namespace": op.namespace,
        },
        "ovn": config.ovn.as_dict(),
    }, indent=2))
    return 0


def add_run_parser(sub: argparse._SubParsersAction, name: str = "run") -> argparse.ArgumentParser:
    """``operator run`` (also reached as ``zonectl run controller``)."""
    r = sub.add_parser(name, help="run the controller until SIGTERM",
                       description="Run the controller. It reads its config once at start and fails with one clear\n"
                                   "message if anything is wrong (config, cluster, CRDs, certificate, OVN).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--config", required=True, metavar="FILE", help="the zonectl config (the mounted ConfigMap)")
    r.add_argument("--kubeconfig", metavar="FILE", help="outside a cluster: this kubeconfig (default: in-cluster)")
    r.add_argument("--ovn-nb", metavar="REMOTE", help="override ovn.nb, e.g. tcp:[fd00::1]:6641")
    r.add_argument("--metrics-address", metavar="ADDRESS",
                   help="override operator.metrics.address (default ::1): where /metrics, /readyz and the liveness "
                        "probe listen; the Deployment passes the pod's address")
    r.add_argument("--log-format", choices=("json", "text"), default="json", help="log format (default: json)")
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    r.set_defaults(func=cmd_run)
    return r


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "operator", help="Kubernetes controller: zone hints at admission, policy reconciliation into OVN",
        description="The zonectl controller (kopf): the pod webhook that sets the IPAM hint, the policy and zone\n"
                    "webhooks, and reconciliation of SecurityZonePolicy objects into OVN.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="operator_command", metavar="ACTION", required=True)
    add_run_parser(sub)
    c = sub.add_parser("check-config", help="validate a config file and print the effective settings",
                       description="Validate the config exactly as `run` does, print the effective settings as JSON.")
    c.add_argument("--config", required=True, metavar="FILE", help="the zonectl config file")
    c.set_defaults(func=cmd_check_config)
