"""The OVN backend: zone rules as OVN Northbound ACLs with wildcard masks, owned rows, diff-based sync.

Public surface (import the modules; nothing here imports ovsdbapp at package import time):

* ``connection.connect(remote, timeout=...) -> NbClient`` / ``NbSettings`` (unix, tcp, ssl remotes)
* ``sync.SyncSettings.build(ovn_section, cluster_prefix, nb.has_tier)``
* ``sync.sync(nb, rules, settings, mode="repair"|"log"|"off", keep_policies=()) -> SyncReport``;
  ``sync.OutcomeUnknown`` when the transaction was sent and no answer came (``plan``: the set difference)
* ``sync.remove_policy(nb, "namespace/name", settings) -> SyncReport``
* ``guards``: the refusals that keep a sync from removing enforcement when its inputs match nothing (no node
  switch, a switch drop, an empty rule set); ``state.SwitchSelector``: which switches are node switches
* ``status.status(nb, settings, layout, zones=None, rules=None) -> OvnStatus``
* ``snat.find_hiding_nats(...)``, ``snat.remove_nats(...)``, ``snat.SnatGuard`` (opt-in removal)
* ``config.parse_ovn(section) -> OvnConfig``: the ``ovn`` config section, parsed once for every user;
  ``DRIFT_MODES`` (off, log, repair)
* ``resync.Resyncer``: the one NB drift loop (``zonectl ovn run``, the node agent)
* ``agent.Agent`` / ``agent.InputsFile``: the interconnect-mode node agent (``zonectl ovn run --inputs``),
  syncing one node's NB from the rules the controller publishes

Real OVN daemons and OVN-Kubernetes-like topologies for tests, benchmarks and the lab live in
``zonectl.harness``, which this package never imports.
"""
