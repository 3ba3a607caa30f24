"""Load plans: everything a kexec syscall needs, decided before it is issued.

A ``SegmentPlan`` is what kexec_load takes (segments with physical addresses and
bytes, an entry point, flags). A ``FilePlan`` is what kexec_file_load takes (a
kernel file, an optional initrd file, a command line, flags): the kernel does the
placing. Both are frozen values; nothing downstream of the planner changes them.
"""

from __future__ import annotations

from kexec_py.plan.ranges import Range
from kexec_py.record import REQUIRED, Record

Buffer = bytes | bytearray | memoryview



class Segment(Record):
    """One kexec_segment: ``buf`` is copied to physical ``mem``; the rest of
    ``memsz`` is zero-filled by the kernel."""

    _defaults = dict(name=REQUIRED, buf=REQUIRED, mem=REQUIRED, memsz=REQUIRED)
    __slots__ = tuple(_defaults)

    @property
    def bufsz(self) -> int:
        return len(self.buf)

    @property
    def range(self) -> Range:
        return Range.sized(self.mem, self.memsz)

    def __repr__(self) -> str:
        return (f"Segment({self.name!r}, mem={self.mem:#x}, memsz={self.memsz:#x}, "
                f"bufsz={self.bufsz:#x})")


class SegmentPlan(Record):
    """A plan for kexec_load."""

    _defaults = dict(
        arch=REQUIRED,
        segments=REQUIRED,          # tuple[Segment, ...]
        entry=REQUIRED,
        flags=REQUIRED,             # KEXEC_ON_CRASH | KEXEC_ARCH_* | ...
        cmdline=REQUIRED,           # the command line the new kernel will see
        page_size=REQUIRED,         # the running kernel's: every segment is aligned to it
        # Where the segments must lie: the crash region(s) for -p, usable RAM otherwise.
        allowed=(),                 # tuple[Range, ...]
        notes=(),                   # human-readable facts for --dry-run / -d
    )
    __slots__ = tuple(_defaults)

    @property
    def syscall(self) -> str:
        return "kexec_load"


class FilePlan(Record):
    """A plan for kexec_file_load."""

    _defaults = dict(
        arch=REQUIRED,
        kernel=REQUIRED,            # the path as kexec_py.paths.path_text writes it
        initrd=REQUIRED,            # the same, or None
        cmdline=REQUIRED,
        flags=REQUIRED,             # KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_INITRAMFS | ...
        # When the kernel file had to be decompressed or unwrapped, the bytes to pass
        # (through a memfd) instead of the file itself.
        kernel_bytes=None,
        # An initrd that is not a file of its own (a UKI's .initrd): passed through a memfd.
        initrd_bytes=None,
        notes=(),
    )
    __slots__ = tuple(_defaults)
    _hidden = ("kernel_bytes", "initrd_bytes")

    @property
    def syscall(self) -> str:
        return "kexec_file_load"


class UnloadPlan(Record):
    _defaults = dict(
        arch=REQUIRED,
        crash=REQUIRED,
        use_file_syscall=REQUIRED,
        flags=REQUIRED,             # for kexec_file_load
        kexec_arch=0,               # KEXEC_ARCH_* for the kexec_load form
    )
    __slots__ = tuple(_defaults)
