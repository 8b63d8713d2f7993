"""The Kubernetes controller (kopf): thin edges around the pure core.

    config.py      the ``operator`` config section, validated (ControllerConfig)
    zonestate.py   zones, namespace labels, policy references; the precomputed admission table
    admission.py   pod admission decisions and AdmissionReview responses (pure)
    authority.py   which namespace may govern which zone (the privilege-escalation guard)
    reconcile.py   policy body -> compile -> backend sync -> status/Events (no kopf)
    backend.py     the backend protocol: OVN (zonectl.ovn, central NB) or publish-only (ovn.mode interconnect)
    verify.py      pod address vs zone label
    publish.py     publishing the rules document (zonectl.core.published) to a ConfigMap or a file
    handlers.py    the kopf handlers, in an admission and a controller registry
    review.py      the AdmissionReview checks every webhook runs first (malformed: HTTP 400/404 or a denial)
    webhook.py     kopf's webhook server with those checks, timing and the pod fast path; offline admission
    ops.py         readiness, /metrics and /readyz (zonectl.metrics_server); metrics.py the Prometheus metrics
    run.py         start-up and the two kopf operators; cli.py ``zonectl operator``

Nothing here connects or reads settings at import time. See docs/operator.md.
"""
