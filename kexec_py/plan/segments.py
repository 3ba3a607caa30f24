"""The checks the kernel makes on a kexec_load segment list, made before we call it.

Both syscalls free an already loaded crash kernel before they look at the new
one, so anything the kernel would refuse must be refused here first: a failed
reload must not leave the machine without a crash kernel.
"""

from __future__ import annotations

from kexec_py.errors import PlacementError
from kexec_py.plan.plan import SegmentPlan
from kexec_py.plan.ranges import PAGE_SIZE, merge
from kexec_py.structs.kexec_uapi import KEXEC_SEGMENT_MAX


def check_plan(plan: SegmentPlan) -> None:
    segs = sorted(plan.segments, key=lambda s: s.mem)
    if not segs:
        raise PlacementError("the plan has no segments")
    if len(segs) > KEXEC_SEGMENT_MAX:
        raise PlacementError(f"{len(segs)} segments, the kernel takes at most {KEXEC_SEGMENT_MAX}")
    allowed = merge(plan.allowed)
    for s in segs:
        if s.mem % PAGE_SIZE or s.memsz % PAGE_SIZE:
            raise PlacementError(f"{s.name} segment at {s.mem:#x}+{s.memsz:#x} is not page aligned")
        if s.bufsz > s.memsz:
            raise PlacementError(f"{s.name} segment has {s.bufsz:#x} bytes but only {s.memsz:#x} of memory")
        if allowed and not any(a.contains(s.range) for a in allowed):
            raise PlacementError(f"{s.name} segment {s.mem:#x}-{s.mem + s.memsz - 1:#x} lies outside "
                                 "the memory the kernel will accept",
                                 "for -p every segment must be inside the 'Crash kernel' region")
    for a, b in zip(segs, segs[1:]):
        if a.range.overlaps(b.range):
            raise PlacementError(f"{a.name} and {b.name} segments overlap")
    if not any(s.range.contains(plan.entry) for s in segs):
        raise PlacementError(f"entry point {plan.entry:#x} is in no segment")
