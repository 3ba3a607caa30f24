"""32-bit arm: zImage, uImage and vmlinux kernels, a device tree or ATAGs, no purgatory.

The boot protocol is Documentation/arch/arm/booting.rst: the zImage is entered at
its first byte with r0 = 0, r1 = the machine type and r2 = the physical address of
the device tree. On arm the running kernel sets those registers itself: its
machine_kexec jumps to the image's entry with r2 = the address of the segment that
starts with the device tree magic (d00dfeed), else entry - 0x7000 (ATAGs). So, like
kexec-tools, kexec-py loads no purgatory here: the entry is the zImage's first byte. A
purgatory would only add the SHA-256 check, decided against (docs/differences.md, 32-bit
arm): on a mismatch it could only spin without a console, where a damaged kernel may still
boot, and it would hash the segments with the MMU and caches off on every crash.

Placement, from the image's own numbers (``kexec_py.image.arm_zimage``): a zImage
decompresses its kernel to the start of RAM (its own address rounded down to 128 MiB)
plus the TEXT_OFFSET of its size tag, and may first copy itself past the end of the
decompressed kernel. So the plan takes a 128 MiB aligned base in RAM (the crash region's
start for -p), puts the zImage at base + TEXT_OFFSET, keeps the decompressed kernel, its
bss and the decompressor's relocated copy free (``ArmImage.memory``, or --image-size),
and puts the initrd and device tree above that, bottom-up, within the lowmem the new
kernel maps. kexec-tools 2.0.25 assumes TEXT_OFFSET 0x8000 and places the initrd and
device tree inside the relocated decompressor's way on Debian's armmp kernels
(TEXT_OFFSET 0x208000): the new kernel then finds no device tree and hangs.

A capture kernel (-p) gets ``elfcorehdr=`` and ``mem=`` on its command line, as with
kexec-tools: the arm kernel's ``mem=SIZE`` replaces the memory the device tree
describes with SIZE bytes from its own PHYS_OFFSET (the crash region's base), which
stops just below the ELF core header. The device tree also says both in /chosen
(``linux,elfcorehdr``, ``linux,usable-memory-range``). The ELF core header is ELF32
unless RAM reaches above 4 GiB (LPAE); its kernel virtual addresses are
PAGE_OFFSET + (paddr - PHYS_OFFSET), PAGE_OFFSET from ``_stext`` in /proc/kallsyms
rounded down to 32 MiB (or --page-offset), PHYS_OFFSET the start of RAM.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.arch.base import FileInputs, LoadInputs, not_taken
from kexec_py.errors import NoCrashMemory, NoSpace, SnapshotError, UsageError
from kexec_py.image.arm_zimage import (FDT_MAGIC, PAGE_DIRECTORY, ArmImage, looks_like_uimage, looks_like_zimage,
                                       parse_uimage, parse_zimage)
from kexec_py.image.arm_vmlinux import parse_arm_vmlinux
from kexec_py.image.open import ImageFormat
from kexec_py.image.vmlinux import looks_like_elf
from kexec_py.plan.arm_atags import atags_address, build_atags, parse_atags
from kexec_py.plan.devicetree import ChosenSpec, build_dtb, kexec_chosen, parse_dtb
from kexec_py.plan.elf_core import CoreHeaderSpec, build_elf_core_header
from kexec_py.plan.placement import Allocator, Placement
from kexec_py.plan.plan import Segment, SegmentPlan
from kexec_py.plan.ranges import MiB, Range, align_down, align_up, merge, subtract
from kexec_py.structs import kexec_uapi as K
from kexec_py.system.view import SystemView

EM_ARM = 40
RAM_ALIGN = 128 * MiB               # the decompressor takes its own address rounded down to this as RAM's start
LOWMEM = 768 * MiB                  # what a 3G/1G kernel maps linearly from its start (1 GiB less vmalloc)
MAX_DTB = 1 * MiB                   # the kernel's early mapping of the tree covers at least 1 MiB
ATAGS_PATH = "/proc/atags"
KVBASE_MASK = 32 * MiB - 1          # PAGE_OFFSET is _stext rounded down to this
DEFAULT_PAGE_OFFSET = 0xC0000000


@dataclass(frozen=True, slots=True)
class ArmOptions:
    image_size: int | None = None   # --image-size: the kernel's memory from its load address
    page_offset: int | None = None  # --page-offset: the kernel's PAGE_OFFSET (ELF core header vaddrs)
    atags: bool = False             # --atags: pass ATAGs (from /proc/atags), no device tree


@dataclass(frozen=True, slots=True)
class ArmFacts:
    ram: tuple[Range, ...]                   # where segments may go (-l) / what is dumped (-p)
    tree: bytes | None                       # the running kernel's device tree (flattened); None: it has none
    crash_regions: tuple[Range, ...] = ()
    notes: tuple[tuple[int, int], ...] = ()  # crash notes, then vmcoreinfo: (paddr, size)
    stext: int | None = None                 # _stext from /proc/kallsyms
    system_ram: tuple[Range, ...] = ()       # -l: all of System RAM, what is reserved in it included
    dumped_crash: tuple[Range, ...] = ()     # -p: the crash memory as the dump's RAM sees it (not its boot alias)
    atags: bytes | None = None               # /proc/atags (--atags), None when the kernel shows none
    tree_error: SnapshotError | None = None  # why ``tree`` is None (raised when a device tree is needed)


@dataclass(frozen=True, slots=True)
class Arm:
    name: str = "arm"
    kexec_arch: int = K.KEXEC_ARCH_ARM
    native_kexec_arch: int = K.KEXEC_ARCH_ARM
    destination_limit: int = 1 << 32         # KEXEC_DESTINATION_MEMORY_LIMIT: the 32-bit address space
    elf_machine: str = "EM_ARM"
    has_file_syscall: bool = False           # arm kernels have no kexec_file_load
    device_tree: bool = True
    hotplug_flag: int = 0
    signed_kind: str = "a kernel (arm has no kexec_file_load)"
    uses_purgatory: bool = False             # the kernel's relocate_new_kernel sets r0-r2; no SHA check (module doc)
    formats: tuple[ImageFormat, ...] = (
        ImageFormat("vmlinux", looks_like_elf, parse_arm_vmlinux),
        ImageFormat("uImage", looks_like_uimage, parse_uimage),
        ImageFormat("zImage", looks_like_zimage, parse_zimage),
    )

    def read_crash_facts(self, sys: SystemView) -> ArmFacts:
        return read_crash_facts(sys)

    def plan_crash(self, image: ArmImage, inputs: LoadInputs, facts: ArmFacts, purgatory=None) -> SegmentPlan:
        return plan_crash(image, inputs, facts)

    def read_load_facts(self, sys: SystemView) -> ArmFacts:
        return read_load_facts(sys)

    def plan_load(self, image: ArmImage, inputs: LoadInputs, facts: ArmFacts, purgatory=None) -> SegmentPlan:
        return plan_load(image, inputs, facts)

    def file_inputs(self, image: ArmImage) -> FileInputs:
        raise not_taken("arm kernels have no kexec_file_load")

    def signed(self, kernel) -> bool:
        return False


# -- facts -----------------------------------------------------------------------------

def read_tree(sys: SystemView) -> bytes:
    """The running kernel's device tree, flattened: /sys/firmware/fdt, else /proc/device-tree."""
    tree = sys.device_tree()
    if tree.boot_cpuid_phys is None:
        tree.boot_cpuid_phys = 0
    return build_dtb(tree)


def _boot_data(sys: SystemView) -> dict:
    """The running kernel's device tree (or why there is none) and its /proc/atags: which one
    the new kernel gets is the options' choice (--atags)."""
    atags = sys.read_bytes(ATAGS_PATH) if sys.exists(ATAGS_PATH) else None
    try:
        return dict(tree=read_tree(sys), atags=atags)
    except SnapshotError as e:
        return dict(tree=None, tree_error=e, atags=atags)


def _ram(sys: SystemView) -> list[Range]:
    """System RAM, its "(boot alias)" views included (kexec-tools counts both)."""
    return merge(r.range for r in sys.iomem.roots if r.name.startswith("System RAM"))


def read_load_facts(sys: SystemView) -> ArmFacts:
    ram, holes = _ram(sys), []
    for res in sys.iomem.roots:
        if res.name.startswith("System RAM"):
            holes += [c.range for c in res.walk() if c is not res and c.name == "reserved"]
    usable = subtract(ram, holes)
    if not usable:
        raise SnapshotError("/proc/iomem lists no System RAM", "is /proc mounted, and are you root?")
    return ArmFacts(ram=tuple(usable), system_ram=tuple(ram), **_boot_data(sys))


def read_crash_facts(sys: SystemView) -> ArmFacts:
    real = tuple(sys.crash_regions())
    regions = tuple(sorted(set(sys.iomem.named("Crash kernel (boot alias)")))) or real
    if not regions:
        raise NoCrashMemory("no 'Crash kernel' region in /proc/iomem: memory for a crash kernel is not reserved",
                            "boot with crashkernel=256M (or more) on the kernel command line")
    notes = sys.core_notes()
    # The dump covers System RAM; where RAM also has a 32-bit "boot alias" (Keystone: RAM above
    # 4 GiB, seen below it at boot), the segments go to the alias and the dump skips it.
    ram = merge(r.range for r in sys.iomem.roots if r.name == "System RAM")
    return ArmFacts(ram=tuple(ram), crash_regions=regions, notes=tuple(notes),
                    stext=_stext(sys), dumped_crash=real, **_boot_data(sys))


def _stext(sys: SystemView) -> int | None:
    text = sys.read_optional("/proc/kallsyms")
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "_stext":
            value = int(fields[0], 16)
            return value or None            # 0: kallsyms hidden from this user (kptr_restrict)
    return None


# -- plans -----------------------------------------------------------------------------

def _options(inputs: LoadInputs) -> ArmOptions:
    return inputs.options if isinstance(inputs.options, ArmOptions) else ArmOptions()


def _place_kernel(image: ArmImage, inputs: LoadInputs, free: list[Range],
                  system_ram: tuple[Range, ...] = ()) -> tuple[int, Range, Segment]:
    """(RAM base, the range the kernel keeps for itself, the kernel segment): the lowest
    128 MiB aligned base whose kernel room lies in one range of ``free``. The decompressor
    writes from its page tables just below the kernel (base + TEXT_OFFSET) upwards, so
    with ``system_ram`` (-l) the base itself may be RAM that is not free (reserved memory at
    the start of RAM): the new kernel's PHYS_OFFSET stays the start of RAM. A capture
    kernel's base is inside the crash region: its mem= counts from there."""
    room = align_up(image.text_offset + image.memory(_options(inputs).image_size), inputs.page_size)
    writes_from = max(image.text_offset - PAGE_DIRECTORY, 0)
    for hole in free:
        below = align_down(hole.start, RAM_ALIGN)
        candidates = [align_up(hole.start, RAM_ALIGN)]
        if any(r.start <= below and hole.start <= r.end for r in system_ram):
            candidates.insert(0, below)
        for base in candidates:
            if hole.start <= base + writes_from and base + room <= hole.end:
                return base, Range(max(base, hole.start), base + room), _kernel_segments(image, base, inputs)
    raise NoSpace(f"no 128 MiB aligned block of {room:#x} bytes (TEXT_OFFSET {image.text_offset:#x} and the "
                  f"kernel's room) in {', '.join(f'{h.start:#x}-{h.last:#x}' for h in free)}",
                  "reserve more memory (crashkernel=), or pass a smaller --image-size", what="kernel")


def _kernel_segments(image: ArmImage, base: int, inputs: LoadInputs) -> list[Segment]:
    """The zImage (or raw Image) at base + TEXT_OFFSET; a vmlinux's PT_LOADs at the same
    distance from there as from ``_text`` (each from its page's start)."""
    text, page = base + image.text_offset, inputs.page_size
    if not image.pieces:
        return [Segment("kernel", image.payload, text, align_up(len(image.data), page))]
    out = []
    for i, (rel, offset, filesz, memsz) in enumerate(image.pieces):
        pad = (text + rel) % page
        buf = bytes(pad) + image.data[offset:offset + filesz] if pad else memoryview(image.data)[offset:offset + filesz]
        out.append(Segment("kernel" if i == 0 else f"kernel-{i + 1}", buf, text + rel - pad,
                           align_up(pad + memsz, page)))
    return out


def _tree_source(inputs: LoadInputs, facts: ArmFacts) -> bytes:
    if inputs.dtb is not None:
        return bytes(inputs.dtb)
    if facts.tree is None:
        raise facts.tree_error or SnapshotError("the running kernel shows no device tree",
                                                "pass one with --dtb, or --atags")
    return facts.tree


def _common(image: ArmImage, inputs: LoadInputs, facts: ArmFacts, free: list[Range], *, cmdline: str,
            crash: Range | None) -> tuple[list[Segment], list[str], int, str]:
    """kernel, initrd, [elfcorehdr], device tree or ATAGs; notes; the entry point; the command line."""
    base, kept, kernels = _place_kernel(image, inputs, free, () if crash else facts.system_ram)
    entry = base + image.text_offset + image.entry_offset
    alloc = Allocator(free, page_size=inputs.page_size)
    alloc.reserve(kept)
    lowmem_end = base + LOWMEM
    segments = list(kernels)
    elfcorehdr = core = None
    if crash is not None:
        core = build_elf_core_header(_core_spec(facts, inputs, crash))
        align = 2 * MiB if max(r.end for r in facts.ram) > 1 << 32 else 1 * MiB
        elfcorehdr = alloc.take("elfcorehdr", Placement(size=len(core), align=align))
        segments.append(Segment("elfcorehdr", core, elfcorehdr.start, elfcorehdr.size))
        cmdline = f"{cmdline} elfcorehdr={elfcorehdr.start:#x} mem={(elfcorehdr.start - base) >> 10}K".strip()
    initrd = None
    if inputs.initrd is not None:
        initrd = alloc.take("initrd", Placement(size=max(len(inputs.initrd), 1), min_addr=kept.end,
                                                max_addr=lowmem_end, top_down=False))
        segments.append(Segment("initrd", inputs.initrd, initrd.start, initrd.size))
    initrd_bytes = Range.sized(initrd.start, len(inputs.initrd)) if initrd else None
    if _options(inputs).atags:
        boot = _atags_segment(facts, entry, free, cmdline=cmdline, initrd=initrd_bytes,
                              page_size=inputs.page_size)
        segments.append(boot)
        handed = f"ATAGs {boot.mem:#x} ({len(boot.buf)} bytes), where the kernel's machine_kexec points r2"
    else:
        tree = kexec_chosen(parse_dtb(_tree_source(inputs, facts), what="the device tree"), ChosenSpec(
            cmdline=cmdline, initrd=initrd_bytes,
            elfcorehdr=Range.sized(elfcorehdr.start, len(core)) if elfcorehdr else None,
            usable=(crash,) if crash is not None else ()))
        dtb = build_dtb(tree)
        if len(dtb) > MAX_DTB:
            raise UsageError(f"the device tree is {len(dtb)} bytes once updated; kexec-py places at most 1 MiB "
                             "for a 32-bit arm kernel", "pass a smaller device tree with --dtb")
        where = alloc.take("dtb", Placement(size=len(dtb), min_addr=kept.end, max_addr=lowmem_end, top_down=False))
        segments.append(Segment("dtb", dtb, where.start, where.size))
        handed = f"dtb {where.start:#x} ({len(dtb)} bytes), found by the kernel's machine_kexec as r2"
    if initrd is not None and bytes(inputs.initrd[:4]) == FDT_MAGIC:
        raise UsageError("the initrd starts with the device tree magic (d00dfeed)",
                         "the arm kernel would take it for the device tree: pass a cpio initramfs")
    sized = ("--image-size" if _options(inputs).image_size is not None else
             "its PT_LOADs" if image.pieces else "its size tag" if image.sized else "no size tag: an estimate")
    notes = [f"RAM base {base:#x}: kernel {kernels[0].mem:#x} (TEXT_OFFSET {image.text_offset:#x}), "
             f"kernel room to {kept.end:#x} ({sized})", handed]
    if image.appended_dtb:
        notes.append(f"the zImage's appended device tree ({len(image.appended_dtb)} bytes) is not loaded")
    if elfcorehdr:
        notes.append(f"elfcorehdr {elfcorehdr.start:#x} ({len(core)} bytes)")
    return sorted(segments, key=lambda s: s.mem), notes, entry, cmdline


def _atags_segment(facts: ArmFacts, entry: int, free: list[Range], *, cmdline: str,
                   initrd: Range | None, page_size: int) -> Segment:
    """--atags: the tagged list (``kexec_py.plan.arm_atags``) where r2 will point: 0x7000
    below the zImage, inside the kernel's own room (below its page tables)."""
    saved = parse_atags(facts.atags) if facts.atags is not None else None
    blob = build_atags(saved, cmdline=cmdline or None, initrd=initrd, ram=facts.system_ram or facts.ram)
    at = atags_address(entry)
    if not any(r.start <= at and at + len(blob) <= r.end for r in free):
        raise NoSpace(f"the ATAGs go at {at:#x} (the kernel's entry - 0x7000, where the arm kernel points "
                      "r2), which is not RAM free for them", "boot the new kernel with a device tree",
                      what="atags")
    return Segment("atags", blob, at, align_up(len(blob), page_size))


def _core_spec(facts: ArmFacts, inputs: LoadInputs, crash: Range) -> CoreHeaderSpec:
    ram = subtract(list(facts.ram), list(facts.dumped_crash or facts.crash_regions))
    page_offset = _options(inputs).page_offset
    if page_offset is None:
        page_offset = facts.stext & ~KVBASE_MASK if facts.stext else DEFAULT_PAGE_OFFSET
    phys_offset = facts.ram[0].start
    wide = max(r.end for r in facts.ram) > 1 << 32
    return CoreHeaderSpec(elf_class=64 if wide else 32, machine=EM_ARM, notes=facts.notes, ram=tuple(ram),
                          page_offset=page_offset - phys_offset)


def plan_load(image: ArmImage, inputs: LoadInputs, facts: ArmFacts) -> SegmentPlan:
    """A kernel for a later ``kexec -e``: at the lowest 128 MiB aligned RAM base, the rest above it."""
    free = inputs.usable(facts.ram)
    segments, notes, entry, cmdline = _common(image, inputs, facts, free, cmdline=inputs.cmdline, crash=None)
    return SegmentPlan(arch="arm", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ARCH_ARM, cmdline=cmdline, allowed=facts.ram, notes=tuple(notes))


def plan_crash(image: ArmImage, inputs: LoadInputs, facts: ArmFacts) -> SegmentPlan:
    """Everything in the crash region: the kernel at its (128 MiB aligned) base, initrd and tree
    above the kernel's room, the ELF core header at the top."""
    region = facts.crash_regions[-1]
    free = inputs.usable([region])
    segments, notes, entry, cmdline = _common(image, inputs, facts, free, cmdline=inputs.cmdline, crash=region)
    notes = [f"crash region {region.start:#x}-{region.last:#x}", *notes]
    return SegmentPlan(arch="arm", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ON_CRASH | K.KEXEC_ARCH_ARM, cmdline=cmdline,
                       allowed=facts.crash_regions, notes=tuple(notes))
