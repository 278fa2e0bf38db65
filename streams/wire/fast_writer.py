"""Schema-specialised Avro binary writers: the output records' hot encoding path.

`compile_writer(parsed, prefix)` turns a parsed (fastavro `parse_schema`) record schema into a
writer that returns `prefix` + the Avro body of a record. The writer is composed once per schema
of plain closures and bound C methods, one encoder per field (no generated source): everything
that depends on the schema alone is decided when it is built (the field getter, union branch
bytes, enum tables, `struct` packers), so a record costs one `itemgetter` call, the field
encoders mapped over its values and one `b"".join`, with no per-call schema walk. Strings, enum
symbols and nulls are encoded by dict lookups (no Python call when they hit); ints, longs,
floats, doubles and booleans by small closures that check the value's exact type first. The
encodings of strings and longs are kept (bounded caches per writer): output records repeat a few
strings (levels, units, services, KPI ids, window starts) and timestamps (window starts,
publication times).

The writer is a fast path, not a second implementation of Avro: it takes only values of exactly
the type the schema asks for (`int` for int/long, in range; `float` or `int` for float/double;
`str` or a subclass, written as its string value, for strings; `bool` for booleans; `bytes` for
bytes/fixed, of the fixed size; `list` for arrays; `dict` for maps (with `str` keys) and
records; None for null branches; a symbol for enums), every field present. Anything else — a
missing field that takes its default, a None where null is not allowed, a numpy scalar, a
tuple-notation union value, an int out of range — raises, and the caller
(`streams.wire.codec.encode`) hands the record to fastavro (validated first). For what it takes,
the bytes are exactly fastavro's `schemaless_writer` bytes (`tests/wire/test_fast_writer.py`
checks that over generated records of every schema in `schemas/` and of every Avro type).

Schemas with constructs not handled here (logical types, unions other than null + one of
boolean/int/long/float/double/bytes/string/enum/fixed, recursive records) get no writer:
`compile_writer` returns None and every record of them goes to fastavro. One encoder per
Avro type, each small; they are one module because they compose into one writer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from itertools import chain
from operator import call, itemgetter
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
# encodings kept per writer and per union branch, of strings and of ints and longs (emptied
# when full)
_CACHE_SIZE: Final = 4096
_CACHED_CHARS: Final = 128


class Unsupported(Exception):
    """The schema uses a construct the writers do not handle."""


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


class _Table(dict[Any, bytes]):
    """Fixed encodings (enum symbols, null): any other value raises Rejected."""

    __slots__ = ()

    def __missing__(self, value: Any) -> bytes:
        raise Rejected


class _Strings(dict[Any, bytes]):
    """Encodings of strings after the union branch `tag` (and of None as the union's `null`
    branch, if any): `cache[value]` is the encoding of `value`, computed when missing and kept
    if short; any other value raises."""

    __slots__ = ("null", "tag")

    def __init__(self, tag: bytes, null: bytes | None) -> None:
        super().__init__()
        self.tag, self.null = tag, null
        if null is not None:
            self[None] = null

    def __missing__(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise Rejected
        # str.encode, not value.encode(): a str subclass is written as its string value
        data = str.encode(value)
        encoded = b"".join((self.tag, _size(len(data)), data))
        if len(value) <= _CACHED_CHARS:
            if len(self) >= _CACHE_SIZE:
                self.clear()
                if self.null is not None:
                    self[None] = self.null
            self[value] = encoded
        return encoded


class _Ints(dict[int, bytes]):
    """Encodings of ints or longs after the union branch `tag`, as `_Strings`. Looked up only
    with values of type int (True == 1 and 1.0 == 1 as dict keys): see `_int_writer`."""

    __slots__ = ("high", "low", "tag")

    def __init__(self, tag: bytes, low: int, high: int) -> None:
        super().__init__()
        self.tag, self.low, self.high = tag, low, high

    def __missing__(self, value: int) -> bytes:
        if not self.low <= value <= self.high:
            raise Rejected
        encoded = self.tag + varint((value << 1) ^ (value >> 63))
        if len(self) >= _CACHE_SIZE:
            self.clear()
        self[value] = encoded
        return encoded


class _Builder:
    """Builds the encoders of one record schema: each takes a value of any type and returns
    its encoding, or raises for a value the fast path does not take."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}  # full name -> definition
        self.records: dict[str, Writer] = {}  # full record name -> its writer
        self.pending: set[str] = set()
        self.caches: dict[tuple[str, bytes], _Strings | _Ints] = {}

    def cache(self, kind: str, tag: bytes, null: bytes | None) -> _Strings | _Ints:
        """The cache of strings, ints or longs after `tag` (one per writer and tag: the
        records of a schema share them; a union's null branch follows from its `tag`)."""
        found = self.caches.get((kind, tag))
        if found is None:
            if kind == "string":
                found = _Strings(tag, null)
            elif kind == "long":
                found = _Ints(tag, LONG_MIN, LONG_MAX)
            else:
                found = _Ints(tag, INT_MIN, INT_MAX)
            self.caches[(kind, tag)] = found
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

    def encoder(self, schema: Any, tag: bytes = b"", null: bytes | None = None) -> Writer:
        """The encoder of values of `schema`, each encoding after `tag`; in a union, `tag` is
        the index of the branch of `schema` and `null` the encoding of the null branch."""
        kind, definition = self.resolve(schema)
        if kind == "string":
            return self.cache(kind, tag, null).__getitem__
        if kind in ("long", "int"):
            return _int_writer(self.cache(kind, tag, null).__getitem__, null)
        if kind in ("double", "float"):
            layout = "d" if kind == "double" else "f"
            if tag:  # (a one-byte branch index: a union has two branches)
                return _float_branch_writer(struct.Struct(f"<B{layout}").pack, tag[0], null)
            return _float_writer(struct.Struct(f"<{layout}").pack)
        if kind == "null":
            return _Table({None: b""}).__getitem__
        if kind == "boolean":
            return _bool_writer(tag + b"\x01", tag + b"\x00", null)
        if kind == "enum":
            symbols = definition["symbols"]
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                raise Unsupported("enum symbols")
            table = _Table({s: tag + varint(zigzag(i)) for i, s in enumerate(symbols)})
            if null is not None:
                table[None] = null
            return table.__getitem__
        if kind == "bytes":
            return _bytes_writer(tag, null)
        if kind == "fixed":
            return _fixed_writer(tag, definition["size"], null)
        if kind == "union":
            if tag:
                raise Unsupported("union in a union")
            return self.union(definition)
        if kind == "record":
            return self.record(definition)
        if kind == "array":
            return _array_writer(self.encoder(definition["items"]))
        if kind == "map":
            keys = self.cache("string", b"", None).__getitem__
            return _map_writer(keys, self.encoder(definition["values"]))
        raise Unsupported(f"type {kind!r}")

    def union(self, branches: list[Any]) -> Writer:
        kinds = [self.resolve(branch)[0] for branch in branches]
        if len(kinds) != 2 or "null" not in kinds:
            raise Unsupported(f"union {branches!r}")
        index = 1 - kinds.index("null")
        if kinds[index] not in _UNION_BRANCHES:
            raise Unsupported(f"union {branches!r}")
        return self.encoder(branches[index], varint(zigzag(index)), varint(zigzag(1 - index)))

    def record(self, definition: Mapping[str, Any], prefix: bytes | None = None) -> Writer:
        """The writer of a record (`prefix` + the body, for the top-level record)."""
        full_name = definition["name"]
        if prefix is None and full_name in self.records:
            return self.records[full_name]
        if full_name in self.pending:
            raise Unsupported(f"recursive record {full_name}")
        if definition.get("type") != "record":
            raise Unsupported(f"{definition.get('type')} {full_name}")
        self.pending.add(full_name)
        fields = definition["fields"]
        names = [field["name"] for field in fields]
        if not all(isinstance(name, str) for name in names):
            raise Unsupported(f"field names of {full_name}")
        encoders = tuple(self.encoder(field["type"]) for field in fields)
        writer = _record_writer(names, encoders, b"" if prefix is None else prefix)
        self.pending.discard(full_name)
        if prefix is None:
            self.records[full_name] = writer
        return writer


def _record_writer(names: list[str], encoders: tuple[Writer, ...], prefix: bytes) -> Writer:
    if not names:

        def write_empty(record: Any) -> bytes:
            if type(record) is not dict:
                raise Rejected
            return prefix

        return write_empty
    if len(names) == 1:
        (name,), (encode,) = names, encoders

        def write_one(record: Any) -> bytes:
            if type(record) is not dict:
                raise Rejected
            return prefix + encode(record[name])

        return write_one
    join, values = b"".join, itemgetter(*names)

    def write_record(record: Any) -> bytes:
        if type(record) is not dict:
            raise Rejected
        # a list, not a tuple: `join` takes it as is
        return join([prefix, *map(call, encoders, values(record))])

    return write_record


def _array_writer(items: Writer) -> Writer:
    join = b"".join

    def write_array(array: Any) -> bytes:
        if type(array) is not list:
            raise Rejected
        if not array:
            return b"\x00"
        return join([_size(len(array)), *map(items, array), b"\x00"])

    return write_array


def _map_writer(keys: Writer, values: Writer) -> Writer:
    join = b"".join

    def write_map(mapping: Any) -> bytes:
        if type(mapping) is not dict:
            raise Rejected
        if not mapping:
            return b"\x00"
        pairs = zip(map(keys, mapping), map(values, mapping.values()), strict=True)
        return join([_size(len(mapping)), *chain.from_iterable(pairs), b"\x00"])

    return write_map


def _int_writer(lookup: Writer, null: bytes | None) -> Writer:
    if null is None:

        def write_int(value: Any) -> bytes:
            if type(value) is int:
                return lookup(value)
            raise Rejected

        return write_int

    def write_int_branch(value: Any) -> bytes:
        if type(value) is int:
            return lookup(value)
        if value is None:
            return null
        raise Rejected

    return write_int_branch


def _float_writer(pack: Callable[[float], bytes]) -> Writer:
    def write_float(value: Any) -> bytes:
        if type(value) is float or type(value) is int:  # an int is written as a float
            return pack(value)
        raise Rejected

    return write_float


def _float_branch_writer(
    pack: Callable[[int, float], bytes], index: int, null: bytes | None
) -> Writer:
    def write_float_branch(value: Any) -> bytes:
        if type(value) is float or type(value) is int:
            return pack(index, value)
        if value is None and null is not None:
            return null
        raise Rejected

    return write_float_branch


def _bool_writer(true: bytes, false: bytes, null: bytes | None) -> Writer:
    def write_bool(value: Any) -> bytes:
        if value is True:
            return true
        if value is False:
            return false
        if value is None and null is not None:
            return null
        raise Rejected

    return write_bool


def _bytes_writer(tag: bytes, null: bytes | None) -> Writer:
    def write_bytes(value: Any) -> bytes:
        if type(value) is bytes:
            return b"".join((tag, _size(len(value)), value))
        if value is None and null is not None:
            return null
        raise Rejected

    return write_bytes


def _fixed_writer(tag: bytes, size: Any, null: bytes | None) -> Writer:
    def write_fixed(value: Any) -> bytes:
        if type(value) is bytes and len(value) == size:
            return tag + value
        if value is None and null is not None:
            return null
        raise Rejected

    return write_fixed


def compile_writer(parsed: Mapping[str, Any], prefix: bytes = b"") -> Writer | None:
    """A function writing `prefix` + the Avro body of a record of the parsed record schema;
    None when the schema has constructs the writers do not handle."""
    builder = _Builder()
    for name, definition in (parsed.get("__named_schemas") or {}).items():
        builder.named.setdefault(name, definition)
    try:
        if builder.resolve(parsed)[0] != "record":
            return None
        return builder.record(parsed, prefix)
    except Unsupported:
        return None
