"""Finding holes for segments inside the memory a plan may use."""

from __future__ import annotations

from kexec_py.errors import NoSpace
from kexec_py.plan.ranges import Range, align_down, align_up, subtract
from kexec_py.record import REQUIRED, Record, factory


class Placement(Record):
    _defaults = dict(
        size=REQUIRED,                  # int
        align=1,                        # int  at least the allocator's page size in any case
        min_addr=0,                     # int
        max_addr=(1 << 64) - 1,         # int  the segment must end at or below this (exclusive end)
        top_down=True,                  # bool
    )
    __slots__ = tuple(_defaults)


class Allocator(Record):
    """Hands out non-overlapping ranges from ``free``, each aligned to and a multiple of
    ``page_size`` (the running kernel's: it refuses segments that are not). Lives inside
    one plan call."""

    _defaults = dict(
        free=REQUIRED,                  # list[Range]
        page_size=REQUIRED,             # int
        taken=factory(list),            # list[Range]
    )
    __slots__ = tuple(_defaults)
    _frozen = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.page_size < 4096 or self.page_size & (self.page_size - 1):
            raise ValueError(f"page size {self.page_size:#x} is not a power of two of at least 4 KiB")

    def take(self, what: str, p: Placement) -> Range:
        align = max(p.align, self.page_size)
        size = align_up(p.size, self.page_size)
        holes = subtract(self.free, self.taken)
        ordered = reversed(holes) if p.top_down else holes
        for hole in ordered:
            lo = max(hole.start, p.min_addr)
            hi = min(hole.end, p.max_addr)
            start = align_down(hi - size, align) if p.top_down else align_up(lo, align)
            if start >= lo and start + size <= hi:
                r = Range.sized(start, size)
                self.taken.append(r)
                return r
        total = sum(h.size for h in holes)
        raise NoSpace(f"no room for the {what} ({size:#x} bytes, align {align:#x}) in "
                      f"{', '.join(f'{h.start:#x}-{h.last:#x}' for h in self.free)}; "
                      f"{total:#x} bytes are still free there",
                      "reserve more memory with crashkernel= or use a smaller initrd", what=what)

    def reserve(self, r: Range) -> None:
        self.taken.append(r)
