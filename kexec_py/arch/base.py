"""What every architecture module provides, and the inputs a planner receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kexec_py.plan.plan import Buffer, SegmentPlan


@dataclass(frozen=True, slots=True)
class LoadInputs:
    """The already-read inputs of a kexec_load plan."""

    cmdline: str                    # composed from --append / --reuse-cmdline, without elfcorehdr=
    initrd: Buffer | None           # the initrd bytes (an mmap'd view for big files)
    no_checks: bool = False         # -i: the purgatory skips its SHA-256 check
    elf_args: str | None = None     # ELF kernels: "linux", "none" or "elf" (--args-*); None: by the image


class Arch(Protocol):
    name: str                       # "x86_64": also the purgatory object's name
    kexec_arch: int                 # KEXEC_ARCH_*, ORed into kexec_load's flags
    elf_machine: str                # "EM_X86_64": checks the purgatory object
    has_file_syscall: bool          # whether the kernel offers kexec_file_load here
    formats: tuple                  # ImageFormats, probed in order

    def read_crash_facts(self, sys): ...
    def plan_crash(self, image, inputs: LoadInputs, facts, purgatory) -> SegmentPlan: ...
    def read_load_facts(self, sys): ...
    def plan_load(self, image, inputs: LoadInputs, facts, purgatory) -> SegmentPlan: ...
