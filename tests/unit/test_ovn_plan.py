"""Pure parts of the OVN backend: the sync plan (set difference), settings validation, SNAT classification."""

from __future__ import annotations

from ipaddress import IPv6Network

import pytest

from zonectl.core.errors import ValidationError
from zonectl.ovn.snat import hidden_zones
from zonectl.ovn.state import OwnedAcl, SwitchInfo
from zonectl.ovn.sync import SyncSettings, desired_acls, make_plan
from zonectl.render import ovn_match as om

SW = [SwitchInfo("node1", "u1", ("stor-node1",), ("k8s-node1",)), SwitchInfo("node2", "u2", ("stor-node2",), ())]


@pytest.fixture
def desired(example_zones, example_config, example_policy_bodies):
    from zonectl.core.rules import compile_objects

    rules = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
    return desired_acls(rules, SW, om.AclSettings())


def _owned(desired) -> list[OwnedAcl]:
    return [OwnedAcl(f"uuid-{k}", k, dict(v.columns), set(v.switches)) for k, v in desired.items()]


def test_empty_state_creates_everything_then_nothing(desired) -> None:
    plan = make_plan(desired, [])
    assert len(plan.creates) == len(desired) == 24 + 3 + 2
    assert make_plan(desired, _owned(desired)).empty


def test_drift_duplicates_and_strays(desired) -> None:
    owned = _owned(desired)
    rules = [o for o in owned if not o.key.startswith("exempt")]
    edited, detached, duplicated = rules[0], rules[1], rules[2]
    edited.columns["action"] = "drop" if edited.columns["action"] != "drop" else "allow-related"
    detached.switches.discard("node2")
    owned.append(OwnedAcl("uuid-dup", duplicated.key, dict(duplicated.columns), {"node1"}))
    owned.append(OwnedAcl("uuid-stray", "rgone", dict(duplicated.columns), {"node1"}))
    owned.append(OwnedAcl("uuid-nokey", None, dict(duplicated.columns), {"node1"}))
    plan = make_plan(desired, owned)
    assert sorted(c.kind for c in plan.changes) == ["attach", "delete", "delete", "duplicate", "update"]
    assert {o.uuid for o in plan.deletes} == {"uuid-dup", "uuid-stray", "uuid-nokey"}  # the complete row is kept
    assert plan.updates[0][0] is edited and set(plan.updates[0][1]) == {"action"}
    assert plan.attach == [(detached.uuid, "node2")]


def test_kept_policies_are_not_touched(desired) -> None:
    owned = _owned(desired)
    kept = [o for o in owned if o.external_ids.get(om.POLICY_KEY) == "zonectl-system/db"]
    others = {k: v for k, v in desired.items() if v.policy != "zonectl-system/db"}
    kept[0].columns["priority"] = 1
    plan = make_plan(others, owned, keep_policies={"zonectl-system/db"})
    assert plan.empty


@pytest.mark.parametrize(
    ("section", "msg"),
    [
        ({"drift": "fix"}, "ovn.drift"),
        ({"snat": "delete"}, "ovn.snat"),
        ({"priorityMin": "low"}, "ovn.priorityMin: .low. must be an integer"),
        ({"priorityMin": 1.5}, "ovn.priorityMin: 1.5 must be an integer"),
        ({"denyAction": "reject"}, "deletes every .reject. ACL"),
        ({"switches": "node1"}, "list of logical switch names"),
        ({"tier": 1, "allowAction": "pass"}, "needs an NB schema with ACL tiers"),
        ({"nbb": "x"}, "unknown field"),
    ],
)
def test_settings_errors(section, msg) -> None:
    with pytest.raises(ValidationError, match=msg):
        SyncSettings.build(section, IPv6Network("fd00:10:244::/48"), has_tier=False)


def test_settings_tier_only_when_schema_has_it() -> None:
    assert SyncSettings.build({}, None, has_tier=False).acl.tier is None
    assert SyncSettings.build({}, None, has_tier=True).acl.tier == 1
    assert SyncSettings.build({"tier": 0}, None, has_tier=True).acl.tier == 0


@pytest.mark.parametrize(
    ("net", "zones"),
    [
        ("fd00:10:244::/48", ("*",)),
        ("fd00:10:244:1::/64", ("*",)),
        ("fd00:10:244:1:2000::5/128", ("dmz",)),
        ("fd00:10:244:1:2000::/80", ("dmz",)),
        ("fd00:10:244:1:4242::9/128", ("0x4242",)),
        ("fd00:10:244:1::9/128", None),  # zone 0: nothing to hide
        ("fd00:10:245::/48", None),  # another cluster
        ("fd00:10::/32", ("*",)),  # covers the cluster
    ],
)
def test_hidden_zones(net, zones, example_zones, example_config) -> None:
    assert hidden_zones(IPv6Network(net), example_config.layout, example_zones) == zones


def test_brief_survives_an_exception_whose_str_fails() -> None:
    """ovsdbapp's wait_for_change raises TimeoutException() without arguments; its str() raises AttributeError.
    The reason zonectl reports (e.g. in "outcome unknown (...)") must still be a sentence, not a crash."""
    from ovsdbapp.exceptions import TimeoutException

    from zonectl.ovn.connection import brief

    with pytest.raises(AttributeError):
        str(TimeoutException())
    assert brief(TimeoutException()) == "TimeoutException (no answer in time)"
