"""Finding holes for segments inside the memory a plan may use."""

from __future__ import annotations

from dataclasses import dataclass, field

from kexec_py.errors import NoSpace
from kexec_py.plan.ranges import PAGE_SIZE, Range, align_down, align_up, subtract


@dataclass(frozen=True, slots=True)
class Placement:
    size: int
    align: int = PAGE_SIZE
    min_addr: int = 0
    max_addr: int = (1 << 64) - 1     # the segment must end at or below this (exclusive end)
    top_down: bool = True


@dataclass(slots=True)
class Allocator:
    """Hands out non-overlapping page-aligned ranges from ``free``. Lives inside one plan call."""

    free: list[Range]
    taken: list[Range] = field(default_factory=list)

    def take(self, what: str, p: Placement) -> Range:
        align = max(p.align, PAGE_SIZE)
        size = align_up(p.size, PAGE_SIZE)
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
        err = NoSpace(f"no room for the {what} ({size:#x} bytes, align {align:#x}) in "
                      f"{', '.join(f'{h.start:#x}-{h.last:#x}' for h in self.free)}; "
                      f"{total:#x} bytes are still free there",
                      "reserve more memory with crashkernel= or use a smaller initrd")
        err.what = what
        raise err

    def reserve(self, r: Range) -> None:
        self.taken.append(r)
