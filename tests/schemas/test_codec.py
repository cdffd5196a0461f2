"""Every event round-trips through the codec, and schemas evolve without breaking older readers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest

from schemas import codec
from schemas.topics import ALL, TopicNames

REQUEST = {
    "request_id": "r-1", "project": "p", "key_id": "key_ab", "received_at_ms": 1, "deadline_ms": 2,
    "reply_topic": "gw.replies", "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
}


def test_every_topic_event_has_a_schema() -> None:
    assert {event for spec in ALL for event in spec.events} == set(codec.event_names())


def test_a_request_round_trips_with_defaults_filled_in() -> None:
    name, decoded = codec.decode(codec.headers("RequestReceived", "00-" + "a" * 32 + "-" + "b" * 16 + "-01"),
                                 codec.encode("RequestReceived", REQUEST))

    assert name == "RequestReceived"
    assert decoded == {**REQUEST, "reply_partition": -1, "fallback": [], "max_tokens": None, "temperature": None,
                       "top_p": None, "stop": [], "seed": None, "user": None, "tools": [], "tool_choice": None,
                       "parallel_tool_calls": None, "response_format_json": None, "provider_keys": [],
                       "stream": False, "include_usage": False, "prompt_id": None, "prompt_version": None, "team": None,
                       "cache_mode": None, "cache_ttl_s": None, "cache_threshold": None, "cache_control": None,
                       "metadata": {},
                       "messages": [{"role": "user", "content": "hi", "name": None, "parts": [], "tool_calls": [],
                                     "tool_call_id": None}]}


def test_headers_name_the_event_its_version_and_the_trace() -> None:
    headers = dict(codec.headers("UsageRecorded", "00-trace"))

    assert headers == {"event": b"UsageRecorded", "schema-version": b"7", "traceparent": b"00-trace"}


def test_a_record_of_an_older_version_is_read_with_the_new_fields_defaulted() -> None:
    v1 = json.loads((Path(codec.__file__).with_name("avro") / "response_completed.v1.avsc").read_text())
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(v1), {
        "request_id": "r-1", "project": "p", "model": "gpt-4o", "provider": "openai", "content": "hi",
        "finish_reason": "stop", "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost_usd": 0.1,
        "latency_ms": 5.0, "attempts": 1, "completed_at_ms": 7,
    })

    name, decoded = codec.decode([("event", b"ResponseCompleted"), ("schema-version", b"1")], buf.getvalue())

    assert (name, decoded["content"], decoded["tool_calls"], decoded["cached_tokens"]) == \
        ("ResponseCompleted", "hi", [], 0)


def test_a_record_without_event_headers_is_rejected() -> None:
    with pytest.raises(codec.UnknownEvent):
        codec.decode([], codec.encode("RequestReceived", REQUEST))


def test_an_older_reader_reads_a_newer_version_that_appended_a_field_with_a_default() -> None:
    raw = json.loads((Path(codec.__file__).with_name("avro") / "request_received.avsc").read_text())
    raw["version"] = 3
    raw["fields"].append({"name": "priority", "type": "int", "default": 0})
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(raw), {**REQUEST, "priority": 7})
    newer_headers = [("event", b"RequestReceived"), ("schema-version", b"3")]

    name, decoded = codec.decode(newer_headers, buf.getvalue())

    assert name == "RequestReceived"
    assert decoded["model"] == "gpt-4o"
    assert "priority" not in decoded


def test_topic_names_carry_the_prefix() -> None:
    assert TopicNames.for_prefix("t1.").requests == "t1.requests"
