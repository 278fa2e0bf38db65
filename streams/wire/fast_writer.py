"""Schema-specialised Avro binary writers: the output records' hot encoding path.

`compile_writer(parsed, prefix)` turns a parsed (fastavro `parse_schema`) record schema into a
Python function, generated once per schema, that returns `prefix` + the Avro body of a record:
one `b"".join` over precomputed union branch bytes, zig-zag varints, `struct` packed doubles
and length-prefixed UTF-8, with no per-call schema walk. The encodings of strings and longs
are kept (bounded caches per writer): output records repeat a few strings (levels, units,
services, KPI ids, window starts) and timestamps (window starts, publication times).

The generated writer is a fast path, not a second implementation of Avro: it takes only values
of exactly the type the schema asks for (`int` for int/long, in range; `float` or `int` for
float/double; `str` or a subclass, written as its string value, for strings; `bool` for
booleans; `bytes` for bytes/fixed, of the fixed size; `list` for arrays; `dict` for maps (with
`str` keys) and records; None for null branches; a symbol for enums), every field present.
Anything else — a missing field that takes its default, a None where null is not allowed, a
numpy scalar, a tuple-notation union value, an int out of range — raises, and the caller
(`streams.wire.codec.encode`) hands the record to fastavro (validated first). For what it takes,
the bytes are exactly fastavro's `schemaless_writer` bytes (`tests/wire/test_fast_writer.py`
checks that over generated records of every schema in `schemas/` and of every Avro type).

Schemas with constructs not handled here (logical types, unions other than null + one of
boolean/int/long/float/double/bytes/string/enum/fixed, recursive records) get no writer:
`compile_writer` returns None and every record of them goes to fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any, Final, NoReturn

Writer = Callable[[Any], bytes]

LONG_MIN: Final = -(1 << 63)
LONG_MAX: Final = (1 << 63) - 1
INT_MIN: Final = -(1 << 31)
INT_MAX: Final = (1 << 31) - 1

_PRIMITIVES: Final = frozenset(
    ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
)
# the types a null branch may be paired with in a union (records, arrays and maps in unions
# have union-resolution rules of their own in fastavro: not handled here)
_UNION_BRANCHES: Final = frozenset(
    ("boolean", "int", "long", "float", "double", "bytes", "string", "enum", "fixed")
)
# lengths below this have their varint prefix looked up rather than computed
_TABLE: Final = 1024
# encodings kept per writer and per union branch, of strings and of longs (emptied when full)
_CACHE_SIZE: Final = 4096
_CACHED_CHARS: Final = 128


class Unsupported(Exception):
    """The schema uses a construct the generated writers do not handle."""


class Rejected(Exception):
    """A value the fast path does not take (the caller falls back to fastavro)."""


def reject(*_: object) -> NoReturn:
    raise Rejected


# varints 14 bits at a time: the encodings of every n < 2**14 as the last bytes of a varint
# (1 or 2 bytes), and as 2 bytes that more follow
_LAST: Final = tuple(
    bytes((n,)) if n < 0x80 else bytes(((n & 0x7F) | 0x80, n >> 7)) for n in range(0x4000)
)
_MIDDLE: Final = tuple(bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(0x4000))


def varint(n: int) -> bytes:
    """Avro varint of an already zig-zagged, non-negative `n`."""
    if n < 0x4000:
        return _LAST[n]
    low = _MIDDLE[n & 0x3FFF]
    n >>= 14
    if n < 0x4000:
        return low + _LAST[n]
    middle = _MIDDLE[n & 0x3FFF]
    n >>= 14
    if n < 0x4000:  # up to 42 bits: epoch milliseconds until the year 2109
        return b"".join((low, middle, _LAST[n]))
    parts = [low, middle]
    while n >= 0x4000:
        parts.append(_MIDDLE[n & 0x3FFF])
        n >>= 14
    parts.append(_LAST[n])
    return b"".join(parts)


def zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


_SIZE: Final = tuple(varint(n << 1) for n in range(_TABLE))  # length n -> its long varint


def _size(n: int) -> bytes:
    """Varint prefix of a length (strings, bytes, array and map blocks)."""
    return _SIZE[n] if n < _TABLE else varint(n << 1)


def _string_writer(tag: bytes) -> tuple[Callable[[Any], bytes | None], Writer]:
    """(cache lookup, writer) of strings, each encoding after the union branch `tag`."""
    cache: dict[str, bytes] = {}

    def write_string(value: Any) -> bytes:
        if type(value) is not str and not isinstance(value, str):
            raise Rejected
        # str.encode, not value.encode(): a str subclass is written as its string value
        data = str.encode(value)
        encoded = b"".join((tag, _size(len(data)), data))
        if len(value) <= _CACHED_CHARS:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[value] = encoded
        return encoded

    return cache.get, write_string


def _long_writer(tag: bytes) -> tuple[Callable[[int], bytes | None], Writer]:
    """(cache lookup, writer) of longs, each encoding after the union branch `tag`. The cache
    is looked up only with values of type int (True == 1 and 1.0 == 1 as dict keys)."""
    cache: dict[int, bytes] = {}

    def write_long(value: Any) -> bytes:
        if type(value) is not int or not LONG_MIN <= value <= LONG_MAX:
            raise Rejected
        encoded = tag + varint((value << 1) ^ (value >> 63))
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[value] = encoded
        return encoded

    return cache.get, write_long


def _write_int(value: Any) -> bytes:
    if type(value) is not int or not INT_MIN <= value <= INT_MAX:
        raise Rejected
    return varint((value << 1) ^ (value >> 63))


def _as_float(value: Any) -> float:
    """An int written as a float/double (fastavro converts it); other types rejected."""
    if type(value) is not int:
        raise Rejected
    return float(value)


class _Compiler:
    """Generates the source of the writer functions of one record schema."""

    def __init__(self, prefix: bytes) -> None:
        self.namespace: dict[str, Any] = {
            "_reject": reject,
            "_size": _size,
            "_int": _write_int,
            "_as_float": _as_float,
            "_PREFIX": prefix,
        }
        self.lines: list[str] = []
        self.named: dict[str, Any] = {}  # full name -> definition
        self.functions: dict[str, str] = {}  # full record name -> its writer function
        self.pending: set[str] = set()
        self.writers: dict[tuple[str, bytes], tuple[str, str]] = {}
        self.packers: dict[str, str] = {}
        self.counter = 0

    def name(self, stem: str) -> str:
        self.counter += 1
        return f"_{stem}{self.counter}"

    def const(self, stem: str, value: Any) -> str:
        name = self.name(stem)
        self.namespace[name] = value
        return name

    def cached(self, kind: str, tag: bytes) -> tuple[str, str]:
        """Names of the (cache lookup, writer) of strings or longs after `tag` (one pair per
        writer and tag: the records of a schema share them)."""
        found = self.writers.get((kind, tag))
        if found is None:
            get, write = (_string_writer if kind == "string" else _long_writer)(tag)
            found = self.writers[(kind, tag)] = (self.const("get", get), self.const("w", write))
        return found

    def pack(self, layout: str, tag: bytes) -> str:
        """Name of the `struct` packer of a float/double, after a one-byte `tag` if any."""
        layout = f"<B{layout[1:]}" if tag else layout
        found = self.packers.get(layout)
        if found is None:
            found = self.packers[layout] = self.const("pack", struct.Struct(layout).pack)
        return found

    def resolve(self, schema: Any) -> tuple[str, Any]:
        """(type, definition) with the names of named types resolved."""
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema, schema
            if schema in self.named:
                return self.resolve(self.named[schema])
            raise Unsupported(f"unknown named type {schema}")
        if isinstance(schema, list):
            return "union", schema
        if not isinstance(schema, Mapping):
            raise Unsupported(f"schema {schema!r}")
        if "logicalType" in schema:
            raise Unsupported(f"logical type {schema['logicalType']}")
        kind = schema.get("type")
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return kind, schema
        if kind in ("record", "enum", "fixed"):
            name = schema.get("name")
            if not isinstance(name, str):
                raise Unsupported(f"{kind} without a name")
            self.named.setdefault(name, schema)
            return kind, schema
        if kind in ("array", "map"):
            return kind, schema
        raise Unsupported(f"type {kind!r}")

    def inline(self, schema: Any, v: str, tag: bytes = b"") -> list[str]:
        """Expressions whose bytes, in order, are `tag` then the encoding of the value of the
        local `v` (a union's branch index is the `tag` of its branch)."""
        kind, definition = self.resolve(schema)
        if kind == "string":
            get, write = self.cached("string", tag)
            return [f"({get}({v}) or {write}({v}))"]
        if kind == "long":
            get, write = self.cached("long", tag)
            return [f"(({get}({v}) or {write}({v})) if type({v}) is int else _reject())"]
        if kind == "enum":
            symbols = definition["symbols"]
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                raise Unsupported("enum symbols")
            table = {s: tag + varint(zigzag(i)) for i, s in enumerate(symbols)}
            return [f"{self.const('enum', table)}[{v}]"]
        if kind in ("double", "float") and len(tag) <= 1:
            pack = self.pack(("<d" if kind == "double" else "<f"), tag)
            args = f"{tag[0]}, " if tag else ""
            return [f"({pack}({args}{v}) if type({v}) is float else {pack}({args}_as_float({v})))"]
        head = [self.const("tag", tag)] if tag else []
        if kind == "null":
            return [*head, f'(b"" if {v} is None else _reject())']
        if kind == "boolean":
            return [
                *head,
                f'(b"\\x01" if {v} is True else b"\\x00" if {v} is False else _reject())',
            ]
        if kind == "int":
            return [*head, f"_int({v})"]
        if kind == "bytes":
            return [*head, f"(_size(len({v})) if type({v}) is bytes else _reject())", v]
        if kind == "fixed":
            size = definition["size"]
            return [*head, f"({v} if type({v}) is bytes and len({v}) == {size!r} else _reject())"]
        if kind == "union":
            if tag:
                raise Unsupported("union in a union")
            return [self.union(definition, v)]
        return [*head, f"{self.function(kind, definition)}({v})"]

    def union(self, branches: list[Any], v: str) -> str:
        kinds = [self.resolve(branch)[0] for branch in branches]
        if len(kinds) != 2 or "null" not in kinds:
            raise Unsupported(f"union {branches!r}")
        index = 1 - kinds.index("null")
        if kinds[index] not in _UNION_BRANCHES:
            raise Unsupported(f"union {branches!r}")
        parts = self.inline(branches[index], v, varint(zigzag(index)))
        value = parts[0] if len(parts) == 1 else f"b''.join(({', '.join(parts)}))"
        return f"({varint(zigzag(1 - index))!r} if {v} is None else {value})"

    def function(self, kind: str, definition: Mapping[str, Any]) -> str:
        """The name of a generated function writing one record, array or map value."""
        if kind == "record":
            return self.record(definition)
        fn = self.name(kind)
        if kind == "array":
            parts = self.inline(definition["items"], "x")
            loop = "for x in a"
            check = "type(a) is not list"
        elif kind == "map":
            parts = [*self.inline("string", "k"), *self.inline(definition["values"], "x")]
            loop = "for k, x in a.items()"
            check = "type(a) is not dict"
        else:
            raise Unsupported(f"type {kind!r}")
        item = parts[0] if len(parts) == 1 else f"b''.join(({', '.join(parts)}))"
        self.lines += [
            f"def {fn}(a):",
            f"    if {check}:",
            "        _reject()",
            "    if not a:",
            '        return b"\\x00"',
            f'    return b"".join((_size(len(a)), *[{item} {loop}], b"\\x00"))',
        ]
        return fn

    def record(self, definition: Mapping[str, Any], prefix: bool = False) -> str:
        full_name = definition["name"]
        if full_name in self.functions:
            return self.functions[full_name]
        if full_name in self.pending:
            raise Unsupported(f"recursive record {full_name}")
        if definition.get("type") != "record":
            raise Unsupported(f"{definition.get('type')} {full_name}")
        self.pending.add(full_name)
        fields = definition["fields"]
        names = [field["name"] for field in fields]
        if not all(isinstance(name, str) for name in names):
            raise Unsupported(f"field names of {full_name}")
        values = [f"f{i}" for i in range(len(fields))]
        parts = ["_PREFIX"] if prefix else []
        for field, value in zip(fields, values, strict=True):
            parts += self.inline(field["type"], value)
        fn = self.name("record")
        body = [f"def {fn}(r):", "    if type(r) is not dict:", "        _reject()"]
        if len(fields) == 1:
            body.append(f"    f0 = r[{names[0]!r}]")
        elif fields:
            body.append(f"    {', '.join(values)} = {self.const('get', itemgetter(*names))}(r)")
        body.append(f"    return b''.join(({', '.join(parts)},))" if parts else "    return b''")
        self.lines += body
        self.pending.discard(full_name)
        self.functions[full_name] = fn
        return fn


def compile_writer(parsed: Mapping[str, Any], prefix: bytes = b"") -> Writer | None:
    """A function writing `prefix` + the Avro body of a record of the parsed record schema;
    None when the schema has constructs the generated writers do not handle."""
    compiler = _Compiler(prefix)
    for name, definition in (parsed.get("__named_schemas") or {}).items():
        compiler.named.setdefault(name, definition)
    try:
        if compiler.resolve(parsed)[0] != "record":
            return None
        fn = compiler.record(parsed, prefix=True)
    except Unsupported:
        return None
    source = "\n".join(compiler.lines) + "\n"
    exec(compile(source, f"<avro writer {parsed['name']}>", "exec"), compiler.namespace)  # noqa: S102
    writer: Writer = compiler.namespace[fn]
    return writer
