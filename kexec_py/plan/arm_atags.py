"""ATAGs (``--atags``): the tagged list a 32-bit arm kernel reads when it is booted
without a device tree.

What goes in it, as kexec-tools 2.0.25 does it: every tag of the running kernel's
/proc/atags (the list its boot loader gave it, ATAG_NONE included) except the initrd
(ATAG_INITRD, ATAG_INITRD2) and the command line (ATAG_CMDLINE), which are the new
kernel's own: ATAG_INITRD2 (physical start, size in bytes) when there is an initrd,
ATAG_CMDLINE (the line, NUL-terminated, padded to a word) when there is a command line,
then ATAG_NONE. The memory tags are copied as they are, for -p too: the capture
kernel's ``mem=`` (on its command line) replaces what they describe. Without
/proc/atags (a kernel built without CONFIG_ATAGS_PROC) the list is ATAG_CORE without
data and one ATAG_MEM per System RAM range below 4 GiB (kexec-tools takes
/proc/device-tree/memory/reg instead, which a board without a device tree lacks).

Where: the arm kernel's machine_kexec starts the new kernel with r2 = the first address
of the segment that starts with the device tree magic, else the entry point - 0x8000 +
0x1000 (KEXEC_ARM_ZIMAGE_OFFSET, KEXEC_ARM_ATAGS_OFFSET: "RAM base + 0x1000" for a kernel
at the usual TEXT_OFFSET 0x8000). So the list goes exactly there, 0x7000 below the
zImage, and no segment may start with d00dfeed. (kexec-tools puts it at RAM base + 0x1000
with the zImage at RAM base + 0x8000: the same 0x7000 below the entry.)
"""

from __future__ import annotations

from typing import Sequence

from construct import ConstructError

from kexec_py.errors import SnapshotError, UsageError
from kexec_py.plan.ranges import Range
from kexec_py.structs import arm as S

ZIMAGE_OFFSET = 0x8000          # KEXEC_ARM_ZIMAGE_OFFSET: where machine_kexec assumes the zImage is above RAM's start
ATAGS_OFFSET = 0x1000           # KEXEC_ARM_ATAGS_OFFSET: where it assumes the tagged list is
COMMAND_LINE_SIZE = 1024        # the arm kernel's, NUL included
# The list must end below the kernel's first page tables: the new kernel's swapper_pg_dir lies
# 16 KiB (20 KiB with LPAE) below its text, and the zImage is 0x7000 above the list.
MAX_ATAGS = ZIMAGE_OFFSET - ATAGS_OFFSET - 0x5000
DROPPED = (S.ATAG_INITRD, S.ATAG_INITRD2, S.ATAG_CMDLINE)


def atags_address(entry: int) -> int:
    """Where the arm kernel's machine_kexec points r2 when no segment holds a device tree."""
    return entry - ZIMAGE_OFFSET + ATAGS_OFFSET


def parse_atags(raw: bytes, *, what: str = "/proc/atags") -> list[tuple[int, bytes]]:
    """The (tag, data) pairs of a tagged list, up to (without) its ATAG_NONE."""
    tags, at = [], 0
    while True:
        if at + S.atag_header.sizeof() > len(raw):
            raise SnapshotError(f"{what}: the tagged list ends at byte {at} without ATAG_NONE",
                                "the running kernel's /proc/atags is cut short: boot with a device tree instead")
        head = S.atag_header.parse(raw[at:])
        if head.size == 0:
            break
        if head.size < S.ATAG_HEADER_WORDS or at + head.size * 4 > len(raw):
            raise SnapshotError(f"{what}: tag {head.tag:#x} at byte {at} says {head.size} words, "
                                f"which does not fit in its {len(raw)} bytes",
                                "the running kernel's /proc/atags is damaged: boot with a device tree instead")
        try:
            tag = S.atag.parse(raw[at:at + head.size * 4])
        except ConstructError as e:
            raise SnapshotError(f"{what}: tag at byte {at}: {e}") from None
        tags.append((tag.tag, bytes(tag.data)))
        at += head.size * 4
    if not tags or tags[0][0] != S.ATAG_CORE:
        raise SnapshotError(f"{what}: the tagged list does not start with ATAG_CORE",
                            "the kernel takes no other list: boot with a device tree instead")
    return tags


def _tag(tag: int, data: bytes) -> bytes:
    return S.atag.build(dict(size=S.ATAG_HEADER_WORDS + len(data) // 4, tag=tag, data=data))


def build_atags(saved: Sequence[tuple[int, bytes]] | None, *, cmdline: str | None, initrd: Range | None,
                ram: Sequence[Range]) -> bytes:
    """The new kernel's tagged list. ``saved``: the running kernel's tags (``parse_atags``),
    or None to describe ``ram`` instead; ``initrd``: the initrd's bytes in memory."""
    if saved is None:
        below = [r for r in ram if r.end <= 1 << 32]
        if not below:
            raise SnapshotError("no System RAM below 4 GiB to describe in ATAG_MEM (and no /proc/atags)")
        out = [_tag(S.ATAG_CORE, b"")]
        out += [_tag(S.ATAG_MEM, S.atag_mem32.build(dict(size=r.size, start=r.start))) for r in below]
    else:
        out = [_tag(tag, data) for tag, data in saved if tag not in DROPPED]
    if initrd is not None:
        out.append(_tag(S.ATAG_INITRD2, S.atag_initrd2.build(dict(start=initrd.start, size=initrd.size))))
    if cmdline is not None:
        line = cmdline.encode() + b"\0"
        if len(line) > COMMAND_LINE_SIZE:
            raise UsageError(f"the command line is {len(line) - 1} bytes; with --atags the arm kernel takes "
                             f"at most {COMMAND_LINE_SIZE - 1}", "shorten --append/--command-line")
        out.append(_tag(S.ATAG_CMDLINE, line + bytes(-len(line) % 4)))
    out.append(S.atag_header.build(dict(size=0, tag=S.ATAG_NONE)))
    blob = b"".join(out)
    if len(blob) > MAX_ATAGS:
        raise UsageError(f"the tagged list is {len(blob)} bytes; it must end below the new kernel's page "
                         f"tables ({MAX_ATAGS} bytes)", "shorten the command line, or boot with a device tree")
    return blob
