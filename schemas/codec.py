"""Avro binary codec for every event, with the event name and schema version carried in Kafka headers.

A record on any topic is the schemaless Avro encoding of one event; its headers say which event
(`event`) and which version of its schema (`schema-version`) wrote it, so a reader decodes it with the
writer's schema and projects it onto the schema it knows (Avro resolution: fields added with a default
are filled in). A newer version than the reader knows is read with the reader's newest schema: the
evolution rule is that a version only appends fields, with defaults, so the known fields come first.

Records of the current version are written and read by functions compiled from their schema
(`schemas/compiled.py`, byte for byte what fastavro writes, three to four times faster); fastavro parses the
schemas and resolves a record written with an older version.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from schemas import compiled

_SCHEMA_DIR = Path(__file__).with_name("avro")

EVENT_HEADER = "event"
VERSION_HEADER = "schema-version"
TRACEPARENT_HEADER = "traceparent"

Headers = list[tuple[str, bytes]]


class UnknownEvent(ValueError):
    """A record whose headers name no event (or version) this codec knows."""


Read = Callable[[bytes], dict[str, Any]]


@dataclass(frozen=True)
class EventSchema:
    name: str
    version: int
    parsed: Any
    encoder: compiled.Encoder
    decoder: compiled.Decoder


@cache
def _schemas() -> dict[tuple[str, int], EventSchema]:
    found: dict[tuple[str, int], EventSchema] = {}
    for path in sorted(_SCHEMA_DIR.glob("*.avsc")):
        raw = json.loads(path.read_text())
        schema = EventSchema(raw["name"], int(raw["version"]), fastavro.parse_schema(raw),
                             compiled.compile_encoder(raw), compiled.compile_decoder(raw))
        found[(schema.name, schema.version)] = schema
    return found


@cache
def current(name: str) -> EventSchema:
    """The newest version of an event's schema: the one this code writes and reads into."""
    versions = [s for (n, _), s in _schemas().items() if n == name]
    if not versions:
        raise UnknownEvent(f"no schema for event {name!r}")
    return max(versions, key=lambda s: s.version)


def event_names() -> list[str]:
    return sorted({name for name, _ in _schemas()})


def encode(name: str, record: dict[str, Any]) -> bytes:
    try:
        return current(name).encoder(record)
    except (KeyError, AttributeError) as exc:  # a field missing, not one of its symbols, or not a string
        raise ValueError(f"cannot encode {name}: {type(exc).__name__} {exc}") from exc


def headers(name: str, traceparent: str | None = None) -> Headers:
    out: Headers = [(EVENT_HEADER, name.encode()), (VERSION_HEADER, str(current(name).version).encode())]
    if traceparent:
        out.append((TRACEPARENT_HEADER, traceparent.encode()))
    return out


def header(headers: Any, key: str) -> str | None:
    for k, v in headers or ():
        if k == key:
            return v.decode() if isinstance(v, bytes | bytearray) else v
    return None


def decode(headers: Any, payload: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a record into (event name, record) using the writer's schema named in its headers."""
    name = version = None
    for key, value in headers or ():
        if key == EVENT_HEADER:
            name = value
        elif key == VERSION_HEADER:
            version = value
    if name is None or version is None:
        raise UnknownEvent("record has no event/schema-version headers")
    event, read = _resolution(_bytes(name), _bytes(version))
    try:
        return event, read(payload)
    except (IndexError, struct.error) as exc:
        raise EOFError(f"a {event} record that ends early or holds an unknown index: {exc}") from exc


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


@cache
def _resolution(name: bytes, version: bytes) -> tuple[str, Read]:
    """(event name, how to read its payload) for a header pair: worked out once per pair, since the analytics
    sink decodes tens of thousands of records a second."""
    event = name.decode()
    reader = current(event)
    try:
        number = int(version)
    except ValueError:
        raise UnknownEvent(f"unknown schema {event} v{version!r}") from None
    # A version newer than this code knows was written by a newer producer; schemas only ever append
    # fields with defaults, so the newest schema known here reads its leading fields.
    writer = _schemas().get((event, number)) or (reader if number > reader.version else None)
    if writer is None:
        raise UnknownEvent(f"unknown schema {event} v{number}")
    if writer is reader:
        return event, reader.decoder
    writer_schema, reader_schema = writer.parsed, None if writer is reader else reader.parsed
    return event, lambda payload: fastavro.schemaless_reader(  # type: ignore[return-value]
        io.BytesIO(payload), writer_schema, reader_schema)
