"""i386: bzImage kernels entered at their 32-bit entry point through our purgatory.

The 32-bit kernel has only kexec_load. Its relocate_kernel turns paging off and
jumps to the purgatory in protected mode; the purgatory (arch/i386/purgatory)
checks the segments, backs up low memory for a crash kernel and enters the new
kernel at the start of its protected-mode part with %esi = the zero page, as
the 32-bit boot protocol asks (Documentation/arch/x86/boot.rst).

What differs from x86_64 (kexec-tools' i386 bzImage loader, summarised in
kexec-tools-facts §3.2/§4.3):

* the kernel goes bottom-up, at or above max(1 MiB, pref_address), ending
  below min(0x38000000, initrd_addr_max + 1); the purgatory stays below 2 GiB;
  the initrd below initrd_addr_max; a non-crash setup segment below 640 KiB;
* the ELF core header is ELF32 while all RAM ends at or below 4 GiB, ELF64
  beyond (``CrashFacts.core_class`` forces either); virtual addresses are
  0xC0000000 + paddr up to the end of lowmem and -1 (all ones) above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.arch import x86
from kexec_py.arch.base import FileInputs, LoadInputs
from kexec_py.errors import CorruptImage, SnapshotError, UnsupportedImage
from kexec_py.image.bzimage import BzImage, header_len, looks_like_bzimage, read_setup_header
from kexec_py.image.open import ImageFormat
from kexec_py.plan.placement import Allocator, Placement
from kexec_py.plan.plan import Segment, SegmentPlan
from kexec_py.record import replace     # x86.CrashFacts is a Record (dataclasses.replace takes dataclasses only)
from kexec_py.arch.x86 import PAGE_SIZE
from kexec_py.plan.ranges import GiB, KiB, MiB, Range, align_up
from kexec_py.structs import kexec_uapi as K

ENTRY32_REGS = ("eax", "ebx", "ecx", "edx", "esi", "edi", "esp", "ebp", "eip")
PAGE_OFFSET = 0xC0000000        # the 3G/1G split of Debian's (and most) 32-bit kernels
LOWMEM_LIMIT_DEFAULT = 0x38000000   # 896 MiB: kexec-tools' fixed lowmem end, when kcore cannot tell
EM_386 = 3
SETUP_MIN = 0x3000
LOW_SETUP_MAX = 640 * KiB       # a setup segment outside a crash load stays in conventional memory
PURGATORY_MAX = 0x80000000
KERNEL_MAX = 0x38000000         # the kernel must end in lowmem of even a 3G/1G kernel
INITRD_MIN = 16 * MiB
PROTOCOL_RELOCATABLE = 0x0205


@dataclass(frozen=True, slots=True)
class I386:
    name: str = "i386"
    kexec_arch: int = K.KEXEC_ARCH_DEFAULT      # as kexec-tools; the kernel also takes KEXEC_ARCH_386
    native_kexec_arch: int = K.KEXEC_ARCH_386
    destination_limit: int = (1 << 32) - 1      # the top of the 32-bit address space
    elf_machine: str = "EM_386"
    has_file_syscall: bool = False              # no kexec_file_load on 32-bit x86
    device_tree: bool = False
    hotplug_flag: int = K.KEXEC_UPDATE_ELFCOREHDR   # --hotplug (0: not supported here)
    signed_kind: str = ""                       # no kexec_file_load: nothing can be loaded under lockdown
    formats: tuple[ImageFormat, ...] = (
        ImageFormat("bzImage", looks_like_bzimage, lambda data, path: parse_bzimage32(data, path=path)),
    )

    def read_crash_facts(self, sys) -> x86.CrashFacts:
        facts = x86.read_crash_facts(sys, page_offset_default=PAGE_OFFSET)
        return replace(facts, page_offset=PAGE_OFFSET, kernel_text=None,
                       lowmem_limit=lowmem_limit(sys.kcore_headers()))

    def plan_crash(self, image: BzImage, inputs: LoadInputs, facts: x86.CrashFacts, purgatory) -> SegmentPlan:
        if forced := x86.options(inputs).core_header_class:        # --elf32/64-core-headers
            facts = replace(facts, core_class=forced)
        return plan_bzimage32_crash(image, inputs, facts, purgatory)

    def read_load_facts(self, sys) -> x86.LoadFacts:
        return x86.read_load_facts(sys)

    def plan_load(self, image: BzImage, inputs: LoadInputs, facts: x86.LoadFacts, purgatory) -> SegmentPlan:
        return plan_bzimage32_load(image, inputs, facts, purgatory)

    def file_inputs(self, image) -> FileInputs:
        import errno

        from kexec_py.errors import FileSyscallUnavailable
        raise FileSyscallUnavailable("syscall kexec_file_load not available on i386", "use -c (kexec_load)",
                                     errno=errno.ENOSYS)

    def signed(self, kernel) -> bool:
        return False                            # nothing to verify without kexec_file_load


def parse_bzimage32(data: bytes, *, path: str) -> BzImage:
    """Read the setup header of a bzImage for its 32-bit entry (protocol 2.02+, loaded high)."""
    from kexec_py.structs import bootparam as bp
    hdr, setup_size = read_setup_header(data, path=path)
    if hdr.version < 0x0202 or not hdr.loadflags & bp.LOADED_HIGH:
        raise UnsupportedImage(f"{path}: boot protocol {hdr.version >> 8}.{hdr.version & 0xff:02d} "
                               "or a zImage: kexec-py needs a bzImage with protocol 2.02 or newer")
    relocatable = hdr.version >= PROTOCOL_RELOCATABLE and bool(hdr.relocatable_kernel)
    align = hdr.kernel_alignment if relocatable else MiB
    if align == 0 or align & (align - 1):
        raise CorruptImage(f"{path}: kernel_alignment {align:#x} is not a power of two")
    payload = len(data) - setup_size
    init_size = hdr.init_size if hdr.version >= 0x020A else 0
    return BzImage(
        path=path, data=data, version=hdr.version, setup_sects=hdr.setup_sects or 4, setup_size=setup_size,
        loadflags=hdr.loadflags, xloadflags=hdr.xloadflags if hdr.version >= 0x020C else 0,
        relocatable=relocatable, kernel_alignment=align, min_alignment=hdr.min_alignment,
        pref_address=hdr.pref_address if hdr.version >= 0x020A else MiB,
        init_size=max(init_size, align_up(payload, PAGE_SIZE)),
        cmdline_size=hdr.cmdline_size if hdr.version >= 0x0206 else 255,
        initrd_addr_max=hdr.initrd_addr_max if hdr.version >= 0x0203 else KERNEL_MAX - 1,
        header_len=header_len(data))


def lowmem_limit(kcore: bytes | None) -> int:
    """Where the running kernel's linear map of RAM ends: the top of the ELF32 /proc/kcore
    PT_LOADs that map vaddr = PAGE_OFFSET + paddr (kcore shows only lowmem RAM there)."""
    from kexec_py.system.kcore import parse_kcore
    try:
        core = parse_kcore(kcore)
    except SnapshotError:
        return LOWMEM_LIMIT_DEFAULT
    if core.elf_class != 32:
        return LOWMEM_LIMIT_DEFAULT
    ends = [ld.vaddr - PAGE_OFFSET + ld.size for ld in core.loads
            if ld.vaddr >= PAGE_OFFSET and ld.vaddr - PAGE_OFFSET == ld.paddr]
    return max(ends) if ends else LOWMEM_LIMIT_DEFAULT


def core_class(facts: x86.CrashFacts) -> int:
    """ELF32 unless RAM reaches past 4 GiB (or the caller forced a class)."""
    if facts.core_class in (32, 64):
        return facts.core_class
    return 64 if max((r.end for r in facts.ram), default=0) > 4 * GiB else 32


def split_at(ranges, limit: int) -> list[Range]:
    """Cut the ranges that straddle ``limit`` in two, so lowmem keeps its virtual addresses."""
    out = []
    for r in ranges:
        out += [Range(r.start, limit), Range(limit, r.end)] if r.start < limit < r.end else [r]
    return out


def _place_boot(alloc: Allocator, image: BzImage, inputs: LoadInputs, cmdline: str, purgatory,
                *, crash: bool, efi: x86.EfiHandover | None = None) -> x86.BootLayout:
    """Purgatory and setup top-down, the kernel bottom-up, the initrd top-down."""
    x86.check_cmdline(image, cmdline)
    purg = alloc.take("purgatory", Placement(size=purgatory.memsz, align=purgatory.align,
                                             min_addr=SETUP_MIN, max_addr=PURGATORY_MAX))
    cmd_bytes = cmdline.encode() + b"\0"
    setup_max = 4 * GiB if crash else min(LOW_SETUP_MAX, purg.start)
    setup = alloc.take("setup", Placement(size=x86.setup_size(cmd_bytes, efi), min_addr=SETUP_MIN,
                                          max_addr=setup_max, top_down=crash))
    kernel_size = align_up(image.init_size, PAGE_SIZE)
    kernel_min = max(MiB, image.pref_address) if image.relocatable else MiB
    kernel_max = min(KERNEL_MAX, image.initrd_addr_max + 1) if image.relocatable else MiB + kernel_size
    kernel = alloc.take("kernel", Placement(size=kernel_size, align=image.kernel_alignment, min_addr=kernel_min,
                                            max_addr=kernel_max, top_down=False))
    initrd = None
    if inputs.initrd is not None:
        initrd = alloc.take("initrd", Placement(size=max(len(inputs.initrd), 1), min_addr=INITRD_MIN,
                                                max_addr=image.initrd_addr_max + 1))
    return x86.BootLayout(purg, setup, kernel, initrd, cmd_bytes)


def _boot_segments(image: BzImage, inputs: LoadInputs, boot: x86.BootLayout, purgatory, *, e820, running, acpi_rsdp,
                   extra: list[Segment], backup: tuple | None,
                   efi: x86.EfiHandover | None = None) -> tuple[list[Segment], int]:
    initrd = Range.sized(boot.initrd.start, len(inputs.initrd)) if boot.initrd else None
    setup = x86.setup_bytes(image.setup_header, boot.setup, boot.cmd_bytes, initrd,
                            e820=e820, running=running, acpi_rsdp=acpi_rsdp, rng_seed=inputs.rng_seed,
                            efi=efi)
    segments = [*extra, Segment("setup", setup, boot.setup.start, boot.setup.size),
                Segment("kernel", image.payload, boot.kernel.start, boot.kernel.size)]
    if boot.initrd:
        segments.append(Segment("initrd", inputs.initrd, boot.initrd.start, boot.initrd.size))
    regs = dict(esi=boot.setup.start, eip=boot.kernel.start)     # esp 0: the purgatory's stack
    purg_seg, entry = link_purgatory32(purgatory, boot.purgatory, segments, regs=regs, backup=backup,
                                       skip_checks=inputs.no_checks, **x86.purgatory_options(inputs))
    return sorted([*segments, purg_seg], key=lambda s: s.mem), entry


def link_purgatory32(purgatory, where: Range, segments, *, regs: dict[str, int], backup: tuple | None,
                     skip_checks: bool, **options):
    return x86.link_entry_purgatory(purgatory, where, segments, regs_symbol="entry32_regs",
                                    reg_names=ENTRY32_REGS, reg_size=4, regs=regs, backup=backup,
                                    skip_checks=skip_checks, **options)


def plan_bzimage32_crash(image: BzImage, inputs: LoadInputs, facts: x86.CrashFacts, purgatory) -> SegmentPlan:
    """A capture kernel, every segment inside the highest crash region."""
    if not image.relocatable:
        raise UnsupportedImage(f"{image.path} is not relocatable (boot protocol 2.05+ with "
                               "relocatable_kernel): it cannot run from the crash region",
                               "build the capture kernel with CONFIG_RELOCATABLE=y")
    region = facts.crash_regions[-1]
    alloc = inputs.allocator([region])
    limit = facts.lowmem_limit or LOWMEM_LIMIT_DEFAULT
    cc = x86.place_crash_core(alloc, facts, elf_class=core_class(facts), machine=EM_386,
                              ram=split_at(x86.dump_ram(facts), limit), hotplug_size=inputs.hotplug_size)
    e820 = x86.crash_e820(facts, backup_src=cc.backup_src, taken_out=[cc.backup, cc.elfcorehdr])
    # i386 kernels do not set XLF_EFI_KEXEC (the kernel's kexec EFI support is x86_64's), so
    # this hands on no EFI for them, as kexec-tools' 32-bit loader does not either
    efi, efi_notes = x86.plan_efi(inputs, facts.efi, image.setup_header)
    cmdline = x86.crash_cmdline(inputs, cc, e820, acpi_rsdp=0 if efi else x86.running_acpi_rsdp(facts))
    boot = _place_boot(alloc, image, inputs, cmdline, purgatory, crash=True, efi=efi)
    segments, entry = _boot_segments(image, inputs, boot, purgatory, e820=e820, running=facts.boot_params,
                                     acpi_rsdp=facts.acpi_rsdp, extra=cc.segments(),
                                     backup=(cc.backup_src, cc.backup.start), efi=efi)
    notes = (*x86.crash_notes(facts, region, cc, e820), f"lowmem ends at {limit:#x}", *efi_notes)
    return SegmentPlan(arch="i386", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=x86.crash_flags(inputs, K.KEXEC_ARCH_DEFAULT), cmdline=cmdline,
                       allowed=facts.crash_regions, notes=notes)


def plan_bzimage32_load(image: BzImage, inputs: LoadInputs, facts: x86.LoadFacts, purgatory) -> SegmentPlan:
    """A kernel for a later ``kexec -e``, handed the firmware's memory map."""
    below_4g = [r.intersect(Range(0, 4 * GiB)) for r in facts.ram]       # paging is off: 32-bit addresses
    alloc = inputs.allocator([r for r in below_4g if r])
    efi, efi_notes = x86.plan_efi(inputs, facts.efi, image.setup_header)
    boot = _place_boot(alloc, image, inputs, inputs.cmdline, purgatory, crash=False, efi=efi)
    segments, entry = _boot_segments(image, inputs, boot, purgatory, e820=facts.e820, running=facts.boot_params,
                                     acpi_rsdp=facts.acpi_rsdp, extra=[], backup=None, efi=efi)
    return SegmentPlan(arch="i386", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ARCH_DEFAULT,
                       cmdline=inputs.cmdline, allowed=facts.ram,
                       notes=(f"memory map from {facts.source}", *x86.e820_notes(facts.e820), *efi_notes))
