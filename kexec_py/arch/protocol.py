"""The ``Arch`` protocol: what the arch-neutral driver asks of an architecture
(``kexec_py.arch.base`` describes the seam, and gives this class as ``base.Arch``).
A module of its own because a Protocol needs ``typing``, which the commands
themselves do not import (issue 13); ``tests/arch/test_arch_protocol.py`` checks every
registered arch against it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from kexec_py.arch.base import FileInputs, LoadInputs
from kexec_py.plan.plan import Buffer, SegmentPlan


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
    # Optional too: ``checks_signature(sys) -> bool``, False when this kernel's kexec_file_load
    # verifies no signature here (s390x not IPLed in secure mode): lockdown then takes an unsigned kernel.

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
