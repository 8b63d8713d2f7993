"""Running the controller: validated config -> clients -> primed caches -> two kopf operators + ops server.

Start-up fails fast with one clear message (exit status 2) when the config is invalid, the cluster
is unreachable, the CRDs are missing, the webhook certificate is missing or OVN cannot be reached:
a controller that starts half-configured would answer webhooks wrongly. Nothing here runs at import
time: clients are built in ``run()``.

The two kopf operators (see handlers.py for why two) share one event loop, one ZoneState and one
Metrics. kopf installs its SIGTERM handler per operator and the last one wins, so when either operator
stops, the other is told to stop as well (``stop_flag``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import kopf

from ..core.errors import Collector, ZonectlError
from ..metrics_server import Listen, check_address
from .backend import Backend, OvnBackend, PublishedBackend
from .config import ControllerConfig, OperatorSettings, load_controller_config
from .publish import ConfigMapPublisher, FilePublisher, Publisher
from .handlers import POD_WEBHOOK, WATCH_ONLY, Controller, admission_registry, controller_registry
from .metrics import Metrics
from .ops import Readiness, ops_server
from .reconcile import PolicyReconciler, policy_key
from .webhook import ZonectlWebhookServer, operator_settings
from .zonestate import ZoneState

LOG = logging.getLogger("zonectl.operator")
GROUP, VERSION = "zonectl.io", "v1alpha1"


class StartupError(ZonectlError):
    """The controller cannot start; the message says what to fix."""


@dataclass(frozen=True)
class RunOptions:
    config_path: Path
    kubeconfig: str | None = None
    ovn_remote: str | None = None  # overrides ovn.nb from the config
    log_format: str = "json"
    verbose: bool = False
    metrics_address: str | None = None  # overrides operator.metrics.address


def configure_logging(log_format: str = "json", verbose: bool = False) -> None:
    """Structured (JSON, one object per line) logs for kopf's and zonectl's loggers, or plain text.

    Unless ``verbose``, two per-request streams stay quiet: aiohttp's access log (a line per webhook
    review) and kopf's per-object "Handler ... succeeded" lines (one per event of every pod in the
    cluster, through the address verification handlers). At a hundred pod creations a second they cost
    the replicas more CPU than answering the reviews; zonectl logs what it changes itself, and warnings
    and errors of both still come through."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL)
    if not verbose:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def kube_clients(kubeconfig: str | None) -> tuple[Any, Any]:
    """CoreV1Api and CustomObjectsApi: in-cluster service account, else the kubeconfig."""
    import kubernetes

    from ..inputs import read_mapping

    try:
        if kubeconfig:
            read_mapping(kubeconfig, "kubeconfig")  # strictly first: the library blocks on a FIFO, trips on binary
            kubernetes.config.load_kube_config(config_file=kubeconfig)
        else:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
    except Exception as exc:  # ConfigException, OSError, or a kubeconfig of the wrong shape (KeyError, TypeError, ...)
        detail = str(exc) if isinstance(exc, ZonectlError) else f"{type(exc).__name__}: {exc}"
        raise StartupError(f"no Kubernetes credentials (in-cluster service account or kubeconfig): {detail}") from None
    return kubernetes.client.CoreV1Api(), kubernetes.client.CustomObjectsApi()


def prime(state: ZoneState, core: Any, custom: Any) -> list[dict[str, Any]]:
    """List zones, namespaces and policies once, so the webhook answers from a full view from the start.

    Returns the policies (the reconciler seeds its desired state from them)."""
    from kubernetes.client.exceptions import ApiException

    try:
        zones = custom.list_cluster_custom_object(GROUP, VERSION, "securityzones")["items"]
        policies = custom.list_cluster_custom_object(GROUP, VERSION, "securityzonepolicies")["items"]
        namespaces = core.list_namespace().items
    except ApiException as exc:
        if exc.status == 404:
            raise StartupError("the zonectl CRDs are not installed (kubectl apply -k manifests/ installs them)") from None
        raise StartupError(f"cannot list from the API server: {exc.status} {exc.reason}") from None
    except Exception as exc:  # urllib3 connection errors and the like
        raise StartupError(f"cannot reach the API server: {exc}") from None
    for ns in namespaces:
        state.set_namespace(ns.metadata.name, ns.metadata.labels or {})
    for body in zones:
        try:
            state.upsert_zone(body)
        except ZonectlError as exc:
            LOG.warning("SecurityZone %s is not usable: %s", body.get("metadata", {}).get("name"), exc)
    for body in policies:
        state.set_policy(policy_key(body), body)
    LOG.info("primed: %d zones, %d namespaces, %d policies", len(state.registry), len(namespaces), len(policies))
    return policies


def metrics_address(options: RunOptions, op: OperatorSettings) -> str:
    """Where /metrics, /readyz and kopf's liveness probe listen: ``--metrics-address``, else the config's."""
    if options.metrics_address is None:
        return op.metrics_address
    errs = Collector()
    address = check_address(options.metrics_address, "--metrics-address", errs, any_address=op.metrics_any_address,
                            allow="operator.metrics.anyAddress: true")
    errs.raise_if_any("operator run")
    return str(address)


def peering_priority(configured: int, started_us: int) -> int:
    """The kopf peering priority of this replica. kopf pauses *every* operator, itself included, when
    two peers share a priority, and all replicas of the Deployment read the same config: with the plain
    configured value, two replicas meant nobody reconciled. The configured priority stays the major key;
    the start time (microseconds since the epoch) breaks the tie: the longest-running replica leads, a
    newer one stands by until the leader's peering record goes (at once on a clean exit, else after
    kopf's peering lifetime)."""
    span = 10**16  # microseconds until the year 2286
    return configured * span + (span - 1 - started_us % span)


def kubeconfig_login(path: str) -> Callable[..., kopf.ConnectionInfo]:
    """kopf's login from ``--kubeconfig``. kopf's own ``login_via_client`` only looks in-cluster, at
    $KUBECONFIG and at ~/.kube/config: with the flag alone, the client library was configured but kopf
    never logged in, so neither operator ran and the webhooks were never served."""

    def login(**_: Any) -> kopf.ConnectionInfo:
        import kubernetes

        cfg = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(config_file=path, client_configuration=cfg)
        except (kubernetes.config.ConfigException, OSError) as exc:
            raise kopf.LoginError(f"cannot use kubeconfig {path}: {exc}") from None
        header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization") or ""
        scheme, token = header.split(" ", 1) if " " in header else (None, header or None)
        return kopf.ConnectionInfo(server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
                                   scheme=scheme, token=token, certificate_path=cfg.cert_file,
                                   private_key_path=cfg.key_file)

    return login


def webhook_server(config: ControllerConfig, metrics: Metrics, ctl: Controller,
                   readiness: Readiness | None = None) -> ZonectlWebhookServer:
    wh = config.operator.webhook
    if not wh.insecure and not (wh.cert_file and wh.key_file):
        raise StartupError("operator.webhook.certFile and keyFile are required (the API server only calls webhooks "
                           "over HTTPS): mount the zonectl-webhook-tls Secret, or set insecure: true for local tests")
    for path in (wh.cert_file, wh.key_file):
        if path and not Path(path).is_file():
            raise StartupError(f"webhook certificate file {path} does not exist")
    tls: dict[str, Any] = {"insecure": True} if wh.insecure else {"certfile": wh.cert_file, "pkeyfile": wh.key_file}
    listening = (lambda: readiness.done("webhook")) if readiness is not None else None
    return ZonectlWebhookServer(addr=wh.addr, port=wh.port, metrics=metrics, fast={POD_WEBHOOK: ctl.pod_review},
                                on_listening=listening, **tls)


def publisher_for(config: ControllerConfig, core: Any) -> Publisher | None:
    op = config.operator
    if op.gateway_file:
        return FilePublisher(op.gateway_file)
    if op.gateway_configmap:
        return ConfigMapPublisher(core, op.namespace, op.gateway_configmap)
    return None


def connect_backend(config: ControllerConfig, remote: str | None) -> Backend:
    ovn = config.ovn
    if config.interconnect:
        # One NB per node (OVN-K interconnect): nothing to connect to; the node agents sync the published
        # rules. The row settings are still checked here, as the agents will use the same ones.
        from ..ovn.sync import SyncSettings

        try:
            SyncSettings.from_config(ovn, config.core.layout.cluster, True)
        except ZonectlError as exc:
            raise StartupError(f"invalid ovn section: {exc}") from None
        if remote:
            LOG.warning("--ovn-nb %s is ignored: ovn.mode is interconnect (the node agents sync each node's NB)",
                        remote)
        LOG.info("ovn.mode interconnect: rules are published for the node agents, no NB connection here")
        return PublishedBackend(ovn.drift)
    if not (remote or ovn.nb):
        raise StartupError("ovn.nb is not set: the OVN Northbound remote, e.g. tcp:[fd00::1]:6641 or "
                           "unix:/var/run/ovn/ovnnb_db.sock (with OVN-K interconnect, one NB per node: set "
                           "ovn.mode: interconnect and run the zonectl-ovn-agent DaemonSet)")
    try:
        return OvnBackend.connect(ovn, config.core.layout, remote).watch(ovn.resync_seconds)
    except ZonectlError as exc:
        raise StartupError(f"cannot use the OVN Northbound database: {exc}") from None


async def stop_drift_first(ready: tuple[asyncio.Future[None], ...], stop: asyncio.Future[None],
                           backend: Backend) -> None:
    """Once both operators have started (and installed kopf's handlers), SIGTERM/SIGINT are ours: the drift
    loop stops first, then the operators. kopf gives up its peering record while it shuts down, so the next
    leader may already delete rows (a policy removed during a rollout) while this replica still runs; its
    drift loop, left running, would put them back."""
    await asyncio.gather(*ready)

    def on_signal(sig: signal.Signals) -> None:
        LOG.info("%s: stopping (the drift loop first)", sig.name)
        backend.stop_drift()
        if not stop.done():
            stop.set_result(None)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (a test runs it in one)
            return


async def run(options: RunOptions) -> int:
    """Run until SIGTERM/SIGINT. Returns the exit status. (Logging is set up by the caller: ``configure_logging``.)"""
    config = load_controller_config(options.config_path)
    op = config.operator
    metrics_listen = Listen(metrics_address(options, op), op.metrics_port)
    metrics = Metrics()
    readiness = Readiness()
    state = ZoneState(config.core.layout)
    core, custom = await asyncio.to_thread(kube_clients, options.kubeconfig)
    policies = await asyncio.to_thread(prime, state, core, custom)
    readiness.done("caches")
    backend = await asyncio.to_thread(connect_backend, config, options.ovn_remote)
    reconciler = PolicyReconciler(state, op, config.core.nat64, backend, metrics, publisher_for(config, core))
    LOG.info("desired state seeded from %d of %d policies", reconciler.seed(policies), len(policies))
    ctl = Controller(config=config, state=state, reconciler=reconciler, metrics=metrics)

    admission_settings = operator_settings()
    # kopf removes "its" finalizer from every object it sees for which no handler of its own needs one.
    # The admission operator has no such handler: sharing the controller's finalizer name, the two took
    # turns adding and removing it (about 100 patches a second per zone and policy), and on a standby
    # replica it was removed before the active controller's delete handler ran (OVN rows left behind).
    # A name no object carries leaves the admission operator nothing to remove.
    admission_settings.persistence.finalizer = "zonectl.io/admission-no-finalizer"
    admission_settings.admission.server = webhook_server(config, metrics, ctl, readiness)
    controller_settings = operator_settings(watch_only=WATCH_ONLY)
    admission_reg, controller_reg = admission_registry(ctl), controller_registry(ctl)
    login = kubeconfig_login(options.kubeconfig) if options.kubeconfig else kopf.login_via_client
    for reg in (admission_reg, controller_reg):
        kopf.on.login(registry=reg)(login)

    ops = ops_server(metrics, readiness, metrics_listen).start()
    gc.collect()
    gc.freeze()  # start-up objects leave the collector's view: no long GC pauses on the webhook path

    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    ready: tuple[asyncio.Future[None], asyncio.Future[None]] = (loop.create_future(), loop.create_future())
    tasks = {
        asyncio.create_task(kopf.operator(
            registry=admission_reg, settings=admission_settings, clusterwide=True, standalone=True,
            liveness_endpoint=f"http://{Listen(metrics_listen.host, op.liveness_port)}/healthz",
            stop_flag=stop, ready_flag=ready[0]), name="admission operator"),
        asyncio.create_task(kopf.operator(
            registry=controller_reg, settings=controller_settings, clusterwide=True,
            peering_name=op.peering_name, priority=peering_priority(op.peering_priority, time.time_ns() // 1000),
            stop_flag=stop, ready_flag=ready[1]),
            name="controller operator"),
    }
    signals = asyncio.create_task(stop_drift_first(ready, stop, backend), name="signal handlers")
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        for t in failed:
            LOG.error("%s stopped: %s", t.get_name(), t.exception())
        return 1 if failed else 0
    finally:
        if not stop.done():
            stop.set_result(None)
        signals.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ops.close()
        await asyncio.to_thread(backend.close)
