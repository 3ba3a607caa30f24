"""What every architecture module provides, and the inputs a planner receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kexec_py.plan.plan import Buffer, SegmentPlan
from kexec_py.plan.ranges import Range


@dataclass(frozen=True, slots=True)
class LoadInputs:
    """The already-read inputs of a kexec_load plan."""

    cmdline: str                    # composed from --append / --reuse-cmdline, without elfcorehdr=
    initrd: Buffer | None           # the initrd bytes (an mmap'd view for big files)
    no_checks: bool = False         # -i: the purgatory skips its SHA-256 check
    elf_args: str | None = None     # ELF kernels: "linux", "none" or "elf" (--args-*); None: by the image
    window: Range = Range(0, 1 << 64)  # --mem-min / --mem-max: segments only inside this
    dtb: bytes | None = None        # --dtb: the device tree to start from (DT architectures)
    console_port: int | None = None # x86: purgatory messages on this serial port (--console-serial)
    pass_memmap: bool = False       # x86: --pass-memmap-cmdline
    rng_seed: bytes | None = None   # random bytes for the new kernel's early entropy
    hotplug_size: int | None = None # --hotplug: elfcorehdr room the kernel may rewrite (crash_elfcorehdr_size)

    def usable(self, ranges) -> list[Range]:
        """``ranges`` cut down to the --mem-min/--mem-max window."""
        return [r for r in (x.intersect(self.window) for x in ranges) if r]


class Arch(Protocol):
    name: str                       # "x86_64": also the purgatory object's name
    kexec_arch: int                 # KEXEC_ARCH_*, ORed into kexec_load's flags
    elf_machine: str                # "EM_X86_64": checks the purgatory object
    has_file_syscall: bool          # whether the kernel offers kexec_file_load here
    device_tree: bool               # whether kernels get a device tree (--dtb)
    hotplug_flag: int               # the kexec_load flag --hotplug sets (0: not supported)
    formats: tuple                  # ImageFormats, probed in order

    def read_crash_facts(self, sys): ...
    def plan_crash(self, image, inputs: LoadInputs, facts, purgatory) -> SegmentPlan: ...
    def read_load_facts(self, sys): ...
    def plan_load(self, image, inputs: LoadInputs, facts, purgatory) -> SegmentPlan: ...
