"""s390x: the s390 kernel image, loaded at 0x10000, its parameters in its own parameter area.

There is no boot protocol beyond the image itself (``kexec_py.structs.s390``): the image's
bytes from 0x10000 on go to 0x10000, where its normal entry is; the initrd's place and size
and the command line are written into the parameter area at 0x10400 of that copy, where
the new kernel's boot code reads them. No device tree, no zero page, and for a reboot no
purgatory either: at ``kexec -e`` the running kernel's relocation code copies the segments
into place and restarts the CPU at the entry (0x10000) through a 31-bit PSW, as with
kexec-tools, whose placement kexec-py follows:

* the kernel: the file from offset 0x10000, at 0x10000;
* the initrd: at the larger of 8 MiB and the file's size, rounded up to 1 MiB (the new
  kernel's boot code moves it if its own decompressed image would reach it).

Memory is System RAM from /proc/iomem less the memory blocks that are offline
(``/sys/devices/system/memory/memoryN/state``), as kexec-tools reads it.

A capture kernel (``-p``) is laid out in the crash region ("Crash kernel" in /proc/iomem) as
it must run after the swap with the memory from 0, at the same offsets as a reboot's (the
kernel at crash base + 0x10000, the initrd at crash base + its usual offset, which is what its
parameter area names), with OLDMEM_BASE/OLDMEM_SIZE = the crash region in the parameter area:
the capture kernel builds /proc/vmcore from them itself, so there is no ELF core header. The
entry is our purgatory (arch/s390x/purgatory), below the kernel in the region: the old kernel
calls it with r2 = 0 to check the segments' SHA-256 before the crash jump, then with r2 != 0
after the reset; it then swaps the crash region with [0, crash size) and enters the capture
kernel's kdump entry at 0x10010. The kernel and initrd are kexec-tools' bytes at kexec-tools'
places (tests/test_differential_s390x.py). A kernel without CONFIG_CRASH_DUMP (Debian's)
reserves no crash memory at all: then ``-p`` exits 1 before anything else, like kexec-tools.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kexec_py.arch.base import FileInputs, LoadInputs
from kexec_py.errors import NoCrashMemory, NoSpace, SnapshotError, UsageError
from kexec_py.image.open import ImageFormat
from kexec_py.image.s390_image import S390Image, looks_like_s390_image, parse_s390_image
from kexec_py.plan.plan import Segment, SegmentPlan
from kexec_py.plan.ranges import MiB, Range, align_up, merge, subtract
from kexec_py.structs import kexec_uapi as K
from kexec_py.structs import s390 as S
from kexec_py.system.view import SystemView

INITRD_MIN = 8 * MiB                # the initrd goes no lower than this (kexec-tools' RAMDISK_ORIGIN_ADDR)
INITRD_ALIGN = 1 * MiB
PURGATORY_LOW = 0x2000              # a capture kernel's purgatory: crash base + this .. + 0x10000 (kexec-tools')
MEMORY_BLOCKS = "/sys/devices/system/memory"
IPL_SECURE = "/sys/firmware/ipl/secure"     # 1 when the machine was IPLed in secure mode


@dataclass(frozen=True, slots=True)
class S390Facts:
    ram: tuple[Range, ...]                  # System RAM less offline memory blocks
    crash_regions: tuple[Range, ...] = ()


@dataclass(frozen=True, slots=True)
class S390x:
    name: str = "s390x"
    kexec_arch: int = K.KEXEC_ARCH_S390
    native_kexec_arch: int = K.KEXEC_ARCH_S390
    destination_limit: int = 1 << 64        # KEXEC_DESTINATION_MEMORY_LIMIT is -1UL on s390
    elf_machine: str = "EM_S390"
    has_file_syscall: bool = True           # a kernel with CONFIG_KEXEC_FILE (Debian's has none: ENOSYS, 253)
    device_tree: bool = False
    hotplug_flag: int = 0
    signed_kind: str = "an s390 kernel image with an appended signature"
    # A reboot needs none (the kernel enters 0x10000 itself); a capture kernel's kexec_load does.
    uses_purgatory: bool = True
    formats: tuple[ImageFormat, ...] = (ImageFormat("s390 image", looks_like_s390_image, parse_s390_image),)

    def read_crash_facts(self, sys: SystemView) -> S390Facts:
        regions = tuple(sys.crash_regions())
        if not regions:
            raise NoCrashMemory("Memory for crashkernel is not reserved: /proc/iomem has no 'Crash kernel' range",
                                "boot with crashkernel=256M (or more) on a kernel built with CONFIG_CRASH_DUMP")
        return S390Facts(ram=tuple(read_ram(sys)), crash_regions=regions)

    def plan_crash(self, image: S390Image, inputs: LoadInputs, facts: S390Facts, purgatory=None) -> SegmentPlan:
        return plan_crash(image, inputs, facts, purgatory)

    def read_load_facts(self, sys: SystemView) -> S390Facts:
        return S390Facts(ram=tuple(read_ram(sys)))

    def plan_load(self, image: S390Image, inputs: LoadInputs, facts: S390Facts, purgatory=None) -> SegmentPlan:
        return plan_load(image, inputs, facts)

    def file_inputs(self, image: S390Image) -> FileInputs:
        # The kernel's own loader takes the file as it is and refuses a command line whose
        # length with its NUL is not below the image's field size (it keeps a byte spare).
        return FileInputs(cmdline_max=image.command_line_size - 1)

    def signed(self, kernel) -> bool:
        # An appended module-style PKCS#7 signature (kexec_py.structs.module_signature), which
        # the kernel's s390 kexec_file_load checks when the machine was IPLed in secure mode.
        from kexec_py.structs.module_signature import appended_pkcs7
        return appended_pkcs7(kernel)

    def checks_signature(self, sys: SystemView) -> bool:
        # The kernel's s390 loader verifies that signature only on a machine IPLed in secure
        # mode (/sys/firmware/ipl/secure: 1); otherwise even a locked-down kernel takes an
        # unsigned image through kexec_file_load. No such file (an older kernel): assume it does.
        value = sys.read_optional(IPL_SECURE)
        return value is None or value.strip() != "0"


# -- facts -----------------------------------------------------------------------------

def offline_blocks(sys: SystemView) -> list[Range]:
    """The memory blocks whose state is "offline" (none when the kernel has no memory hotplug)."""
    if not sys.exists(f"{MEMORY_BLOCKS}/block_size_bytes"):
        return []
    size = sys.read_number(f"{MEMORY_BLOCKS}/block_size_bytes", base=16)
    found = []
    for name in sorted(os.listdir(sys.path(MEMORY_BLOCKS))):
        if not (name.startswith("memory") and name[6:].isdigit()):
            continue
        state = sys.read_optional(f"{MEMORY_BLOCKS}/{name}/state")
        if state is not None and state.strip() == "offline":
            found.append(Range.sized(int(name[6:]) * size, size))
    return found


def read_ram(sys: SystemView) -> list[Range]:
    ram = merge(r.range for r in sys.iomem.roots if r.name == "System RAM")
    if not ram:
        raise SnapshotError("/proc/iomem lists no System RAM", "is /proc mounted, and are you root?")
    return subtract(ram, offline_blocks(sys))


# -- plans -----------------------------------------------------------------------------

def initrd_address(image: S390Image) -> int:
    return align_up(max(INITRD_MIN, len(image.data)), INITRD_ALIGN)


def _check_fits(segments: list[Segment], ram: tuple[Range, ...]) -> None:
    for seg in segments:
        if not any(r.contains(seg.range) for r in ram):
            raise NoSpace(f"the {seg.name} ({seg.mem:#x}-{seg.range.last:#x}) is not in usable memory "
                          f"({', '.join(f'{r.start:#x}-{r.last:#x}' for r in ram)})",
                          "an s390 kernel is loaded at 0x10000 and its initrd above it: bring that memory online",
                          what=seg.name)


def plan_load(image: S390Image, inputs: LoadInputs, facts: S390Facts) -> SegmentPlan:
    """The kernel at 0x10000, the initrd above it, the parameters in the kernel's copy."""
    initrd = None
    if inputs.initrd is not None:
        initrd = Segment("initrd", inputs.initrd, initrd_address(image), align_up(len(inputs.initrd), inputs.page_size))
    cmdline = inputs.cmdline if inputs.cmdline else None        # none given: the image's own stays
    payload = image.payload(cmdline=cmdline, initrd=(initrd.mem, len(inputs.initrd)) if initrd else (0, 0))
    kernel = Segment("kernel", payload, S.IMAGE_START, align_up(len(payload), inputs.page_size))
    segments = [kernel] + ([initrd] if initrd else [])
    usable = tuple(inputs.usable(facts.ram))
    _check_fits(segments, usable)
    notes = [f"kernel {S.IMAGE_START:#x}, entry {S.IMAGE_START:#x}"
             + (f" ({image.version})" if image.version else ""),
             f"command line field {image.command_line_size} bytes"
             + ("" if cmdline is not None else f", the image's own kept: {image.default_cmdline!r}")]
    if initrd:
        notes.append(f"initrd {initrd.mem:#x} ({len(inputs.initrd)} bytes)")
    return SegmentPlan(arch="s390x", page_size=inputs.page_size, segments=tuple(segments), entry=S.IMAGE_START,
                       flags=K.KEXEC_ARCH_S390, cmdline=cmdline if cmdline is not None else image.default_cmdline,
                       allowed=facts.ram, notes=tuple(notes))


def link_purgatory(purgatory, base: int, segments: list[Segment], *, crash: Range,
                   skip_checks: bool = False) -> tuple[Segment, int]:
    """The purgatory linked at ``base`` (inside ``crash``), told the crash region, its own
    place and the capture kernel's kdump entry, with the SHA-256 of ``segments`` (all but
    its own); and its entry."""
    from kexec_py.plan.purgatory import store_sha256
    size = align_up(purgatory.memsz, 4096)
    linked = purgatory.link(base)
    linked.set_int("kernel_entry", S.KDUMP_ENTRY)       # where the swap puts it
    linked.set_int("crash_base", crash.start)
    linked.set_int("crash_size", crash.size)
    linked.set_int("self_start", base)
    linked.set_int("self_size", size)
    linked.set_int("skip_checks", 1 if skip_checks else 0)
    store_sha256(linked, segments)
    return Segment("purgatory", bytes(linked.buf), base, size), linked.entry


def plan_crash(image: S390Image, inputs: LoadInputs, facts: S390Facts, purgatory) -> SegmentPlan:
    """The capture kernel laid out in the crash region as it will be after the swap with
    the memory from 0: at crash base + 0x10000 with its parameters (the initrd's place
    after the swap, OLDMEM_BASE/OLDMEM_SIZE = the crash region), the initrd at crash base +
    its usual offset, our purgatory below the kernel (kexec-tools' window, crash base +
    0x2000..0x10000, top down). The entry is the purgatory: the old kernel calls it to
    check the segments, then at the crash to swap the crash region with the memory from 0
    and enter the capture kernel's kdump entry (arch/s390x/purgatory/purgatory.c)."""
    if purgatory is None:
        raise UsageError("kexec-py's s390x purgatory is missing", "reinstall kexec-py")
    crash = facts.crash_regions[0]
    if crash.start < crash.size:
        raise NoSpace(f"the crash region {crash.start:#x}-{crash.last:#x} overlaps the memory from 0 it is swapped "
                      f"with at the crash (its first {crash.size:#x} bytes)",
                      "reserve the crash memory higher, or less of it (crashkernel=SIZE@OFFSET)", what="kernel")
    window = tuple(inputs.usable([crash]))
    initrd = None
    if inputs.initrd is not None:
        offset = initrd_address(image)
        initrd = Segment("initrd", inputs.initrd, crash.start + offset, align_up(len(inputs.initrd), inputs.page_size))
    cmdline = inputs.cmdline if inputs.cmdline else None
    payload = image.payload(cmdline=cmdline, initrd=(initrd.mem - crash.start, len(inputs.initrd)) if initrd else (0, 0),
                            oldmem=(crash.start, crash.size))
    kernel = Segment("kernel", payload, crash.start + S.IMAGE_START, align_up(len(payload), inputs.page_size))
    segments = [kernel] + ([initrd] if initrd else [])
    size = align_up(purgatory.memsz, 4096)
    base = (crash.start + S.IMAGE_START - size) // max(purgatory.align, 4096) * max(purgatory.align, 4096)
    if base < crash.start + PURGATORY_LOW:
        raise NoSpace(f"the s390x purgatory ({size:#x} bytes) does not fit below the capture kernel",
                      "rebuild the purgatory smaller", what="purgatory")
    purg, entry = link_purgatory(purgatory, base, segments, crash=crash, skip_checks=inputs.no_checks)
    segments.append(purg)
    segments.sort(key=lambda s: s.mem)
    if not window:
        raise NoSpace(f"the crash region {crash.start:#x}-{crash.last:#x} is outside --mem-min/--mem-max",
                      "widen --mem-min/--mem-max", what="kernel")
    _check_fits(segments, window)
    notes = [f"crash region {crash.start:#x}-{crash.last:#x}: OLDMEM_BASE {crash.start:#x}, OLDMEM_SIZE {crash.size:#x}",
             f"kernel {kernel.mem:#x} (at {S.IMAGE_START:#x} after the swap)"
             + (f" ({image.version})" if image.version else ""),
             f"purgatory {base:#x}, entry {entry:#x}: at the crash it swaps the region with "
             f"0-{crash.size - 1:#x}, then enters the capture kernel's kdump entry {S.KDUMP_ENTRY:#x}"]
    if initrd:
        notes.append(f"initrd {initrd.mem:#x} ({len(inputs.initrd)} bytes; {initrd.mem - crash.start:#x} after the swap)")
    return SegmentPlan(arch="s390x", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ARCH_S390 | K.KEXEC_ON_CRASH,
                       cmdline=cmdline if cmdline is not None else image.default_cmdline,
                       allowed=window, notes=tuple(notes))
