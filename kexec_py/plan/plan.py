"""Load plans: everything a kexec syscall needs, decided before it is issued.

A ``SegmentPlan`` is what kexec_load takes (segments with physical addresses and
bytes, an entry point, flags). A ``FilePlan`` is what kexec_file_load takes (a
kernel file, an optional initrd file, a command line, flags): the kernel does the
placing. Both are frozen values; nothing downstream of the planner changes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kexec_py.plan.ranges import Range

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class Segment:
    """One kexec_segment: ``buf`` is copied to physical ``mem``; the rest of
    ``memsz`` is zero-filled by the kernel."""

    name: str
    buf: Buffer
    mem: int
    memsz: int

    @property
    def bufsz(self) -> int:
        return len(self.buf)

    @property
    def range(self) -> Range:
        return Range.sized(self.mem, self.memsz)

    def __repr__(self) -> str:
        return (f"Segment({self.name!r}, mem={self.mem:#x}, memsz={self.memsz:#x}, "
                f"bufsz={self.bufsz:#x})")


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """A plan for kexec_load."""

    arch: str
    segments: tuple[Segment, ...]
    entry: int
    flags: int                      # KEXEC_ON_CRASH | KEXEC_ARCH_* | ...
    cmdline: str                    # the command line the new kernel will see
    page_size: int                  # the running kernel's: every segment is aligned to it
    # Where the segments must lie: the crash region(s) for -p, usable RAM otherwise.
    allowed: tuple[Range, ...] = ()
    notes: tuple[str, ...] = ()     # human-readable facts for --dry-run / -d

    @property
    def syscall(self) -> str:
        return "kexec_load"


@dataclass(frozen=True, slots=True)
class FilePlan:
    """A plan for kexec_file_load."""

    arch: str
    kernel: Path
    initrd: Path | None
    cmdline: str
    flags: int                      # KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_INITRAMFS | ...
    # When the kernel file had to be decompressed or unwrapped, the bytes to pass
    # (through a memfd) instead of the file itself.
    kernel_bytes: bytes | None = field(default=None, repr=False)
    # An initrd that is not a file of its own (a UKI's .initrd): passed through a memfd.
    initrd_bytes: bytes | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()

    @property
    def syscall(self) -> str:
        return "kexec_file_load"


@dataclass(frozen=True, slots=True)
class UnloadPlan:
    arch: str
    crash: bool
    use_file_syscall: bool
    flags: int                      # for kexec_file_load
    kexec_arch: int = 0             # KEXEC_ARCH_* for the kexec_load form
