"""An OVN-Kubernetes-shaped Northbound, built with ovn-nbctl, for the OVN tests and the benchmark.

It reproduces what matters to zonectl, with OVN-K's names and keys: the skeleton of ``ovnk`` (the
cluster router, one node switch per node, ``join``) plus a management port ``k8s-<node>`` per node,
``GR_<node>`` gateway routers with SNAT rows, pod ports with port security, and OVN-K's own policy rows
(port groups, address sets, ACLs with ``k8s.ovn.org`` keys, and a legacy ACL without owner) that zonectl
must leave exactly as they are. Commands go in batches (one ovn-nbctl process, one transaction per batch)
so 10,000 pods build in seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Iterable

from zonectl.core.layout import Layout

from .ovnk import JOIN_SWITCH, MAC_GR_JOIN, NbCtl, Node, batch, mac, nodes, q, router_link, skeleton

if TYPE_CHECKING:
    from .sandbox import OvnSandbox

OVNK_CONTROLLER = "default-network-controller"


@dataclass(frozen=True)
class Pod:
    name: str
    node: Node
    zone_id: int
    ip: IPv6Address
    mac: str

    @property
    def lport(self) -> str:
        return self.name


@dataclass
class Cluster:
    """Builds and remembers the topology; ``nbctl`` is e.g. ``OvnSandbox.nbctl``."""

    nbctl: NbCtl
    layout: Layout
    node_count: int = 2
    nodes: list[Node] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = list(nodes(self.layout, self.node_count))

    # ----- topology ------------------------------------------------------------------------------

    def build(self, *, gateways: bool = True, cluster_snat: bool = False) -> "Cluster":
        cmds = skeleton(self.nodes, join=gateways)
        for node in self.nodes:
            sw = node.switch
            cmds.append(["lsp-add", sw, node.mgmt_port, "--", "lsp-set-addresses", node.mgmt_port,
                         f"{node.mgmt_mac} {node.mgmt_ip}"])
            if gateways:
                gr = f"GR_{node.name}"
                cmds.append(["lr-add", gr, "--", "set", "Logical_Router", gr, f"options:chassis=chassis-{node.name}",
                             f"external_ids:physical_ip=2001:db8:ff::{node.index:x}"])
                cmds.append(["lrp-add", gr, f"rtoj-{gr}", mac(MAC_GR_JOIN, node.index), f"fd98::{node.index + 1:x}/64"])
                cmds.append(router_link(JOIN_SWITCH, f"jtor-{gr}", f"rtoj-{gr}"))
                if cluster_snat:
                    cmds.append(["lr-nat-add", gr, "snat", f"2001:db8:ff::{node.index:x}", str(self.layout.cluster)])
        batch(self.nbctl, cmds)
        return self

    def recreate_switch(self, node: int | Node) -> None:
        """Delete a node's switch (with its ports) and its cluster-router port, then create them again, as OVN-K does
        when it rebuilds a node: the new switch row has a new UUID and references no ACL (its pods' ports are gone)."""
        n = node if isinstance(node, Node) else self.nodes[node - 1]
        batch(self.nbctl, [["--if-exists", "ls-del", n.switch], ["--if-exists", "lrp-del", n.router_port]], None)
        cmds = [c for c in skeleton([n], join=False) if c[0] != "lr-add"]
        cmds.append(["lsp-add", n.switch, n.mgmt_port, "--", "lsp-set-addresses", n.mgmt_port, f"{n.mgmt_mac} {n.mgmt_ip}"])
        batch(self.nbctl, cmds, None)
        self.pods = [p for p in self.pods if p.node != n]

    # ----- pods ----------------------------------------------------------------------------------

    def pod(self, node: int | Node, zone_id: int, offset: int, name: str | None = None) -> Pod:
        n = node if isinstance(node, Node) else self.nodes[node - 1]
        ip = self.layout.encode(n.subnet, zone_id, offset)
        hw = f"0a:{n.index >> 8:02x}:{n.index & 0xff:02x}:{(offset >> 16) & 0xff:02x}:{(offset >> 8) & 0xff:02x}:{offset & 0xff:02x}"
        if zone_id:
            hw = f"0a:{zone_id >> 8:02x}:{n.index & 0xff:02x}:{(offset >> 16) & 0xff:02x}:{(offset >> 8) & 0xff:02x}:{offset & 0xff:02x}"
        return Pod(name or f"pod-{n.name}-{zone_id:x}-{offset}", n, zone_id, ip, hw)

    def add_pods(self, pods: Iterable[Pod], *, per_pod_snat: bool = False, batch_size: int = 400) -> list[Pod]:
        """Logical switch ports with addresses and port security (as OVN-K sets them); optional per-pod SNAT."""
        pods = list(pods)
        cmds: list[list[str]] = []
        for i, p in enumerate(pods):
            # Generic create/add: ovn-nbctl's lsp-add and lr-nat-add scan every row per command (quadratic).
            addr = q(f"{p.mac} {p.ip}")
            cmds.append([f"--id=@p{i}", "create", "Logical_Switch_Port", f"name={q(p.lport)}", f"addresses={addr}",
                         f"port_security={addr}", "--", "add", "Logical_Switch", p.node.switch, "ports", f"@p{i}"])
            if per_pod_snat:
                cmds.append([f"--id=@n{i}", "create", "NAT", "type=snat", f"external_ip={q(f'2001:db8:ff::{p.node.index:x}')}",
                             f"logical_ip={q(str(p.ip))}", "--", "add", "Logical_Router", f"GR_{p.node.name}", "nat",
                             f"@n{i}"])
        batch(self.nbctl, cmds, batch_size)
        self.pods.extend(pods)
        return pods

    # ----- OVN-K's own rows ----------------------------------------------------------------------

    def add_ovnk_rows(self) -> None:
        """Rows as ovnkube-controller writes them: cluster port group, a NetworkPolicy (port group, address
        set, ACLs with OVN-K's DbObjectIDs keys), allow-from-node ACLs, and one legacy ACL with no owner."""
        ports = [p.lport for p in self.pods]
        ips = [str(p.ip) for p in self.pods]
        ctl = OVNK_CONTROLLER

        def ids(owner_type: str, name: str, extra: str = "") -> list[str]:
            primary = f"{ctl}:{owner_type}:{name}{extra}"
            return [f"external_ids:k8s.ovn.org/owner-controller={ctl}", f"external_ids:k8s.ovn.org/owner-type={owner_type}",
                    f'external_ids:k8s.ovn.org/name={q(name)}', f"external_ids:k8s.ovn.org/id={q(primary)}"]

        cmds: list[list[str]] = []
        cmds.append(["--id=@mc", "create", "ACL", "direction=to-lport", "priority=1011", "action=drop",
                     f"match={q('(ip4.mcast || mldv1 || mldv2 || (ip6.dst[120..127] == 0xff && ip6.dst[116] == 1))')}",
                     *ids("MulticastCluster", "DefaultDeny", ":Ingress"), "--",
                     "create", "Port_Group", "name=clusterPortGroup", "acls=[@mc]",
                     "external_ids:name=clusterPortGroup"])
        as_name = "a10148211500778908391"
        cmds.append(["create", "Address_Set", f"name={as_name}_v6", f"addresses=[{','.join(q(i) for i in ips)}]",
                     *ids("PodSelector", "web-apps:allow-frontend")])
        pg = "a13757631697825269621"
        cmds.append(["--id=@deny", "create", "ACL", "direction=to-lport", "priority=1000", "action=drop",
                     f"match={q(f'outport == @{pg}')}", *ids("NetpolDefault", "web-apps:ingressDefaultDeny"), "--",
                     "--id=@allow", "create", "ACL", "direction=to-lport", "priority=1001", "action=allow-related",
                     f"match={q(f'ip6.src == ${as_name}_v6 && outport == @{pg}')}",
                     *ids("NetworkPolicy", "web-apps:allow-frontend", ":Ingress:0:-1:-1"), "--",
                     "create", "Port_Group", f"name={pg}", "acls=[@deny,@allow]",
                     "external_ids:name=web-apps_allow-frontend"])
        for node in self.nodes:
            cmds.append([f"--id=@n{node.index}", "create", "ACL", "direction=to-lport", "priority=1001", "action=allow-related",
                         f"match={q(f'ip6.src=={node.mgmt_ip}')}", *ids("NetpolNode", node.name, f":{node.mgmt_ip}"), "--",
                         "add", "Logical_Switch", node.switch, "acls", f"@n{node.index}"])
        cmds.append(["--id=@legacy", "create", "ACL", "direction=from-lport", "priority=1001", "action=allow",
                     f"match={q('ip6.src == fd00:10:244:1::99')}", "--", "add", "Logical_Switch",
                     self.nodes[0].switch, "acls", "@legacy"])
        batch(self.nbctl, cmds, 50)
        if ports:
            # NetworkPolicy port group membership (by port UUID, as libovsdb writes it).
            wanted = set(ports)
            data = json.loads(self.nbctl("--format=json", "--columns=_uuid,name", "list", "Logical_Switch_Port"))
            uuids = [row[0][1] for row in data["data"] if row[1] in wanted]
            batch(self.nbctl, (["add", "Port_Group", pg, "ports", u] for u in uuids), 400)


    def add_other_switches(self, *, tempting: bool = False) -> dict[str, str]:
        """The switches a current OVN-K creates besides default-network node switches (go-controller/pkg/types/
        const.go: ``transit_switch``, ``ext_<node>``, a user-defined network's ``<network>_<node>`` and
        ``<network>_ovn_layer2_switch``), and a pod of a namespace named ``k8s-evil`` (its port ``k8s-evil_intruder``
        starts like a management port). ``tempting``: give each switch an ipv6_prefix inside the cluster prefix, as
        if it were a node switch, so that only its name or keys can keep it out. Returns switch -> kind."""
        node = self.nodes[0]
        base = int(self.layout.cluster.network_address)
        step = 1 << (128 - self.layout.node_prefix_len)
        switches = {
            "transit_switch": ["other_config:interconn-ts=transit_switch", "other_config:requested-tnl-key=16711683",
                               "other_config:mcast_snoop=true"],
            f"ext_{node.name}": [],
            f"tenant.blue_{node.name}": ["external_ids:k8s.ovn.org/network=tenant-blue",
                                         "external_ids:k8s.ovn.org/role=primary", "external_ids:k8s.ovn.org/topology=layer3"],
            "tenant.green_ovn_layer2_switch": ["external_ids:k8s.ovn.org/network=tenant-green",
                                               "external_ids:k8s.ovn.org/role=secondary",
                                               "external_ids:k8s.ovn.org/topology=layer2"],
        }
        cmds: list[list[str]] = []
        for i, (name, settings) in enumerate(switches.items()):
            if tempting:
                settings = [*settings, f"other_config:ipv6_prefix={IPv6Address(base + (0xF0 + i) * step)}"]
            cmds.append(["ls-add", name, *(["--", "set", "Logical_Switch", name, *settings] if settings else [])])
        cmds.append(["lsp-add", f"ext_{node.name}", f"breth0_{node.name}", "--", "lsp-set-type", f"breth0_{node.name}",
                     "localnet", "--", "lsp-set-addresses", f"breth0_{node.name}", "unknown", "--", "lsp-set-options",
                     f"breth0_{node.name}", "network_name=physnet"])
        batch(self.nbctl, cmds)
        self.add_pods([self.pod(node, 0, 0xEE, "k8s-evil_intruder")])
        return {"transit_switch": "transit", f"ext_{node.name}": "external",
                f"tenant.blue_{node.name}": "user-defined network (layer3)",
                "tenant.green_ovn_layer2_switch": "user-defined network (layer2)"}


# ----- snapshots of rows zonectl must not touch -------------------------------------------------

FOREIGN_TABLES = ("ACL", "Port_Group", "Address_Set", "NAT", "Logical_Router", "Logical_Switch_Port",
                  "Logical_Router_Port", "Logical_Switch", "NB_Global")


def _rows(nbctl: NbCtl, table: str) -> list[dict]:
    data = json.loads(nbctl("--format=json", "list", table))
    return [dict(zip(data["headings"], row, strict=True)) for row in data["data"]]


def foreign_snapshot(nbctl: NbCtl, controller: str = "zonectl") -> dict[str, list]:
    """Every NB row zonectl does not own, with every column; Logical_Switch.acls lists foreign ACLs only."""
    acls = _rows(nbctl, "ACL")

    def owned(row: dict) -> bool:
        ids = dict(row["external_ids"][1])
        return ids.get("k8s.ovn.org/owner-controller") == controller

    ours = {row["_uuid"][1] for row in acls if owned(row)}
    snap: dict[str, list] = {}
    for table in FOREIGN_TABLES:
        rows = acls if table == "ACL" else _rows(nbctl, table)
        out = []
        for row in rows:
            if table == "ACL" and owned(row):
                continue
            if table == "Logical_Switch":
                row = dict(row)
                kind, refs = row["acls"]
                refs = refs if kind == "set" else [row["acls"]]
                row["acls"] = sorted(r[1] for r in refs if r[1] not in ours)
            if table == "NB_Global":
                row = {k: v for k, v in row.items() if k in ("external_ids", "options", "name")}
            out.append(json.dumps(row, sort_keys=True))
        snap[table] = sorted(out)
    return snap


def nb_dump(sandbox: "OvnSandbox") -> str:
    """The whole NB as ``ovsdb-client dump`` prints it: byte-identical before and after anything that must write
    nothing (a refused input, a refused sync), and stable while nobody writes."""
    return sandbox.run(["ovsdb-client", "dump", "--format=json", sandbox.nb_remote, "OVN_Northbound"])
