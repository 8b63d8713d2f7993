"""Reading user files: multi-document YAML, `kind: List` dumps, node podCIDRs."""

from __future__ import annotations

from ipaddress import IPv6Network
from pathlib import Path

import pytest

from zonectl.core.errors import ValidationError
from zonectl.core.layout import Layout
from zonectl.inputs import load_documents, node_cidrs, of_kind

NODES_DUMP = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: ovn-worker}
  spec: {podCIDR: fd00:10:244:2::/64, podCIDRs: [fd00:10:244:2::/64]}
- apiVersion: v1
  kind: Node
  metadata:
    name: ovn-worker2
    annotations:
      k8s.ovn.org/node-subnets: '{"default":["fd00:10:244:3::/64"]}'
  spec: {}
- apiVersion: v1
  kind: Node
  metadata: {name: dual}
  spec: {podCIDRs: [10.244.4.0/24, fd00:10:244:4::/64]}
"""


LAYOUT = Layout(IPv6Network("fd00:10:244::/48"))


def test_kubectl_nodes_dump(tmp_path: Path) -> None:
    f = tmp_path / "nodes.yaml"
    f.write_text(NODES_DUMP)
    assert node_cidrs([f], LAYOUT) == [IPv6Network(f"fd00:10:244:{i}::/64") for i in (2, 3, 4)]


def test_plain_cidr_list_and_bad_cidr(tmp_path: Path) -> None:
    f = tmp_path / "nodes.yaml"
    f.write_text("cidrs: [fd00:10:244:9::/64]\n")
    assert node_cidrs([f], LAYOUT) == [IPv6Network("fd00:10:244:9::/64")]
    f.write_text("cidrs: [fd00:zz::/64]\n")
    with pytest.raises(ValidationError, match="cidrs\\[0\\]: 'fd00:zz::/64' is not an IPv6 CIDR"):
        node_cidrs([f], LAYOUT)


def test_directory_and_multi_document(tmp_path: Path) -> None:
    head = "apiVersion: zonectl.io/v1alpha1\nkind: "
    (tmp_path / "a.yaml").write_text(f"{head}SecurityZone\n---\n{head}SecurityZonePolicy\n---\n")
    (tmp_path / "b.yml").write_text(f"{head}SecurityZone\n")
    docs = load_documents([tmp_path])
    assert len(of_kind(docs, "SecurityZone")) == 2 and len(docs) == 3


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("kind: [unclosed\n")
    with pytest.raises(ValidationError, match="bad.yaml"):
        load_documents([f])
    with pytest.raises(ValidationError, match="missing.yaml"):
        load_documents([tmp_path / "missing.yaml"])


def test_read_mapping(tmp_path: Path) -> None:
    from zonectl.inputs import read_mapping

    good = tmp_path / "c.yaml"
    good.write_text("layout: {cluster: fd00:10:244::/48}\n")
    assert read_mapping(good) == {"layout": {"cluster": "fd00:10:244::/48"}}
    empty = tmp_path / "e.yaml"
    empty.write_text("")
    assert read_mapping(empty) == {}
    listy = tmp_path / "l.yaml"
    listy.write_text("- a\n")
    with pytest.raises(ValidationError, match=r"config .*l.yaml: is not a mapping"):
        read_mapping(listy)
    with pytest.raises(ValidationError, match=r"config .*missing.yaml: cannot read: No such file"):
        read_mapping(tmp_path / "missing.yaml")
