"""The NAT64 prefix (RFC 6052): how IPv4 destinations are written as IPv6 addresses pods can reach.

Policies name IPv4 destinations (``nat64: {cidrs: [198.51.100.0/24]}``); the compiler turns each into
the value/mask of the IPv6 addresses that embed it. For a /96 prefix that is an ordinary CIDR; for
the shorter RFC 6052 prefixes the IPv4 bits straddle the reserved "u" octet (bits 64-71), so the
result is a wildcard mask, which every enforcement point of zonectl handles anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from .errors import Collector, ValidationError
from .fields import address
from .layout import AddrMatch, prefix_mask

RFC6052_LENGTHS = (32, 40, 48, 56, 64, 96)
WELL_KNOWN = IPv6Network("64:ff9b::/96")


def _spread(v4: int, length: int) -> int:
    """Place 32 IPv4 bits after a prefix of ``length`` bits, skipping bits 64-71 (RFC 6052 section 2.2)."""
    out = bytearray(16)
    src = v4.to_bytes(4, "big")
    pos = length // 8
    for byte in src:
        if pos == 8:
            pos += 1
        out[pos] = byte
        pos += 1
    return int.from_bytes(out, "big")


def _gather(v6: int, length: int) -> int:
    data = v6.to_bytes(16, "big")
    pos = length // 8
    out = bytearray()
    while len(out) < 4:
        if pos == 8:
            pos += 1
        out.append(data[pos])
        pos += 1
    return int.from_bytes(out, "big")


@dataclass(frozen=True)
class Nat64Prefix:
    """A NAT64 prefix of one of the RFC 6052 lengths (Tayga supports the same set)."""

    network: IPv6Network

    def __post_init__(self) -> None:
        if not isinstance(self.network, IPv6Network):
            raise ValidationError(f"NAT64 prefix {self.network!r} is not an IPv6 network")
        if self.network.prefixlen not in RFC6052_LENGTHS:
            raise ValidationError(
                f"NAT64 prefix {self.network} must be /32, /40, /48, /56, /64 or /96 (RFC 6052)"
            )

    @classmethod
    def parse(cls, text: str) -> "Nat64Prefix":
        errs = Collector()
        net = address(text, "nat64.prefix", errs, IPv6Network, "an IPv6 network")
        errs.raise_if_any()
        assert net is not None
        return cls(net)

    @property
    def is_well_known(self) -> bool:
        return self.network == WELL_KNOWN

    def match(self) -> AddrMatch:
        """Every IPv6 address that stands for some IPv4 address."""
        return AddrMatch.from_network(self.network)

    def embed(self, v4: IPv4Address | str) -> IPv6Address:
        return IPv6Address(int(self.network.network_address) | _spread(int(IPv4Address(v4)), self.network.prefixlen))

    def extract(self, v6: IPv6Address | str) -> IPv4Address:
        addr = IPv6Address(v6)
        if addr not in self.network:
            raise ValidationError(f"{addr} is not inside the NAT64 prefix {self.network}")
        return IPv4Address(_gather(int(addr), self.network.prefixlen))

    def embed_network(self, v4net: IPv4Network | str) -> AddrMatch:
        """The IPv6 value/mask whose addresses embed exactly the IPv4 network ``v4net``."""
        net = IPv4Network(v4net)
        length = self.network.prefixlen
        v4mask = int(net.netmask)
        mask = prefix_mask(length) | _spread(v4mask, length)
        value = int(self.network.network_address) | _spread(int(net.network_address), length)
        return AddrMatch(value, mask)
