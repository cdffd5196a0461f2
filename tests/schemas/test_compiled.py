"""The compiled codec writes what fastavro writes and reads what fastavro reads, on every schema the gateway has
(every version), for records drawn at random from each schema; and a garbled record is an error, never a hang
or a record read past its end."""

from __future__ import annotations

import io
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest

from schemas import codec, compiled

SCHEMAS = sorted(Path(codec.__file__).with_name("avro").glob("*.avsc"))
CURRENT = {raw["name"]: raw for raw in map(json.loads, (p.read_text() for p in SCHEMAS))
           if int(raw["version"]) == codec.current(raw["name"]).version}
STRINGS = ["", "a", "héllo ✓ 日本", "x" * 63, "y" * 64, "z" * 300]
INTS = [0, 1, -1, 63, 64, -64, -65, 127, 128, 2**31 - 1, -(2**31)]
LONGS = [*INTS, 2**53, -(2**53), 2**63 - 1, -(2**63)]


def sample(schema: Any, rng: random.Random, nested: bool = False) -> Any:
    """A random value of a schema, with edge values (lengths and numbers around one varint byte) favoured; an
    array or map holds more than 63 items (a two-byte count) only at the top level, to keep records small."""
    if isinstance(schema, list):
        other = next(branch for branch in schema if branch != "null")
        return None if rng.random() < 0.3 else sample(other, rng, nested)
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(kind, dict | list):
        return sample(kind, rng, nested)
    counts = [0, 1, 2] if nested else [0, 1, 3, 70]
    values: dict[str, Any] = {
        "null": lambda: None,
        "boolean": lambda: rng.random() < 0.5,
        "int": lambda: rng.choice([*INTS, rng.randint(-10_000, 10_000)]),
        "long": lambda: rng.choice([*LONGS, rng.randint(-(2**40), 2**40)]),
        "float": lambda: rng.choice([0.0, 1.5, -2.25, 3.0e5]),
        "double": lambda: rng.choice([0.0, -0.5, 1e300, rng.uniform(-1e6, 1e6), float("inf")]),
        "string": lambda: rng.choice([*STRINGS, "".join(rng.choice("abcé✓ \n\"") for _ in range(rng.randint(0, 80)))]),
        "enum": lambda: rng.choice(schema["symbols"]),
        "array": lambda: [sample(schema["items"], rng, True) for _ in range(rng.choice(counts))],
        "map": lambda: {f"k{i}": sample(schema["values"], rng, True) for i in range(rng.choice(counts))},
        "record": lambda: _record(schema, rng, nested),
    }
    return values[kind]()


def _record(schema: dict[str, Any], rng: random.Random, nested: bool) -> dict[str, Any]:
    out = {}
    for field in schema["fields"]:
        optional = "default" in field or (isinstance(field["type"], list) and "null" in field["type"])
        if not optional or rng.random() > 0.2:  # a fifth of the optional fields left out: default or null
            out[field["name"]] = sample(field["type"], rng, nested)
    return out


def _fastavro(schema: dict[str, Any]) -> tuple[Any, Any]:
    parsed = fastavro.parse_schema(schema)

    def write(record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, record)
        return buf.getvalue()
    return write, lambda payload: fastavro.schemaless_reader(io.BytesIO(payload), parsed, None)


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_compiled_writes_and_reads_what_fastavro_does(path: Path) -> None:
    schema = json.loads(path.read_text())
    encode, decode = compiled.compile_encoder(schema), compiled.compile_decoder(schema)
    write, read = _fastavro(schema)
    rng = random.Random(path.name)
    for _ in range(300):
        record = sample(schema, rng)
        payload = write(record)
        assert encode(record) == payload, record
        assert decode(payload) == read(payload)


def test_a_record_missing_a_required_field_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="request_id"):
        codec.encode("ResponseChunk", {"project": "p", "run_id": "r", "seq": 0, "model": "m", "provider": "openai"})


@pytest.mark.parametrize("name", codec.event_names())
def test_a_cut_record_is_an_error(name: str) -> None:
    schema = CURRENT[name]
    rng = random.Random(name)
    headers = codec.headers(name)
    for _ in range(20):
        payload = codec.encode(name, sample(schema, rng))
        assert codec.decode(headers, payload)[0] == name
        for end in rng.sample(range(len(payload)), min(len(payload), 100)):
            with pytest.raises((EOFError, ValueError)):
                codec.decode(headers, payload[:end])


@pytest.mark.parametrize("name", codec.event_names())
def test_random_bytes_are_an_error_or_a_record_never_a_hang(name: str) -> None:
    headers = codec.headers(name)
    started = time.monotonic()
    rng = random.Random(name)
    for _ in range(500):
        payload = os.urandom(rng.randint(0, 200))
        try:
            event, record = codec.decode(headers, payload)
        except (EOFError, ValueError):
            continue
        assert event == name and isinstance(record, dict)
    assert time.monotonic() - started < 5
