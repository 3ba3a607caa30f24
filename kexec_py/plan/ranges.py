"""Half-open physical address ranges and the small algebra placement needs.

Ranges are ``[start, end)``. Inclusive bounds (as /proc/iomem and
/sys/firmware/memmap print them) enter only through ``Range.from_inclusive``.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter

_new, _set = object.__new__, object.__setattr__

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def align_up(value: int, align: int) -> int:
    return -(-value // align) * align


def align_down(value: int, align: int) -> int:
    return value // align * align


class Range:
    """A frozen value ordered by (start, end), written out rather than a dataclass
    (``kexec_py.record`` says why: every command imports this module)."""

    __slots__ = ("start", "end")

    def __init__(self, start: int, end: int) -> None:
        if end < start:
            raise ValueError(f"range end {end:#x} before start {start:#x}")
        _set(self, "start", start)
        _set(self, "end", end)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field {name!r}")

    def __eq__(self, other):
        if other.__class__ is not Range:
            return NotImplemented
        return self.start == other.start and self.end == other.end

    def __hash__(self):
        return hash((self.start, self.end))

    def __lt__(self, other):
        if other.__class__ is not Range:
            return NotImplemented
        return (self.start, self.end) < (other.start, other.end)

    def __le__(self, other):
        if other.__class__ is not Range:
            return NotImplemented
        return (self.start, self.end) <= (other.start, other.end)

    def __gt__(self, other):
        if other.__class__ is not Range:
            return NotImplemented
        return (self.start, self.end) > (other.start, other.end)

    def __ge__(self, other):
        if other.__class__ is not Range:
            return NotImplemented
        return (self.start, self.end) >= (other.start, other.end)

    def __reduce__(self):
        return (Range, (self.start, self.end))

    @classmethod
    def from_inclusive(cls, start: int, last: int) -> "Range":
        return cls(start, last + 1)

    @classmethod
    def sized(cls, start: int, size: int) -> "Range":
        return cls(start, start + size)

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def last(self) -> int:
        """The inclusive end, as /proc/iomem prints it."""
        return self.end - 1

    def __bool__(self) -> bool:
        return self.end > self.start

    def contains(self, other: "Range | int") -> bool:
        if isinstance(other, int):
            return self.start <= other < self.end
        return self.start <= other.start and other.end <= self.end

    def overlaps(self, other: "Range") -> bool:
        return self.start < other.end and other.start < self.end

    def intersect(self, other: "Range") -> "Range | None":
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Range(start, end) if start < end else None

    def minus(self, other: "Range") -> list["Range"]:
        if not self.overlaps(other):
            return [self]
        out = []
        if self.start < other.start:
            out.append(Range(self.start, other.start))
        if other.end < self.end:
            out.append(Range(other.end, self.end))
        return out

    def __repr__(self) -> str:
        return f"Range[{self.start:#x}, {self.end:#x})"


def trusted_range(start: int, end: int) -> Range:
    """``Range(start, end)`` without the check, for callers that know ``start <= end``
    (parsers and the algebra below, which make hundreds of thousands)."""
    r = _new(Range)
    _set(r, "start", start)
    _set(r, "end", end)
    return r


def subtract(ranges: Iterable[Range], holes: Iterable[Range]) -> list[Range]:
    """Every address of ``ranges`` that is in none of ``holes``, sorted and merged.

    Linear in the number of ranges plus holes (after sorting), so 100k-range
    memory maps stay fast; a range no hole touches is returned as it is.
    """
    src = merge(ranges)
    cut = merge(holes)
    out: list[Range] = []
    j, n = 0, len(cut)
    for r in src:
        start, end = r.start, r.end
        while j < n and cut[j].end <= start:
            j += 1
        if j == n or cut[j].start >= end:
            out.append(r)                     # untouched
            continue
        k = j
        while k < n and cut[k].start < end:
            if cut[k].start > start:
                out.append(trusted_range(start, cut[k].start))
            start = max(start, cut[k].end)
            k += 1
        if start < end:
            out.append(trusted_range(start, end))
    return out


_ORDER = attrgetter("start")     # ties in start may come in any order: both are merged


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sort and coalesce overlapping or touching ranges (empty ones are dropped)."""
    out: list[Range] = []
    last = None
    for r in sorted([x for x in ranges if x.end > x.start], key=_ORDER):
        if last is not None and r.start <= last.end:
            if r.end > last.end:
                last = out[-1] = trusted_range(last.start, r.end)
        else:
            out.append(r)
            last = r
    return out
