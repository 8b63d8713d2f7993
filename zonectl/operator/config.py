"""The controller's settings: the ``operator`` section of the one zonectl config document.

The core validates ``layout``/``nat64`` and hands the ``operator`` section over as a plain mapping;
this module turns it into a frozen dataclass, collecting every problem with its field path so a
broken ConfigMap fails the controller at start with one clear message (never half-configured).
Nothing here reads the environment: the file path comes from the command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Literal, Mapping


from ..core import fields
from ..core.config import Config, parse_config
from ..core.errors import Collector, Problem, ValidationError
from ..core.zones import NAME_RE
from ..metrics_server import LOOPBACK, check_address
from ..ovn.config import OvnConfig, parse_ovn

SpoofMode = Literal["replace", "deny"]
SPOOF_MODES: tuple[SpoofMode, ...] = ("replace", "deny")

# A qualified Kubernetes label/annotation key: optional DNS-subdomain prefix, then a name.
_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")

_PATH_RE = re.compile(r"/[A-Za-z0-9._/-]*")


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


DEFAULT_LABEL = "securityZone"
DEFAULT_HINT_ANNOTATION = "zonectl.io/ipam-hint"
DEFAULT_ADMIN_NAMESPACES = ("zonectl-system",)


@dataclass(frozen=True)
class WebhookSettings:
    """Where kopf's webhook server listens; cert/key come from a mounted Secret in a cluster."""

    addr: str = "::"
    port: int = 8443
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # plain HTTP: only for tests and local debugging


@dataclass(frozen=True)
class OperatorSettings:
    """Everything the kopf layer needs; defaults are the documented production values."""

    label_key: str = DEFAULT_LABEL
    hint_annotation: str = DEFAULT_HINT_ANNOTATION
    spoofed_hint: SpoofMode = "replace"
    admin_namespaces: tuple[str, ...] = DEFAULT_ADMIN_NAMESPACES
    tenant_priority_floor: int = 100
    resync_seconds: float = 300.0
    check_seconds: float = 5.0
    status_seconds: float = 15.0
    peering_name: str = "zonectl"
    peering_priority: int = 0
    metrics_address: str = LOOPBACK  # also kopf's liveness endpoint's; the Deployment passes the pod's address
    metrics_any_address: bool = False
    metrics_port: int = 9090
    liveness_port: int = 8080
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    gateway_configmap: str | None = "zonectl-gateway-rules"
    gateway_file: str | None = None
    namespace: str = "zonectl-system"

    def is_admin(self, namespace: str) -> bool:
        return namespace in self.admin_namespaces


_FIELDS = {
    "labelKey", "hintAnnotation", "spoofedHint", "adminNamespaces", "tenantPriorityFloor", "resyncSeconds",
    "checkSeconds", "statusSeconds", "peering", "metrics", "liveness", "webhook", "gateway", "namespace",
}


def _number(body: Mapping[str, Any], key: str, path: str, errs: Collector, default: float, lo: float, hi: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        errs.add(path, f"{value!r} must be a number from {lo:g} to {hi:g}")
        return default
    return float(value)


def _port(body: Mapping[str, Any], key: str, path: str, errs: Collector, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        errs.add(path, f"{value!r} must be a TCP port (1..65535)")
        return default
    return value


def parse_operator(body: Mapping[str, Any] | None) -> OperatorSettings:
    """Validate the ``operator`` section; every problem is reported at once, with its path."""
    errs = Collector()
    body, _ = fields.section(body, "operator", errs, _FIELDS)
    label = body.get("labelKey", DEFAULT_LABEL)
    if not isinstance(label, str) or not _KEY_RE.match(label):
        errs.add("operator.labelKey", f"{label!r} is not a valid label key")
    hint = body.get("hintAnnotation", DEFAULT_HINT_ANNOTATION)
    if not isinstance(hint, str) or not _KEY_RE.match(hint):
        errs.add("operator.hintAnnotation", f"{hint!r} is not a valid annotation key")
    spoof = body.get("spoofedHint", "replace")
    if spoof not in SPOOF_MODES:
        errs.add("operator.spoofedHint", f"{spoof!r} is not one of {', '.join(SPOOF_MODES)}")
    admins = body.get("adminNamespaces", list(DEFAULT_ADMIN_NAMESPACES))
    if not isinstance(admins, list) or not admins or not all(isinstance(n, str) and NAME_RE.match(n) for n in admins):
        errs.add("operator.adminNamespaces", "must be a non-empty list of namespace names (default: [zonectl-system])")
        admins = list(DEFAULT_ADMIN_NAMESPACES)
    floor = body.get("tenantPriorityFloor", 100)
    if isinstance(floor, bool) or not isinstance(floor, int) or not 0 <= floor <= 999:
        errs.add("operator.tenantPriorityFloor", f"{floor!r} must be an integer from 0 to 999")
        floor = 100
    namespace = body.get("namespace", "zonectl-system")
    if not isinstance(namespace, str) or not NAME_RE.match(namespace):
        errs.add("operator.namespace", f"{namespace!r} is not a namespace name")
    resync = _number(body, "resyncSeconds", "operator.resyncSeconds", errs, 300.0, 5, 86400)
    check = _number(body, "checkSeconds", "operator.checkSeconds", errs, 5.0, 0.1, 3600)
    status = _number(body, "statusSeconds", "operator.statusSeconds", errs, 15.0, 0.1, 3600)
    peering = errs.section(body, "peering", "operator.peering", {"name", "priority"})
    pname = peering.get("name", "zonectl")
    if not isinstance(pname, str) or not NAME_RE.match(pname):
        errs.add("operator.peering.name", f"{pname!r} is not a DNS label")
    pprio = fields.integer(peering.get("priority", 0), "operator.peering.priority", errs, -(2**31), 2**31 - 1) or 0
    metrics = errs.section(body, "metrics", "operator.metrics", {"address", "port", "anyAddress"})
    liveness = errs.section(body, "liveness", "operator.liveness", {"port"})
    wh = errs.section(body, "webhook", "operator.webhook", {"addr", "port", "certFile", "keyFile", "insecure"})
    for key in ("certFile", "keyFile"):
        if wh.get(key) is not None:
            fields.string(wh[key], f"operator.webhook.{key}", errs, pattern=_PATH_RE, max_len=400, what="an absolute path")
    if bool(wh.get("certFile")) != bool(wh.get("keyFile")):
        errs.add("operator.webhook", "certFile and keyFile go together")
    gw = errs.section(body, "gateway", "operator.gateway", {"configMap", "file"})
    insecure = fields.boolean(wh.get("insecure", False), "operator.webhook.insecure", errs)
    addr = wh.get("addr", "::")
    if not isinstance(addr, str) or not _is_ip(addr):
        errs.add("operator.webhook.addr", f"{fields.short(addr)} must be an IP address to listen on (e.g. ::)")
    if gw.get("configMap") is not None:
        fields.name(gw["configMap"], "operator.gateway.configMap", errs, "a ConfigMap name")
    if gw.get("file") is not None:
        fields.string(gw["file"], "operator.gateway.file", errs, pattern=_PATH_RE, max_len=400, what="an absolute path")
    metrics_port = _port(metrics, "port", "operator.metrics.port", errs, 9090)
    any_address = fields.boolean(metrics.get("anyAddress", False), "operator.metrics.anyAddress", errs)
    metrics_address = check_address(metrics.get("address", LOOPBACK), "operator.metrics.address", errs,
                                    any_address=bool(any_address), allow="operator.metrics.anyAddress: true")
    liveness_port = _port(liveness, "port", "operator.liveness.port", errs, 8080)
    webhook_port = _port(wh, "port", "operator.webhook.port", errs, 8443)
    errs.raise_if_any("config")
    return OperatorSettings(
        label_key=label,
        hint_annotation=hint,
        spoofed_hint=spoof,
        admin_namespaces=tuple(admins),
        tenant_priority_floor=floor,
        resync_seconds=resync,
        check_seconds=check,
        status_seconds=status,
        peering_name=pname,
        peering_priority=pprio,
        metrics_address=str(metrics_address),
        metrics_any_address=bool(any_address),
        metrics_port=metrics_port,
        liveness_port=liveness_port,
        webhook=WebhookSettings(
            addr=addr,
            port=webhook_port,
            cert_file=wh.get("certFile"),
            key_file=wh.get("keyFile"),
            insecure=bool(insecure),
        ),
        gateway_configmap=gw.get("configMap", "zonectl-gateway-rules"),
        gateway_file=gw.get("file"),
        namespace=namespace,
    )


@dataclass(frozen=True)
class ControllerConfig:
    """The validated document: the core's config, the operator's settings and the ``ovn`` section."""

    core: Config
    operator: OperatorSettings
    ovn: OvnConfig

    @property
    def ovn_mode(self) -> str:
        """``ovn.mode``: ``central`` (the controller syncs the one NB) or ``interconnect`` (it only publishes)."""
        return self.ovn.mode

    @property
    def interconnect(self) -> bool:
        return self.ovn.interconnect


def parse_controller_config(body: Mapping[str, Any] | None) -> ControllerConfig:
    core = parse_config(body)
    config = ControllerConfig(core, parse_operator(core.section("operator")), parse_ovn(core.section("ovn")))
    if config.interconnect and not (config.operator.gateway_configmap or config.operator.gateway_file):
        raise ValidationError([Problem("operator.gateway", "ovn.mode interconnect needs somewhere to publish the "
                                       "rules for the node agents: configMap (default zonectl-gateway-rules) or file")],
                              source="config")
    return config


def load_controller_config(path: str | Path) -> ControllerConfig:
    """Read and validate the config file (the mounted ConfigMap); errors name the file and the field."""
    from ..inputs import read_mapping

    p = Path(path)
    body = read_mapping(p)
    try:
        return parse_controller_config(body)
    except ValidationError as exc:
        raise exc.prefixed(f"{p}: {exc.source}" if exc.source else str(p)) from None
