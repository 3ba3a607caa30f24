"""arm64: Image kernels entered with x0 = the device tree, through our purgatory.

The boot protocol is Documentation/arch/arm64/booting.rst: the Image sits at
``text_offset`` above a 2 MiB aligned base, the initrd wholly inside the
32 GiB window that starts at the kernel's 1 GiB aligned base, and the device
tree (at most 2 MiB, 8-byte aligned) tells the kernel its command line and
initrd in /chosen. A capture kernel also finds the ELF core header
(``linux,elfcorehdr``) and the memory it may use (``linux,usable-memory-range``)
there: nothing goes on its command line.

The ELF core header's virtual addresses come from /proc/kcore, not from
/proc/kallsyms: the linear map's offset (vaddr - paddr of its RAM entries,
which covers a KASLR-randomised and even "negative" PHYS_OFFSET) and the
kernel image's own entry (vaddr ``_text``, paddr = vaddr - kimage_voffset,
size ``_end - _text``), cross-checked with the VMCOREINFO note that kcore
carries. kexec-tools 2.0.25 derives both from ``_text`` in /proc/kallsyms,
which Debian's 6.1 arm64 kernels do not list.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.arch.base import FileInputs, LoadInputs, not_taken
from kexec_py.errors import NoCrashMemory, SnapshotError
from kexec_py.image.arm64_image import Arm64Image, looks_like_arm64_image, parse_arm64_image, parse_arm64_vmlinux
from kexec_py.image.open import ImageFormat
from kexec_py.image.vmlinux import looks_like_elf
from kexec_py.plan.devicetree import ChosenSpec, build_dtb, check_size, kexec_chosen, parse_dtb
from kexec_py.plan.elf_core import CoreHeaderSpec, KernelTextMap, build_elf_core_header
from kexec_py.plan.placement import Allocator, Placement
from kexec_py.plan.plan import Segment, SegmentPlan
from kexec_py.plan.ranges import GiB, MiB, Range, align_down, align_up, merge, subtract
from kexec_py.structs import kexec_uapi as K
from kexec_py.system.kcore import Kcore, parse_kcore
from kexec_py.system.view import SystemView

EM_AARCH64 = 183
KERNEL_ALIGN = 2 * MiB              # the Image's base: 2 MiB aligned
INITRD_WINDOW = 32 * GiB            # from the kernel's 1 GiB aligned base
COMMAND_LINE_SIZE = 2048            # the kernel's limit, NUL included


@dataclass(frozen=True, slots=True)
class Arm64Facts:
    ram: tuple[Range, ...]                   # where segments may go (-l) / what is dumped (-p)
    fdt: bytes                               # the running kernel's device tree
    crash_regions: tuple[Range, ...] = ()
    notes: tuple[tuple[int, int], ...] = ()  # crash notes, then vmcoreinfo: (paddr, size)
    linear_offset: int | None = None         # linear map: vaddr = paddr + linear_offset (mod 2**64)
    kernel_text: KernelTextMap | None = None
    vmcoreinfo: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Arm64:
    name: str = "arm64"
    kexec_arch: int = K.KEXEC_ARCH_AARCH64
    native_kexec_arch: int = K.KEXEC_ARCH_AARCH64
    destination_limit: int = 1 << 64            # no limit but the address space
    elf_machine: str = "EM_AARCH64"
    has_file_syscall: bool = True
    device_tree: bool = True
    hotplug_flag: int = 0   # --hotplug (0: not supported here)
    signed_kind: str = "a signed Image (with its EFI stub)"
    formats: tuple[ImageFormat, ...] = (
        ImageFormat("Image", looks_like_arm64_image, parse_arm64_image),
        ImageFormat("vmlinux", looks_like_elf, parse_arm64_vmlinux),
    )

    def read_crash_facts(self, sys: SystemView) -> Arm64Facts:
        return read_crash_facts(sys)

    def plan_crash(self, image: Arm64Image, inputs: LoadInputs, facts: Arm64Facts, purgatory) -> SegmentPlan:
        return plan_crash(image, inputs, facts, purgatory)

    def read_load_facts(self, sys: SystemView) -> Arm64Facts:
        return read_load_facts(sys)

    def plan_load(self, image: Arm64Image, inputs: LoadInputs, facts: Arm64Facts, purgatory) -> SegmentPlan:
        return plan_load(image, inputs, facts, purgatory)

    def file_inputs(self, image: Arm64Image) -> FileInputs:
        """The Image (laid out from a vmlinux when that is what was given): the kernel's
        arm64 kexec_file_load takes nothing else, and no pre-3.17 header (image_size 0)."""
        if image.legacy_header:
            raise not_taken(f"{image.path} has a pre-3.17 arm64 Image header (image_size 0), which the "
                            "kernel's kexec_file_load refuses")
        return FileInputs(kernel=image.data if image.source == "vmlinux" else None,
                          kernel_memory=image.image_size, kernel_align=KERNEL_ALIGN,
                          cmdline_max=COMMAND_LINE_SIZE)

    def signed(self, kernel) -> bool:
        """An Authenticode signature (the EFI stub's PE image)."""
        from kexec_py.image.uki import has_pe_signature
        return has_pe_signature(kernel)


# -- facts -----------------------------------------------------------------------------

def read_fdt(sys: SystemView) -> bytes:
    """The running kernel's device tree, flattened: /sys/firmware/fdt, else the live tree."""
    tree = sys.device_tree()
    if tree.boot_cpuid_phys is None:
        tree.boot_cpuid_phys = 0            # arm64 kernels find their CPUs by MPIDR, not by this field
    return build_dtb(tree)


def read_load_facts(sys: SystemView) -> Arm64Facts:
    """RAM that a new kernel may be loaded into: System RAM less what is reserved inside it."""
    ram, holes = [], []
    for res in sys.iomem.roots:
        if "System RAM" not in res.name:
            continue
        ram.append(res.range)
        holes += [c.range for c in res.walk() if c is not res and c.name == "reserved"]
    usable = subtract(merge(ram), holes)
    if not usable:
        raise SnapshotError("/proc/iomem lists no System RAM", "is /proc mounted, and are you root?")
    return Arm64Facts(ram=tuple(usable), fdt=read_fdt(sys))


def read_crash_facts(sys: SystemView) -> Arm64Facts:
    regions = tuple(sys.crash_regions())
    if not regions:
        raise NoCrashMemory("no 'Crash kernel' region in /proc/iomem: memory for a crash kernel is not reserved",
                            "boot with crashkernel=256M (or more) on the kernel command line")
    notes = sys.core_notes()
    core = parse_kcore(sys.kcore_headers())
    linear, text = kernel_maps(core)
    return Arm64Facts(ram=tuple(merge(r.range for r in sys.iomem.roots if "System RAM" in r.name)),
                      fdt=read_fdt(sys), crash_regions=regions, notes=tuple(notes),
                      linear_offset=linear, kernel_text=text, vmcoreinfo=core.vmcoreinfo)


def kernel_maps(core: Kcore) -> tuple[int | None, KernelTextMap | None]:
    """(linear offset, kernel image map) from kcore's PT_LOADs.

    The kernel image's entry is the one whose vaddr - paddr is kimage_voffset
    (or, without that number, the one holding SYMBOL(_stext)); every other entry
    with a physical address is linear map.
    """
    voffset, stext = core.number("kimage_voffset"), core.symbol("_stext")
    text, linear = None, []
    for load in core.loads:
        if load.paddr is None:
            continue
        is_text = load.offset == voffset if voffset is not None else \
            (stext is not None and load.vaddr <= stext < load.vaddr + load.size)
        if is_text and text is None:
            text = KernelTextMap(vaddr=load.vaddr, paddr=load.paddr, size=load.size)
        elif not is_text:
            linear.append(load.offset)
    offset = min(linear) if linear else _linear_from_vmcoreinfo(core)
    return offset, text


def _linear_from_vmcoreinfo(core: Kcore) -> int | None:
    """__va(p) = (p - PHYS_OFFSET) | PAGE_OFFSET, PAGE_OFFSET = -(1 << VA_BITS) (kernels >= 5.4)."""
    phys_offset, va_bits = core.number("PHYS_OFFSET"), core.number("VA_BITS")
    if phys_offset is None or va_bits is None or not 0 < va_bits < 64:
        return None
    page_offset = ((1 << 64) - (1 << va_bits))
    return (page_offset - phys_offset) % (1 << 64)


# -- plans -----------------------------------------------------------------------------

def _place_kernel(alloc: Allocator, image: Arm64Image) -> Segment:
    """The Image at text_offset above the lowest 2 MiB aligned base that fits."""
    size = align_up(image.text_offset + max(image.image_size, len(image.data)), alloc.page_size)
    base = alloc.take("kernel", Placement(size=size, align=KERNEL_ALIGN, top_down=False))
    start = base.start + image.text_offset
    return Segment("kernel", image.payload, start, base.end - start)


def _finish(image: Arm64Image, inputs: LoadInputs, fdt: bytes, alloc: Allocator, kernel: Segment,
            purgatory, *, core: bytes | None, crash_regions: tuple[Range, ...]) -> tuple[list[Segment], int, list[str]]:
    """initrd, ELF core header, purgatory and device tree (top-down), then link the purgatory."""
    window_end = align_down(kernel.mem, GiB) + INITRD_WINDOW
    segments = [kernel]
    initrd = elfcorehdr = None
    if inputs.initrd is not None:
        initrd = alloc.take("initrd", Placement(size=max(len(inputs.initrd), 1), max_addr=window_end))
        segments.append(Segment("initrd", inputs.initrd, initrd.start, initrd.size))
    if core is not None:
        elfcorehdr = alloc.take("elfcorehdr", Placement(size=len(core)))
        segments.append(Segment("elfcorehdr", core, elfcorehdr.start, elfcorehdr.size))
    purg = alloc.take("purgatory", Placement(size=purgatory.memsz, align=purgatory.align))
    tree = kexec_chosen(parse_dtb(fdt, what="the device tree"), ChosenSpec(
        cmdline=inputs.cmdline,
        initrd=Range.sized(initrd.start, len(inputs.initrd)) if initrd else None,
        elfcorehdr=elfcorehdr, usable=tuple(reversed(crash_regions))))
    dtb = build_dtb(tree)
    check_size(dtb, "the device tree")
    dtb_range = alloc.take("dtb", Placement(size=len(dtb)))
    segments.append(Segment("dtb", dtb, dtb_range.start, dtb_range.size))
    purg_seg, entry = link_purgatory(purgatory, purg, segments, kernel_entry=kernel.mem,
                                     dtb=dtb_range.start, skip_checks=inputs.no_checks)
    notes = [f"kernel {kernel.mem:#x} (text_offset {image.text_offset:#x}, image_size {image.image_size:#x})",
             f"dtb {dtb_range.start:#x} ({len(dtb)} bytes)"]
    if elfcorehdr:
        notes.append(f"elfcorehdr {elfcorehdr.start:#x} ({len(core)} bytes)")
    return sorted([*segments, purg_seg], key=lambda s: s.mem), entry, notes


def plan_crash(image: Arm64Image, inputs: LoadInputs, facts: Arm64Facts, purgatory) -> SegmentPlan:
    """Everything in the highest crash region: the kernel at its bottom, the rest top-down."""
    region = facts.crash_regions[-1]
    alloc = inputs.allocator([region])
    kernel = _place_kernel(alloc, image)
    ram = subtract(facts.ram, list(facts.crash_regions))
    core = build_elf_core_header(CoreHeaderSpec(
        elf_class=64, machine=EM_AARCH64, notes=facts.notes, ram=tuple(ram),
        page_offset=facts.linear_offset, kernel_text=facts.kernel_text))
    segments, entry, notes = _finish(image, inputs, _dtb_source(inputs, facts), alloc, kernel, purgatory,
                                     core=core, crash_regions=facts.crash_regions)
    notes = [f"crash region {region.start:#x}-{region.last:#x}", *notes]
    if facts.linear_offset is None:
        notes.append("linear map offset unknown: vaddr 0 in the ELF core header")
    else:
        notes.append(f"linear map: vaddr = paddr + {facts.linear_offset:#x}")
    if facts.kernel_text:
        t = facts.kernel_text
        notes.append(f"kernel image map {t.vaddr:#x} -> {t.paddr:#x} ({t.size:#x} bytes)")
    return SegmentPlan(arch="arm64", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ON_CRASH | K.KEXEC_ARCH_AARCH64, cmdline=inputs.cmdline,
                       allowed=facts.crash_regions, notes=tuple(notes))


def plan_load(image: Arm64Image, inputs: LoadInputs, facts: Arm64Facts, purgatory) -> SegmentPlan:
    """A kernel for a later ``kexec -e``: the Image low in RAM, the rest top-down below 32 GiB of it."""
    alloc = inputs.allocator(facts.ram)
    kernel = _place_kernel(alloc, image)
    segments, entry, notes = _finish(image, inputs, _dtb_source(inputs, facts), alloc, kernel, purgatory,
                                     core=None, crash_regions=())
    return SegmentPlan(arch="arm64", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ARCH_AARCH64,
                       cmdline=inputs.cmdline, allowed=facts.ram, notes=tuple(notes))


def _dtb_source(inputs: LoadInputs, facts: Arm64Facts) -> bytes:
    """--dtb FILE when the request has one (LoadInputs.dtb), else the running kernel's tree."""
    given = inputs.dtb
    return bytes(given) if given is not None else facts.fdt


def link_purgatory(purgatory, where: Range, segments: list[Segment], *, kernel_entry: int, dtb: int,
                   skip_checks: bool) -> tuple[Segment, int]:
    """Link the purgatory at ``where``, tell it where the kernel and device tree are, and
    store the digest of every other segment."""
    from kexec_py.plan.purgatory import store_sha256

    linked = purgatory.link(where.start)
    linked.set_int("kernel_entry", kernel_entry)
    linked.set_int("kernel_dtb", dtb)
    linked.set_int("skip_checks", 1 if skip_checks else 0)
    store_sha256(linked, segments)
    return Segment("purgatory", bytes(linked.buf), where.start, where.size), linked.entry
