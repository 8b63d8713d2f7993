"""The address layout: where the zone id sits in a pod's IPv6 address, and the masks that select a zone.

Bits are numbered from the most significant (bit 0) as in an IPv6 prefix length, so the default zone
field "bits 64-79" is the 5th hextet::

    fd00:10:244:2:2000:0:0:5
    \\_cluster_/ |  |      \\_ IPAM offset (low ``ipam_bits`` bits)
            node /64  zone id 0x2000

Everything here is integer arithmetic on 128-bit values: no I/O, no Kubernetes, no OVN.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Iterable, Literal, Mapping, Sequence

from .errors import Collector, ValidationError

ALL_ONES = (1 << 128) - 1
Scope = Literal["cluster", "datacenter"]
SCOPES: tuple[Scope, ...] = ("cluster", "datacenter")
MAX_EXPANSION = 65536


def ipv6_text(value: int) -> str:
    """An address as ``str(IPv6Address(value))`` writes it (RFC 5952), ten times faster: exports write
    millions of them. ``inet_ntop`` writes addresses whose first 80 bits are zero with an embedded IPv4
    address (``::ffff:1.2.3.4``), so those few are left to ``ipaddress``."""
    if value >> 48 == 0:
        return str(IPv6Address(value))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def prefix_mask(length: int) -> int:
    """The 128-bit mask of a prefix length (bits 0..length-1 set)."""
    return (ALL_ONES << (128 - length)) & ALL_ONES if length else 0


def bit_range(mask: int) -> str:
    """Human text for the bits a mask covers, e.g. ``bits 64-79`` (MSB = bit 0)."""
    bits = [i for i in range(128) if mask >> (127 - i) & 1]
    if not bits:
        return "no bits"
    runs: list[str] = []
    start = prev = bits[0]
    for b in bits[1:] + [None]:  # type: ignore[list-item]
        if b is not None and b == prev + 1:
            prev = b
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}")
        if b is not None:
            start = prev = b
    return "bit " + runs[0] if len(runs) == 1 and "-" not in runs[0] else "bits " + ", ".join(runs)


@dataclass(frozen=True, order=True)
class AddrMatch:
    """An IPv6 value/mask pair; the mask may be non-contiguous (a wildcard mask).

    The value is always normalised to ``value & mask``: nftables (and some firewalls) silently never
    match a value that has bits outside its mask, so no such value may ever leave zonectl.
    """

    value: int
    mask: int

    def __post_init__(self) -> None:
        if not 0 <= self.mask <= ALL_ONES or not 0 <= self.value <= ALL_ONES:
            raise ValueError("value and mask must be 128-bit integers")
        object.__setattr__(self, "value", self.value & self.mask)

    @classmethod
    def from_network(cls, net: IPv6Network | str) -> "AddrMatch":
        net = ipaddress.IPv6Network(net, strict=False)
        return cls(int(net.network_address), prefix_mask(net.prefixlen))

    @classmethod
    def parse(cls, text: str) -> "AddrMatch":
        """Parse ``addr/len`` or ``addr/mask`` (wildcard masks allowed); a bare address is a /128."""
        addr, _, rest = text.strip().partition("/")
        value = int(IPv6Address(addr))
        if not rest:
            return cls(value, ALL_ONES)
        if rest.isdigit():
            length = int(rest)
            if length > 128:
                raise ValueError(f"prefix length {length} is larger than 128")
            return cls(value, prefix_mask(length))
        return cls(value, int(IPv6Address(rest)))

    @property
    def address(self) -> IPv6Address:
        return IPv6Address(self.value)

    @property
    def netmask(self) -> IPv6Address:
        return IPv6Address(self.mask)

    @property
    def prefixlen(self) -> int | None:
        """The prefix length if the mask is contiguous, else None (a true wildcard)."""
        inverted = ~self.mask & ALL_ONES
        if inverted & (inverted + 1):
            return None
        return 128 - inverted.bit_length()

    @property
    def is_any(self) -> bool:
        return self.mask == 0

    @property
    def text(self) -> str:
        """``value/mask`` text, the form OVN, ip6tables and Check Point accept for wildcard masks."""
        return f"{ipv6_text(self.value)}/{ipv6_text(self.mask)}"

    @property
    def cidr_or_mask(self) -> str:
        """``value/len`` when the mask is a prefix (readable), else ``value/mask``."""
        length = self.prefixlen
        return f"{ipv6_text(self.value)}/{length}" if length is not None else self.text

    def network(self) -> IPv6Network:
        length = self.prefixlen
        if length is None:
            raise ValueError(f"{self.text} is a wildcard mask, not a CIDR")
        return IPv6Network((self.value, length))

    def matches(self, addr: IPv6Address | str | int) -> bool:
        return (int(IPv6Address(addr)) if not isinstance(addr, int) else addr) & self.mask == self.value

    def covers(self, other: "AddrMatch") -> bool:
        """True if every address ``other`` matches is matched by this one."""
        return (self.mask & other.mask) == self.mask and other.value & self.mask == self.value

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Explanation:
    """What an address means in this layout: what users debug with (`zonectl explain`)."""

    address: IPv6Address
    in_cluster: bool
    in_datacenter: bool
    cluster: IPv6Network
    node: IPv6Network | None = None
    zone_id: int | None = None
    zone_name: str | None = None
    offset: int | None = None

    def as_dict(self) -> dict:
        return {
            "address": str(self.address),
            "inCluster": self.in_cluster,
            "inDatacenter": self.in_datacenter,
            "cluster": str(self.cluster),
            "node": str(self.node) if self.node else None,
            "zoneId": self.zone_id,
            "zoneIdHex": f"0x{self.zone_id:x}" if self.zone_id is not None else None,
            "zone": self.zone_name,
            "offset": self.offset,
        }

    def __str__(self) -> str:
        if not self.in_cluster:
            where = "in the datacenter prefix but not" if self.in_datacenter else "not"
            return f"{self.address} is {where} in this cluster ({self.cluster})"
        zone = self.zone_name if self.zone_name is not None else "unknown zone"
        if self.zone_id == 0:
            zone = "no zone"
        return "\n".join(
            [
                f"address:  {self.address}",
                f"cluster:  {self.cluster}",
                f"node:     {self.node}",
                f"zone:     {zone} (0x{self.zone_id:x})",
                f"offset:   {self.offset} (::{self.offset:x})",
            ]
        )


@dataclass(frozen=True)
class Layout:
    """Cluster prefix, node podCIDR length, zone field, datacenter prefix and IPAM offset bits.

    Validation happens at construction: a layout whose zone field overlaps the node prefix or the
    IPAM offset bits would silently put pods in the wrong zone, so it can never exist.
    """

    cluster: IPv6Network
    node_prefix_len: int = 64
    zone_offset: int = 64
    zone_width: int = 16
    datacenter: IPv6Network | None = None
    ipam_bits: int = 16

    def __post_init__(self) -> None:
        errs = Collector()
        if not isinstance(self.cluster, IPv6Network):
            errs.add("cluster", f"{self.cluster!r} is not an IPv6 network")
        for key, value in (("nodePrefixLength", self.node_prefix_len), ("zoneField.offset", self.zone_offset),
                           ("zoneField.width", self.zone_width), ("ipamBits", self.ipam_bits)):
            if isinstance(value, bool) or not isinstance(value, int):
                errs.add(key, f"{value!r} must be an integer")
        errs.raise_if_any("layout")  # the range checks below (and every mask) need integers
        if not 1 <= self.zone_width <= 32:
            errs.add("zoneField.width", f"{self.zone_width} must be between 1 and 32 bits")
        if not 0 <= self.zone_offset <= 127:
            errs.add("zoneField.offset", f"{self.zone_offset} must be between 0 and 127 (a bit of the address)")
        elif self.zone_offset + self.zone_width > 128:
            errs.add("zoneField.offset", f"field {self.zone_offset}+{self.zone_width} does not fit in 128 bits")
        if not 0 <= self.ipam_bits <= 64:
            errs.add("ipamBits", f"{self.ipam_bits} must be between 0 and 64")
        if not self.cluster.prefixlen <= self.node_prefix_len <= 128:
            errs.add(
                "nodePrefixLength",
                f"/{self.node_prefix_len} must be from the cluster prefix length /{self.cluster.prefixlen} to /128",
            )
        errs.raise_if_any("layout")
        field = self.field_mask
        node = prefix_mask(self.node_prefix_len)
        ipam = (1 << self.ipam_bits) - 1
        if field & node:
            errs.add(
                "zoneField",
                f"zone field {bit_range(field)} overlaps the node prefix {bit_range(node)} "
                f"(/{self.node_prefix_len}): overlapping {bit_range(field & node)}",
            )
        if field & ipam:
            errs.add(
                "zoneField",
                f"zone field {bit_range(field)} overlaps the IPAM offset {bit_range(ipam)} "
                f"({self.ipam_bits} low bits the CNI allocates from): overlapping {bit_range(field & ipam)}",
            )
        if self.datacenter is not None:
            if not isinstance(self.datacenter, IPv6Network):
                errs.add("datacenter", f"{self.datacenter!r} is not an IPv6 network")
            elif not self.cluster.subnet_of(self.datacenter):
                errs.add("datacenter", f"{self.datacenter} does not contain the cluster prefix {self.cluster}")
        errs.raise_if_any("layout")

    # --- fields --------------------------------------------------------------------------------
    @property
    def field_shift(self) -> int:
        return 128 - self.zone_offset - self.zone_width

    @property
    def field_mask(self) -> int:
        return ((1 << self.zone_width) - 1) << self.field_shift

    @property
    def max_zone_id(self) -> int:
        return (1 << self.zone_width) - 1

    @property
    def node_mask(self) -> int:
        return prefix_mask(self.node_prefix_len)

    def zone_of(self, addr: IPv6Address | str | int) -> int:
        value = addr if isinstance(addr, int) else int(IPv6Address(addr))
        return (value & self.field_mask) >> self.field_shift

    def check_zone_id(self, zone_id: int) -> None:
        if not isinstance(zone_id, int) or isinstance(zone_id, bool) or not 0 <= zone_id <= self.max_zone_id:
            raise ValidationError(
                f"zone id {zone_id!r} does not fit the {self.zone_width}-bit zone field (0..0x{self.max_zone_id:x})"
            )

    def check_node(self, node: IPv6Network | str) -> IPv6Network:
        try:
            net = node if isinstance(node, IPv6Network) else IPv6Network(node)  # a copy costs 8 us per node
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"node CIDR {node!r}: {exc}") from None
        if net.network_address.scope_id is not None:
            raise ValidationError(f"node CIDR {node!r} has a %scope")
        if net.prefixlen != self.node_prefix_len:
            raise ValidationError(f"node CIDR {net} is not a /{self.node_prefix_len}")
        if not net.subnet_of(self.cluster):
            raise ValidationError(f"node CIDR {net} is not inside the cluster prefix {self.cluster}")
        return net

    # --- codec ---------------------------------------------------------------------------------
    def encode(self, node: IPv6Network | str, zone_id: int, offset: int) -> IPv6Address:
        """The address the CNI gives a pod at ``offset`` on ``node`` when it carries ``zone_id``."""
        net = self.check_node(node)
        self.check_zone_id(zone_id)
        host_mask = ~self.node_mask & ALL_ONES
        if offset < 0 or offset & ~host_mask or offset & self.field_mask:
            raise ValidationError(
                f"offset {offset:#x} does not fit below the node prefix without touching the zone field "
                f"{bit_range(self.field_mask)}"
            )
        return IPv6Address(int(net.network_address) | (zone_id << self.field_shift) | offset)

    def explain(self, addr: IPv6Address | str, zone_names: Mapping[int, str] | None = None) -> Explanation:
        """Decode an address into cluster, node, zone and offset (or say it is not in this cluster)."""
        address = IPv6Address(addr)
        in_dc = self.datacenter is not None and address in self.datacenter
        if address not in self.cluster:
            return Explanation(address, False, in_dc, self.cluster)
        value = int(address)
        node = IPv6Network((value & self.node_mask, self.node_prefix_len))
        zone_id = self.zone_of(value)
        offset = value & ~self.node_mask & ~self.field_mask & ALL_ONES
        name = (zone_names or {}).get(zone_id)
        return Explanation(address, True, True if self.datacenter is None else in_dc, self.cluster, node, zone_id, name, offset)

    # --- masks ---------------------------------------------------------------------------------
    def zone_match(self, zone_id: int, scope: Scope = "cluster") -> AddrMatch:
        """The one wildcard value/mask that selects every pod of a zone in the cluster or the datacenter."""
        self.check_zone_id(zone_id)
        if scope == "cluster":
            base = self.cluster
        elif scope == "datacenter":
            if self.datacenter is None:
                raise ValidationError("scope datacenter needs a datacenter prefix in the layout")
            base = self.datacenter
        else:
            raise ValidationError(f"unknown scope {scope!r} (cluster or datacenter)")
        mask = prefix_mask(base.prefixlen) | self.field_mask
        return AddrMatch(int(base.network_address) | (zone_id << self.field_shift), mask)

    def node_zone_match(self, node: IPv6Network | str, zone_id: int) -> AddrMatch:
        """The zone on one node: node prefix plus field (a plain CIDR when the field follows the prefix)."""
        net = self.check_node(node)
        self.check_zone_id(zone_id)
        return AddrMatch(int(net.network_address) | (zone_id << self.field_shift), self.node_mask | self.field_mask)

    def expand(self, zone_id: int, nodes: Iterable[IPv6Network | str]) -> list[IPv6Network]:
        """Plain CIDRs covering a zone on the given nodes, for firewalls without IPv6 wildcard masks.

        With the default layout that is one /80 per node. Bits between the node prefix and the zone field
        (if the field is placed lower) multiply the count; more than MAX_EXPANSION CIDRs is refused.
        """
        node_list = sorted({self.check_node(n) for n in nodes})
        return [IPv6Network((c, self.expanded_length)) for cidrs in self.expand_by_node(zone_id, node_list)
                for c in cidrs]

    @property
    def expanded_length(self) -> int:
        """The prefix length of the CIDRs ``expand`` gives: down to the end of the zone field."""
        return self.zone_offset + self.zone_width

    def check_expansion(self, zone_id: int, nodes: int) -> None:
        """Refuse an expansion over ``nodes`` nodes of more than MAX_EXPANSION CIDRs per zone."""
        self.check_zone_id(zone_id)
        gap = self.zone_offset - self.node_prefix_len
        if nodes << gap > MAX_EXPANSION:
            raise ValidationError(
                f"expanding zone {zone_id:#x} over {nodes} nodes gives {nodes << gap} CIDRs "
                f"(the {gap} bits between node prefix and zone field multiply it); use wildcard masks instead"
            )

    def expand_by_node(self, zone_id: int, nodes: Sequence[IPv6Network | int]) -> list[tuple[int, ...]]:
        """Per node (each already passed ``check_node``; a network or its address as an integer): the network
        addresses of the CIDRs (``expanded_length`` long) that cover the zone on it, the first being the zone's
        value there. Linear in the nodes, with no object per CIDR: exports expand millions."""
        self.check_expansion(zone_id, len(nodes))
        zone_bits = zone_id << self.field_shift
        values = [(n if isinstance(n, int) else int(n.network_address)) | zone_bits for n in nodes]
        if self.zone_offset == self.node_prefix_len:  # the usual layout: one CIDR per node
            return [(v,) for v in values]
        steps = [g << (128 - self.zone_offset) for g in range(1 << (self.zone_offset - self.node_prefix_len))]
        return [tuple(v | s for s in steps) for v in values]

    def as_dict(self) -> dict:
        return {
            "cluster": str(self.cluster),
            "nodePrefixLength": self.node_prefix_len,
            "zoneField": {"offset": self.zone_offset, "width": self.zone_width},
            "datacenter": str(self.datacenter) if self.datacenter else None,
            "ipamBits": self.ipam_bits,
        }
