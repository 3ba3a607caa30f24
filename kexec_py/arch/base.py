"""The one interface between the arch-neutral driver and an architecture: ``Arch``,
and the values that cross it.

An architecture module owns everything that differs between machines: the image
formats it loads, the facts it reads from the system, the kexec_load plans (crash
and reboot), what kexec_file_load gets for an image and what the kernel will need
for it, and which signature a locked-down kernel checks. The driver calls nothing
else; ``tests/arch/test_arch_protocol.py`` checks every registered arch against
this protocol. The protocol class itself is in ``kexec_py.arch.protocol`` (a Protocol
needs typing, which no command imports) and is read here as ``base.Arch``; the
values are ``kexec_py.record`` Records, not dataclasses, for start-up time.
"""

from __future__ import annotations

from kexec_py.plan.ranges import Range
from kexec_py.record import REQUIRED, Record


class LoadInputs(Record):
    """The already-read inputs of a kexec_load plan."""

    _defaults = dict(
        cmdline=REQUIRED,           # composed from --append / --reuse-cmdline, without elfcorehdr=
        initrd=REQUIRED,            # Buffer | None: the initrd bytes (an mmap'd view for big files)
        page_size=REQUIRED,         # the running kernel's page size: segments are aligned to it
        no_checks=False,            # -i: the purgatory skips its SHA-256 check
        window=Range(0, 1 << 64),   # --mem-min / --mem-max: segments only inside this
        dtb=None,                   # --dtb: the device tree to start from (DT architectures)
        options=None,               # the architecture's own options (Request.arch_options)
        rng_seed=None,              # random bytes for the new kernel's early entropy
        hotplug_size=None,          # --hotplug: elfcorehdr room the kernel may rewrite (crash_elfcorehdr_size)
    )
    __slots__ = tuple(_defaults)

    def usable(self, ranges) -> list[Range]:
        """``ranges`` cut down to the --mem-min/--mem-max window."""
        return [r for r in (x.intersect(self.window) for x in ranges) if r]

    def allocator(self, ranges) -> Allocator:
        """An allocator over ``ranges`` (within the window), handing out page-aligned ranges."""
        from kexec_py.plan.placement import Allocator
        return Allocator(self.usable(ranges), page_size=self.page_size)


class FileInputs(Record):
    """What kexec_file_load gets for an image beyond the user's files, and what the
    kernel will need to load it (checked before the call)."""

    _defaults = dict(
        kernel=None,                # Buffer | None: bytes to pass instead of the kernel file (None: the
                                    # file, or its decompressed content when it was compressed)
        initrd=None,                # an initrd the image carries (a UKI's .initrd)
        cmdline=None,               # a command line the image carries (a UKI's .cmdline)
        kernel_memory=0,            # bytes the kernel occupies once running (bss included)
        kernel_align=0,             # alignment the kernel's loader places it at
        cmdline_max=None,           # longest command line, NUL included, the kernel takes
    )
    __slots__ = tuple(_defaults)


def not_taken(why: str):
    """The refusal for an image kexec_file_load does not take (for Arch.file_inputs)."""
    import errno

    from kexec_py.errors import FileSyscallUnavailable
    return FileSyscallUnavailable(why, "use -c (kexec_load), or the default -a, which does so by itself",
                                  errno=errno.ENOEXEC, userspace=True)


def __getattr__(name: str):
    """``Arch``, the protocol, lives in kexec_py.arch.protocol (it needs typing); read here as before."""
    if name == "Arch":
        from kexec_py.arch.protocol import Arch
        return Arch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
