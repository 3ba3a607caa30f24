"""Finding holes for segments inside the memory a plan may use."""

from __future__ import annotations

from dataclasses import dataclass, field

from kexec_py.errors import NoSpace
from kexec_py.plan.ranges import Range, align_down, align_up, subtract


@dataclass(frozen=True, slots=True)
class Placement:
    size: int
    align: int = 1                    # at least the allocator's page size in any case
    min_addr: int = 0
    max_addr: int = (1 << 64) - 1     # the segment must end at or below this (exclusive end)
    top_down: bool = True


@dataclass(slots=True)
class Allocator:
    """Hands out non-overlapping ranges from ``free``, each aligned to and a multiple of
    ``page_size`` (the running kernel's: it refuses segments that are not). Lives inside
    one plan call."""

    free: list[Range]
    page_size: int
    taken: list[Range] = field(default_factory=list)

    def __post_init__(self) -> None:
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
