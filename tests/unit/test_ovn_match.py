"""The OVN renderer: rules -> ACL rows (pure). Golden file for the example policies; edge cases below.

Regenerate the golden file after an intended change with ZONECTL_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zonectl.core.errors import ValidationError
from zonectl.core.layout import AddrMatch
from zonectl.core.rules import Rule, compile_objects
from zonectl.render import ovn_match as om

GOLDEN = Path(__file__).parent / "golden" / "ovn_acls.json"
DMZ = AddrMatch.parse("fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::")
WEB = AddrMatch.parse("fd00:10:244:0:2100::/ffff:ffff:ffff:0:ffff::")
R1, R2 = "r000000000000001", "r000000000000002"  # the form of a compiled rule id (r + 15 hex digits)


def _rule(**kw) -> Rule:
    base = dict(id=R1, policy="ns/p", zone="dmz", direction="egress", action="allow", order=1, src=DMZ, dst=WEB)
    base.update(kw)
    return Rule(**base)


def test_example_policies_match_golden(example_zones, example_policy_bodies, example_config) -> None:
    rules = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
    rows = om.render_ruleset(rules, om.AclSettings())
    rows += om.render_exemptions("node1", ["stor-node1"], ["k8s-node1"], om.AclSettings())
    text = json.dumps(rows, indent=1, sort_keys=True) + "\n"
    if os.environ.get("ZONECTL_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({}, "ip6.src == fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff:: && ip6.dst == fd00:10:244:0:2100::/ffff:ffff:ffff:0:ffff::"),
        ({"protocol": "tcp", "port_min": 443, "port_max": 443}, "... && tcp.dst == 443"),
        ({"protocol": "udp", "port_min": 8443, "port_max": 8444}, "... && udp.dst >= 8443 && udp.dst <= 8444"),
        ({"protocol": "sctp"}, "... && sctp"),
        ({"protocol": "icmpv6"}, "... && icmp6"),
        ({"protocol": "icmpv6", "icmp_type": 128}, "... && icmp6.type == 128"),
        ({"dst": None}, "ip6.src == fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::"),
        ({"dst": AddrMatch.parse("2001:db8:100::/56")},
         "ip6.src == fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff:: && ip6.dst == 2001:db8:100::/56"),
        ({"src": None, "dst": None}, "ip6"),
    ],
)
def test_rule_match(kw, match) -> None:
    prefix = "ip6.src == fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff:: && ip6.dst == fd00:10:244:0:2100::/ffff:ffff:ffff:0:ffff::"
    assert om.rule_match(_rule(**kw)) == match.replace("...", prefix)


def test_directions_actions_and_owner_keys() -> None:
    s = om.AclSettings()
    egress = om.render_rule(_rule(), 1500, s)
    ingress = om.render_rule(_rule(direction="ingress", action="deny", id=R2), 1400, s)
    assert (egress["direction"], egress["action"]) == ("from-lport", "allow-related")
    assert (ingress["direction"], ingress["action"]) == ("to-lport", "drop")
    ids = egress["external_ids"]
    assert ids[om.OWNER_CONTROLLER_KEY] == "zonectl"
    assert ids[om.POLICY_KEY] == "ns/p" and ids[om.RULE_KEY] == R1
    assert ids[om.PRIMARY_ID_KEY] == f"zonectl:SecurityZonePolicy:{R1}"
    assert "tier" not in egress  # no tier column unless the schema has one
    tiered = om.render_rule(_rule(), 1500, om.AclSettings(tier=1, allow_action="pass"))
    assert tiered["tier"] == 1 and tiered["action"] == "pass"
    assert om.acl_key(ids) == R1
    assert om.acl_key({om.OWNER_CONTROLLER_KEY: "default-network-controller"}) is None


def test_priorities_rank_per_zone_and_direction() -> None:
    rules = [
        _rule(id="a", order=10), _rule(id="b", order=20), _rule(id="c", order=20, action="deny"),
        _rule(id="d", order=5, zone="web", src=WEB, dst=None),
        _rule(id="e", order=999, direction="ingress"),
    ]
    prio = om.assign_priorities(rules, om.AclSettings())
    assert prio == {"a": 1998, "b": 1997, "c": 1997, "d": 1998, "e": 1998}


def test_priority_band_overflow_is_a_clear_error() -> None:
    rules = [_rule(id=str(i), order=i) for i in range(10)]
    with pytest.raises(ValidationError, match="do not fit the OVN priority band"):
        om.assign_priorities(rules, om.AclSettings(priority_min=1000, priority_max=1005))


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"allow_action": "pass"}, "needs an NB schema with ACL tiers"),
        ({"allow_action": "accept"}, "is not one of"),
        ({"deny_action": "allow"}, "is not one of"),
        ({"priority_min": 2000, "priority_max": 1000}, "priority band"),
        ({"tier": 7}, "must be 0..3"),
    ],
)
def test_bad_settings(kw, msg) -> None:
    with pytest.raises(ValidationError, match=msg):
        om.AclSettings(**kw)


def test_exemptions() -> None:
    rows = om.render_exemptions("node1", ["stor-node1"], ["k8s-node1"], om.AclSettings())
    assert [(r["direction"], r["match"]) for r in rows] == [
        ("from-lport", 'inport == "stor-node1"'),
        ("to-lport", 'outport == "stor-node1"'),
        ("to-lport", 'inport == "k8s-node1"'),
    ]
    assert {r["priority"] for r in rows} == {1999}
    assert [om.acl_key(r["external_ids"]) for r in rows] == [
        "exempt:node1:from-router", "exempt:node1:to-router", "exempt:node1:from-node"]
    two = om.render_exemptions("n", ["b", "a"], [], om.AclSettings(tier=1))
    assert two[0]["match"] == 'inport == {"a", "b"}' and two[0]["action"] == "pass" and len(two) == 2
