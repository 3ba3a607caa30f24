"""The one interface between the arch-neutral driver and an architecture: ``Arch``,
and the values that cross it.

An architecture module owns everything that differs between machines: the image
formats it loads, the facts it reads from the system, the kexec_load plans (crash
and reboot), what kexec_file_load gets for an image and what the kernel will need
for it, and which signature a locked-down kernel checks. The driver calls nothing
else; ``tests/arch/test_arch_protocol.py`` checks every registered arch against
this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kexec_py.plan.placement import Allocator
from kexec_py.plan.plan import Buffer, SegmentPlan
from kexec_py.plan.ranges import Range


@dataclass(frozen=True, slots=True)
class LoadInputs:
    """The already-read inputs of a kexec_load plan."""

    cmdline: str                    # composed from --append / --reuse-cmdline, without elfcorehdr=
    initrd: Buffer | None           # the initrd bytes (an mmap'd view for big files)
    page_size: int                  # the running kernel's page size: segments are aligned to it
    no_checks: bool = False         # -i: the purgatory skips its SHA-256 check
    window: Range = Range(0, 1 << 64)  # --mem-min / --mem-max: segments only inside this
    dtb: bytes | None = None        # --dtb: the device tree to start from (DT architectures)
    options: object = None          # the architecture's own options (Request.arch_options)
    rng_seed: bytes | None = None   # random bytes for the new kernel's early entropy
    hotplug_size: int | None = None # --hotplug: elfcorehdr room the kernel may rewrite (crash_elfcorehdr_size)

    def usable(self, ranges) -> list[Range]:
        """``ranges`` cut down to the --mem-min/--mem-max window."""
        return [r for r in (x.intersect(self.window) for x in ranges) if r]

    def allocator(self, ranges) -> Allocator:
        """An allocator over ``ranges`` (within the window), handing out page-aligned ranges."""
        return Allocator(self.usable(ranges), page_size=self.page_size)


@dataclass(frozen=True, slots=True)
class FileInputs:
    """What kexec_file_load gets for an image beyond the user's files, and what the
    kernel will need to load it (checked before the call)."""

    kernel: Buffer | None = None    # bytes to pass instead of the kernel file (None: the file, or
                                    # its decompressed content when it was compressed)
    initrd: Buffer | None = None    # an initrd the image carries (a UKI's .initrd)
    cmdline: str | None = None      # a command line the image carries (a UKI's .cmdline)
    kernel_memory: int = 0          # bytes the kernel occupies once running (bss included)
    kernel_align: int = 0           # alignment the kernel's loader places it at
    cmdline_max: int | None = None  # longest command line, NUL included, the kernel takes


@runtime_checkable
class Arch(Protocol):
    name: str                       # "x86_64": the registry's name, and the purgatory object's
    kexec_arch: int                 # KEXEC_ARCH_*, ORed into kexec_load's flags
    native_kexec_arch: int          # the KEXEC_ARCH_* its kernel takes besides KEXEC_ARCH_DEFAULT
    destination_limit: int          # KEXEC_DESTINATION_MEMORY_LIMIT: every segment ends below it
    elf_machine: str                # "EM_X86_64": checks the purgatory object
    has_file_syscall: bool          # whether the kernel offers kexec_file_load here
    device_tree: bool               # whether kernels get a device tree (--dtb)
    hotplug_flag: int               # the kexec_load flag --hotplug sets (0: not supported)
    formats: tuple                  # ImageFormats, probed in order
    signed_kind: str                # what a kernel signed for kexec_file_load is here ("a signed bzImage")
    # Optional (not a protocol member): ``uses_purgatory = False`` when the kernel's own
    # machine_kexec enters the new image (arm); the planners then get purgatory=None.

    def read_crash_facts(self, sys): ...
    def plan_crash(self, image, inputs: LoadInputs, facts, purgatory) -> SegmentPlan: ...
    def read_load_facts(self, sys): ...
    def plan_load(self, image, inputs: LoadInputs, facts, purgatory) -> SegmentPlan: ...

    def file_inputs(self, image) -> FileInputs:
        """What kexec_file_load gets for ``image``; raises FileSyscallUnavailable (errno
        ENOEXEC, so that -a goes on with kexec_load) for an image it does not take."""
        ...

    def signed(self, kernel: Buffer) -> bool:
        """Whether ``kernel`` (what kexec_file_load will read) carries the kind of
        signature this architecture's kernel verifies on a locked-down system."""
        ...


def not_taken(why: str):
    """The refusal for an image kexec_file_load does not take (for Arch.file_inputs)."""
    import errno

    from kexec_py.errors import FileSyscallUnavailable
    return FileSyscallUnavailable(why, "use -c (kexec_load), or the default -a, which does so by itself",
                                  errno=errno.ENOEXEC, userspace=True)
