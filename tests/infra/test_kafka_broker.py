"""A fresh broker's storage is formatted whatever random cluster id comes up: one in 64 of Kafka's URL-safe ids
starts with '-', which the storage tool took for an option ('argument --cluster-id/-t: expected one argument'),
and `gateway kafka start` failed on a clean checkout."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from infra import kafka_broker

DASH_FIRST = uuid.UUID(bytes=b"\xf8" + bytes(15))  # URL-safe base64 '-...'


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter([DASH_FIRST, DASH_FIRST, uuid.UUID(int=7)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(drawn))
    assert base64.urlsafe_b64encode(DASH_FIRST.bytes).startswith(b"-")
    cluster_id = kafka_broker.new_cluster_id()
    assert not cluster_id.startswith("-")
    assert base64.urlsafe_b64decode(cluster_id + "==") == uuid.UUID(int=7).bytes


def test_the_storage_tool_formats_a_node_with_a_new_cluster_id(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    drawn = iter([DASH_FIRST, uuid.UUID(int=7)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(drawn))
    node = kafka_broker.Node(1, 19992, 19993, tmp_path)
    properties = kafka_broker._properties(node, [node])
    kafka_broker.format_storage(properties, kafka_broker.new_cluster_id())
    assert (tmp_path / "data" / "meta.properties").exists()
