"""What the readers need from a construct definition besides parse and build.

* ``offset_of`` / ``read_field``: where a field of a fixed-size Struct sits, and
  that one field's value, without parsing (or hand-copying the offset of) the
  rest: boot_params is 4 KiB and its full parse takes about 2.3 ms, its
  acpi_rsdp_addr alone a few microseconds.
* ``fast_struct``: the ``struct.Struct`` that packs and unpacks a flat Struct of
  fixed-size integers, byte strings and padding, derived from the definition
  (never written by hand), for the loops that run thousands of times (program
  headers): construct takes about 16 us to build and 18 us to parse one ELF64
  program header, struct about 0.15 us (measured on the project's 2-core
  machine). The modules that use it say where; tests/structs and the modules'
  own tests check both forms agree on generated inputs.

Malformed input: ``read_field`` raises construct's StreamError when ``data`` is
too short (like ``parse`` does; or gives its ``default``), ConstError for a Const
field that does not match; callers turn those into their own errors.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from construct import Bytes, Const, FormatField, Padded, Pass, Renamed, StreamError, Struct


def _fields(s: Struct):
    """(name or None, subcon without its name) of each member of ``s``."""
    for sc in s.subcons:
        yield (sc.name, sc.subcon) if isinstance(sc, Renamed) else (None, sc)


@lru_cache(maxsize=None)
def offset_of(s: Struct, name: str) -> int:
    """The byte offset of field ``name`` in the fixed-size Struct ``s``."""
    at = 0
    for field, sub in _fields(s):
        if field == name:
            return at
        at += sub.sizeof()
    raise KeyError(f"no field {name!r} in this Struct")


@lru_cache(maxsize=None)
def _field(s: Struct, name: str):
    for field, sub in _fields(s):
        if field == name:
            return offset_of(s, name), sub, sub.sizeof()
    raise KeyError(f"no field {name!r} in this Struct")


_RAISE = object()


def read_field(s: Struct, name: str, data, at: int = 0, *, default=_RAISE):
    """The value of field ``name`` of an ``s`` that starts at ``data[at]``; ``default``
    when ``data`` ends before the field does (without it, StreamError)."""
    offset, sub, size = _field(s, name)
    start = at + offset
    raw = bytes(data[start:start + size]) if start >= 0 else b""
    if len(raw) != size:
        if default is not _RAISE:
            return default
        raise StreamError(f"{name}: {size} bytes at {start:#x} needed, {len(raw)} there")
    return sub.parse(raw)


class FastStruct:
    """A ``struct.Struct`` equivalent of a flat construct Struct: ``names`` are its named
    fields in order, the values ``struct.unpack`` gives and ``pack`` takes."""

    __slots__ = ("struct", "names", "byteorder")

    def __init__(self, fast: struct.Struct, names: tuple[str, ...], byteorder: str):
        self.struct = fast
        self.names = names
        self.byteorder = byteorder              # "little" or "big"

    @property
    def size(self) -> int:
        return self.struct.size

    def __repr__(self) -> str:
        return f"<FastStruct {self.struct.format!r} {' '.join(self.names)}>"


@lru_cache(maxsize=None)
def fast_struct(s: Struct) -> FastStruct:
    """The struct.Struct with the same layout as ``s`` (see the module doc). Only fixed-size
    integers (one byte order), Bytes, Const byte strings and Padding are taken; a Const's
    value is not checked by the struct form."""
    codes, names, orders = [], [], set()
    for name, sub in _fields(s):
        if isinstance(sub, Const):
            sub = sub.subcon
        if isinstance(sub, FormatField):
            order, code = sub.fmtstr[0], sub.fmtstr[1:]
            if code not in "bBhHiIlLqQ" or order not in "<>":
                raise TypeError(f"{name}: format {sub.fmtstr!r} has no fixed struct form")
            if code not in "bB":
                orders.add(order)
        elif isinstance(sub, Bytes) and isinstance(sub.length, int):
            code = f"{sub.length}s"
        elif isinstance(sub, Padded) and sub.subcon is Pass and isinstance(sub.length, int) \
                and name is None:
            codes.append(f"{sub.length}x")
            continue
        else:
            raise TypeError(f"{name}: {sub!r} has no struct form")
        if name is None:
            raise TypeError(f"an unnamed {sub!r} has no struct form")
        codes.append(code)
        names.append(name)
    if len(orders) > 1:
        raise TypeError("fields of both byte orders")
    order = orders.pop() if orders else "<"
    fast = struct.Struct(order + "".join(codes))
    if fast.size != s.sizeof():
        raise TypeError(f"struct form is {fast.size} bytes, the Struct {s.sizeof()}")
    return FastStruct(fast, tuple(names), "little" if order == "<" else "big")
