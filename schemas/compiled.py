"""Avro's binary encoding compiled from a schema: one Python function that writes a record of it and one that
reads it, generated once per schema from its fields.

fastavro walks the parsed schema for every record it writes or reads (and prepares a decoder, options and the
named types each call); on the gateway's small records that walk and set-up were most of the cost, and the
codec was the largest single piece of the gateway's own code on a request's path. A function made for one
schema does only the record's own work: 1.4 against 5.3 µs to write a stream's chunk
(`bench/results/codec-20261201.md`).

What it covers is what the gateway's schemas use: null, boolean, int, long, float, double, string, bytes, enum,
records, arrays and maps of any of them, and unions of null with one other type; a schema using anything else
stops the codec from loading with `NotImplementedError` naming it (extend the compiler, and its test, first).
fastavro still parses the schemas and reads records written with an older version of one (resolution).
Writing follows fastavro's rules (a missing field takes its default, a missing nullable one null; float and
double fields take ints), and `tests/schemas/test_compiled.py` holds both functions to fastavro, byte for byte,
on every schema.

Reading checks what a garbled record could do to it: a negative length or a count larger than the bytes left
raises `EOFError` or `ValueError` (as fastavro's do), and trailing bytes are left unread (a newer writer's
appended fields).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Encoder = Callable[[dict[str, Any]], bytes]
Decoder = Callable[[bytes], dict[str, Any]]


def zigzag_varint(n: int) -> bytes:
    """A long as Avro writes it: zig-zag, then seven bits a byte, least significant first."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


SMALL = tuple(zigzag_varint(n) for n in range(64))  # one byte each: the lengths and numbers most records hold


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(the long at pos, the position after it)."""
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than ten bytes")


def read_length(data: bytes, pos: int) -> tuple[int, int]:
    length, pos = read_varint(data, pos)
    if length < 0 or pos + length > len(data):
        raise EOFError(f"a length of {length} with {len(data) - pos} bytes left")
    return length, pos


def read_count(data: bytes, pos: int) -> tuple[int, int]:
    """An array's or map's block count (a negative one is followed by the block's size in bytes)."""
    count, pos = read_varint(data, pos)
    if count < 0:
        count = -count
        _, pos = read_varint(data, pos)
    if count > len(data) - pos:  # every item the gateway's schemas hold takes a byte at least
        raise EOFError(f"{count} items with {len(data) - pos} bytes left")
    return count, pos


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "string", "bytes"}


class _Source:
    """Lines of one generated function, its constants, and fresh local names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def constant(self, value: Any) -> str:
        name = self.name("_c")
        self.constants[name] = value
        return name

    def add(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _type(schema: Any) -> tuple[str, Any]:
    """(kind, schema) with a `{"type": "string"}` style primitive unwrapped."""
    if isinstance(schema, list):
        return "union", schema
    if isinstance(schema, str):
        if schema not in _PRIMITIVES:
            raise NotImplementedError(f"a named type reference ({schema})")
        return schema, schema
    kind = schema["type"]
    if isinstance(kind, str) and kind in _PRIMITIVES and "logicalType" not in schema:
        return kind, kind
    if kind in ("record", "array", "map", "enum") and "logicalType" not in schema:
        return kind, schema
    raise NotImplementedError(f"type {kind!r}")


def _nullable(schema: list[Any]) -> tuple[int, Any]:
    """(the index of the non-null branch, its schema) of a union of null and one other type."""
    if len(schema) != 2 or "null" not in schema:
        raise NotImplementedError(f"a union other than null and one type: {schema}")
    index = 1 - schema.index("null")
    return index, schema[index]


# Writing ---------------------------------------------------------------------------------------------------

def _write(src: _Source, schema: Any, value: str, depth: int) -> None:
    """Lines appending the encoding of the local `value` to the list's `a`."""
    kind, schema = _type(schema)
    if kind == "null":
        return
    if kind == "boolean":
        src.add(depth, f"a(b'\\x01' if {value} else b'\\x00')")
    elif kind in ("int", "long"):
        src.add(depth, f"a(SMALL[{value}] if 0 <= {value} < 64 else zigzag_varint({value}))")
    elif kind in ("float", "double"):
        pack = src.constant(struct.Struct("<f" if kind == "float" else "<d").pack)
        src.add(depth, f"a({pack}({value}))")
    elif kind in ("string", "bytes"):
        raw = src.name("s")
        src.add(depth, f"{raw} = {value}.encode()" if kind == "string" else f"{raw} = {value}")
        src.add(depth, f"a(SMALL[len({raw})] if len({raw}) < 64 else zigzag_varint(len({raw})))")
        src.add(depth, f"a({raw})")
    elif kind == "enum":
        index = src.constant({symbol: zigzag_varint(i) for i, symbol in enumerate(schema["symbols"])})
        src.add(depth, f"a({index}[{value}])")
    elif kind == "union":
        branch, other = _nullable(schema)
        src.add(depth, f"if {value} is None:")
        src.add(depth + 1, f"a({zigzag_varint(1 - branch)!r})")
        src.add(depth, "else:")
        src.add(depth + 1, f"a({zigzag_varint(branch)!r})")
        _write(src, other, value, depth + 1)
    elif kind == "record":
        _write_fields(src, schema, value, depth)
    else:  # array, map
        item = src.name("i")
        src.add(depth, f"if {value}:")
        src.add(depth + 1, f"a(zigzag_varint(len({value})))")
        if kind == "array":
            src.add(depth + 1, f"for {item} in {value}:")
            _write(src, schema["items"], item, depth + 2)
        else:
            key = src.name("k")
            src.add(depth + 1, f"for {key}, {item} in {value}.items():")
            _write(src, "string", key, depth + 2)
            _write(src, schema["values"], item, depth + 2)
        src.add(depth, "a(b'\\x00')")


def _write_fields(src: _Source, schema: dict[str, Any], record: str, depth: int) -> None:
    for field in schema["fields"]:
        name, ftype = field["name"], field["type"]
        value = src.name("v")
        if "default" in field:
            src.add(depth, f"{value} = {record}.get({name!r}, {src.constant(field['default'])})")
        elif isinstance(ftype, list) and "null" in ftype:
            src.add(depth, f"{value} = {record}.get({name!r})")
        else:
            src.add(depth, f"{value} = {record}[{name!r}]")
        if ftype in ("float", "double"):
            src.add(depth, f"{value} = float({value})")
        _write(src, ftype, value, depth)


def compile_encoder(schema: dict[str, Any]) -> Encoder:
    """A function writing a record of this schema (a missing field without a default raises KeyError)."""
    src = _Source()
    src.add(1, "out = []")
    src.add(1, "a = out.append")
    _write_fields(src, schema, "record", 1)
    src.add(1, "return b''.join(out)")
    return _define(src, "encode", "record", schema)


# Reading ---------------------------------------------------------------------------------------------------

def _read_long(src: _Source, target: str, depth: int) -> None:
    """`target` = the long at p; one byte inline, longer ones through read_varint."""
    src.add(depth, "x = data[p]")
    src.add(depth, "if x < 0x80:")
    src.add(depth + 1, f"{target} = (x >> 1) ^ -(x & 1)")
    src.add(depth + 1, "p += 1")
    src.add(depth, "else:")
    src.add(depth + 1, f"{target}, p = read_varint(data, p)")


def _read(src: _Source, schema: Any, target: str, depth: int) -> None:
    """Lines reading a value at p into `target` (an assignable expression), p moved past it."""
    kind, schema = _type(schema)
    if kind == "null":
        src.add(depth, f"{target} = None")
    elif kind == "boolean":
        src.add(depth, f"{target} = data[p] == 1")
        src.add(depth, "p += 1")
    elif kind in ("int", "long"):
        _read_long(src, target, depth)
    elif kind in ("float", "double"):
        unpack = src.constant(struct.Struct("<f" if kind == "float" else "<d").unpack_from)
        src.add(depth, f"{target} = {unpack}(data, p)[0]")
        src.add(depth, f"p += {4 if kind == 'float' else 8}")
    elif kind in ("string", "bytes"):
        src.add(depth, "x = data[p]")
        src.add(depth, "if x < 0x80 and not x & 1 and p + (x >> 1) < end:")
        src.add(depth + 1, "n = x >> 1")
        src.add(depth + 1, "p += 1")
        src.add(depth, "else:")
        src.add(depth + 1, "n, p = read_length(data, p)")
        decode = ".decode()" if kind == "string" else ""
        src.add(depth, f"{target} = data[p:p + n]{decode}")
        src.add(depth, "p += n")
    elif kind == "enum":
        symbols = src.constant(tuple(schema["symbols"]))
        index = src.name("e")
        _read_long(src, index, depth)
        src.add(depth, f"{target} = {symbols}[{index}]")
    elif kind == "union":
        branch, other = _nullable(schema)
        src.add(depth, "x = data[p]")
        src.add(depth, "p += 1")
        src.add(depth, f"if x == {2 * (1 - branch)}:")
        src.add(depth + 1, f"{target} = None")
        src.add(depth, f"elif x == {2 * branch}:")
        _read(src, other, target, depth + 1)
        src.add(depth, "else:")
        src.add(depth + 1, "raise ValueError(f'union branch {x >> 1} of a two-branch union')")
    elif kind == "record":
        values = [(field["name"], src.name("f")) for field in schema["fields"]]
        for field, (_, value) in zip(schema["fields"], values, strict=True):
            _read(src, field["type"], value, depth)
        src.add(depth, f"{target} = {{{', '.join(f'{name!r}: {value}' for name, value in values)}}}")
    else:  # array, map
        items, count = src.name("l"), src.name("n")
        src.add(depth, f"{items} = {'[]' if kind == 'array' else '{}'}")
        src.add(depth, f"{count}, p = read_count(data, p)")
        src.add(depth, f"while {count}:")
        src.add(depth + 1, f"for _ in range({count}):")
        if kind == "array":
            item = src.name("i")
            _read(src, schema["items"], item, depth + 2)
            src.add(depth + 2, f"{items}.append({item})")
        else:
            key = src.name("k")
            _read(src, "string", key, depth + 2)
            _read(src, schema["values"], f"{items}[{key}]", depth + 2)
        src.add(depth + 1, f"{count}, p = read_count(data, p)")
        src.add(depth, f"{target} = {items}")


def compile_decoder(schema: dict[str, Any]) -> Decoder:
    """A function reading a record of this schema from the start of a payload."""
    src = _Source()
    src.add(1, "p = 0")
    src.add(1, "end = len(data)")
    _read(src, schema, "record", 1)
    src.add(1, "if p > end:")
    src.add(2, "raise EOFError('the record ends past the payload')")
    src.add(1, "return record")
    return _define(src, "decode", "data", schema)


def _define(src: _Source, kind: str, argument: str, schema: dict[str, Any]) -> Any:
    name = f"{kind}_{schema['name']}"
    code = "\n".join([f"def {name}({argument}):", *src.lines])
    namespace: dict[str, Any] = {"SMALL": SMALL, "zigzag_varint": zigzag_varint, "read_varint": read_varint,
                                 "read_length": read_length, "read_count": read_count, **src.constants}
    exec(compile(code, f"<avro {name}>", "exec"), namespace)
    return namespace[name]
