"""The OVN backend: zone rules as OVN Northbound ACLs with wildcard masks, owned rows, diff-based sync.

Public surface (import the modules; nothing here imports ovsdbapp at package import time):

* ``connection.connect(remote, timeout=...) -> NbClient`` / ``NbSettings`` (unix, tcp, ssl remotes)
* ``sync.SyncSettings.build(ovn_section, cluster_prefix, nb.has_tier)``
* ``sync.sync(nb, rules, settings, mode="repair"|"log"|"off", keep_policies=()) -> SyncReport``
* ``sync.remove_policy(nb, "namespace/name", settings) -> SyncReport``
* ``status.status(nb, settings, layout, zones=None, rules=None) -> OvnStatus``
* ``snat.find_hiding_nats(...)``, ``snat.remove_nats(...)``, ``snat.SnatGuard`` (opt-in removal)
* ``agent.Agent`` / ``agent.InputsFile``: the interconnect-mode node agent (``zonectl ovn run --inputs``),
  syncing one node's NB from the rules the controller publishes
* ``sandbox.OvnSandbox`` and ``testbed.Cluster``: real OVN daemons in a temp dir, for tests and benchmarks
  (``ovnk``: OVN-Kubernetes' names and skeleton, shared with ``zonectl.lab``)
"""
