"""`zonectl lab`: the whole system on one machine, on real parts.

OVN (NB, SB, northd, a chassis with the userspace datapath) from ``zonectl.harness.sandbox``, an
OVN-Kubernetes-like logical network, pods as network namespaces with zone-encoded addresses, the
egress gateway (``zonectl.gateway``, Tayga) and an IPv4 "internet", with the policies applied through
the operator's code paths. Modules: ``topology`` (the plan, pure), ``build`` (making it), ``state``
(the ledger and teardown), ``enforce`` (OVN sync, gateway apply, drift), ``expect``/``matrix``
(expected vs observed, pure), ``traffic`` (real packets, from ``zonectl.harness.probe``), ``report``, ``runner``, ``cli``.
"""
