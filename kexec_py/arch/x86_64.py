"""x86_64: bzImage kernels entered at their 64-bit entry point through our purgatory."""

from __future__ import annotations

from dataclasses import dataclass

from kexec_py.arch import x86
from kexec_py.arch.base import LoadInputs
from kexec_py.errors import UnsupportedImage, UsageError
from kexec_py.image.bzimage import BzImage, looks_like_bzimage, parse_bzimage
from kexec_py.image.open import ImageFormat
from kexec_py.plan.elf_core import Backup, CoreHeaderSpec, build_elf_core_header
from kexec_py.plan.placement import Allocator, Placement
from kexec_py.plan.plan import Segment, SegmentPlan
from kexec_py.plan.ranges import GiB, KiB, MiB, PAGE_SIZE, Range, align_up
from kexec_py.structs import kexec_uapi as K

ENTRY64_OFFSET = 0x200          # startup_64 relative to the protected-mode kernel
ENTRY64_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")
SETUP_MIN = 0x3000              # nothing of ours below the real-mode trampoline area
INITRD_MIN = 16 * MiB
EM_X86_64 = 62


@dataclass(frozen=True, slots=True)
class X86_64:
    name: str = "x86_64"
    kexec_arch: int = K.KEXEC_ARCH_X86_64
    elf_machine: str = "EM_X86_64"
    has_file_syscall: bool = True
    formats: tuple[ImageFormat, ...] = (
        ImageFormat("bzImage64", looks_like_bzimage, parse_bzimage),
    )

    def read_crash_facts(self, sys) -> x86.CrashFacts:
        return x86.read_crash_facts(sys, page_offset_default=x86.PAGE_OFFSET_DEFAULT)

    def plan_crash(self, image: BzImage, inputs: LoadInputs, facts: x86.CrashFacts,
                   purgatory) -> SegmentPlan:
        return plan_bzimage_crash(image, inputs, facts, purgatory)

    def read_load_facts(self, sys) -> x86.LoadFacts:
        return x86.read_load_facts(sys)

    def plan_load(self, image: BzImage, inputs: LoadInputs, facts: x86.LoadFacts, purgatory) -> SegmentPlan:
        return plan_bzimage_load(image, inputs, facts, purgatory)


@dataclass(frozen=True, slots=True)
class _Boot:
    """Where the parts every bzImage load has were placed."""
    purgatory: Range
    setup: Range
    kernel: Range
    initrd: Range | None
    cmd_bytes: bytes


def _place_boot(alloc: Allocator, image: BzImage, inputs: LoadInputs, cmdline: str, purgatory) -> _Boot:
    """Purgatory, setup (zero page + command line), kernel and initrd, each top-down below the
    previous, with the alignment and lower bounds the boot protocol sets."""
    _check_cmdline(image, cmdline)
    purg = alloc.take("purgatory", Placement(size=purgatory.memsz, align=purgatory.align, min_addr=SETUP_MIN))
    cmd_bytes = cmdline.encode() + b"\0"
    setup = alloc.take("setup", Placement(size=PAGE_SIZE + len(cmd_bytes), min_addr=SETUP_MIN))
    kernel = alloc.take("kernel", Placement(size=align_up(image.init_size, PAGE_SIZE),
                                            align=image.kernel_alignment,
                                            min_addr=max(MiB, image.pref_address)))
    initrd = None
    if inputs.initrd is not None:
        initrd = alloc.take("initrd", Placement(size=max(len(inputs.initrd), 1), min_addr=INITRD_MIN))
    _check_4g(image, [setup, kernel] + ([initrd] if initrd else []))
    return _Boot(purg, setup, kernel, initrd, cmd_bytes)


def _boot_segments(image: BzImage, inputs: LoadInputs, boot: _Boot, purgatory, *, e820, running: bytes | None,
                   acpi_rsdp: int, extra: list[Segment], backup: tuple | None) -> tuple[list[Segment], int]:
    """The segments of ``boot`` plus ``extra``, and the purgatory linked to check them all."""
    from kexec_py.arch.zeropage import ZeroPageSpec, build_zero_page
    zero_page = build_zero_page(ZeroPageSpec(
        setup_header=image.data[0x1F1:0x1F1 + image.header_len],
        cmdline_addr=boot.setup.start + PAGE_SIZE,
        initrd=Range.sized(boot.initrd.start, len(inputs.initrd)) if boot.initrd else None,
        e820=tuple(e820), running=running, acpi_rsdp=acpi_rsdp))
    segments = [*extra,
                Segment("setup", zero_page + boot.cmd_bytes, boot.setup.start, boot.setup.size),
                Segment("kernel", image.payload, boot.kernel.start, boot.kernel.size)]
    if boot.initrd:
        segments.append(Segment("initrd", inputs.initrd, boot.initrd.start, boot.initrd.size))
    regs = dict(rsi=boot.setup.start, rip=boot.kernel.start + ENTRY64_OFFSET)
    purg_seg, entry = link_purgatory(purgatory, boot.purgatory, segments, regs=regs, backup=backup,
                                     skip_checks=inputs.no_checks)
    return sorted([*segments, purg_seg], key=lambda s: s.mem), entry


def _e820_notes(e820) -> tuple[str, ...]:
    return tuple(f"e820 {r.start:#016x}-{r.last:#016x} {kind}" for r, kind in e820)


def plan_bzimage_crash(image: BzImage, inputs: LoadInputs, facts: x86.CrashFacts,
                       purgatory) -> SegmentPlan:
    """Every segment of a capture-kernel load inside the highest crash region, placed
    top-down the way kexec-tools places them: backup, elfcorehdr, purgatory, setup,
    kernel, initrd."""
    region = facts.crash_regions[-1]
    alloc = Allocator([region])

    backup_src = x86.backup_source(facts)
    backup = alloc.take("backup", Placement(size=align_up(backup_src.size, KiB)))
    core = build_elf_core_header(CoreHeaderSpec(
        elf_class=64, machine=EM_X86_64, notes=facts.notes, ram=tuple(x86.dump_ram(facts)),
        page_offset=facts.page_offset, kernel_text=facts.kernel_text,
        backup=Backup(backup_src, backup.start)))
    elfcorehdr = alloc.take("elfcorehdr", Placement(size=max(len(core), x86.ELFCOREHDR_MIN)))

    cmdline = f"{inputs.cmdline} elfcorehdr={elfcorehdr.start >> 10}K".strip()
    boot = _place_boot(alloc, image, inputs, cmdline, purgatory)
    e820 = x86.crash_e820(facts, backup_src=backup_src, taken_out=[backup, elfcorehdr])
    segments, entry = _boot_segments(
        image, inputs, boot, purgatory, e820=e820, running=facts.boot_params, acpi_rsdp=facts.acpi_rsdp,
        extra=[Segment("backup", b"", backup.start, backup.size),
               Segment("elfcorehdr", core, elfcorehdr.start, elfcorehdr.size)],
        backup=(backup_src, backup.start))
    notes = (f"crash region {region.start:#x}-{region.last:#x}",
             f"backup {backup_src.start:#x}-{backup_src.last:#x} -> {backup.start:#x}",
             f"elfcorehdr {elfcorehdr.start:#x} ({len(core)} bytes)",
             f"page_offset {facts.page_offset:#x}" if facts.page_offset is not None else "page_offset unknown",
             *_e820_notes(e820))
    return SegmentPlan(arch="x86_64", segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ON_CRASH | K.KEXEC_ARCH_X86_64, cmdline=cmdline,
                       allowed=facts.crash_regions, notes=notes)


def plan_bzimage_load(image: BzImage, inputs: LoadInputs, facts: x86.LoadFacts, purgatory) -> SegmentPlan:
    """A kernel for a later ``kexec -e``: placed top-down in RAM, handed the firmware's memory map."""
    alloc = Allocator(list(facts.ram))
    boot = _place_boot(alloc, image, inputs, inputs.cmdline, purgatory)
    segments, entry = _boot_segments(image, inputs, boot, purgatory, e820=facts.e820, running=facts.boot_params,
                                     acpi_rsdp=facts.acpi_rsdp, extra=[], backup=None)
    return SegmentPlan(arch="x86_64", segments=tuple(segments), entry=entry, flags=K.KEXEC_ARCH_X86_64,
                       cmdline=inputs.cmdline, allowed=facts.ram,
                       notes=(f"memory map from {facts.source}", *_e820_notes(facts.e820)))


def link_purgatory(purgatory, where, segments, *, regs: dict[str, int],
                   backup: tuple | None, skip_checks: bool):
    """Link the purgatory at ``where`` and fill in its variables: the digest of every
    other segment, the backup to make, and the registers to enter the kernel with."""
    from kexec_py.plan.purgatory import store_sha256

    linked = purgatory.link(where.start)
    values = {name: 0 for name in ENTRY64_REGS} | regs
    values["rsp"] = values["rsp"] or linked.symbol_addr("stack_end")
    linked.set_symbol("entry64_regs", b"".join(values[n].to_bytes(8, "little") for n in ENTRY64_REGS))
    if backup:
        src, dst = backup
        linked.set_int("backup_src", src.start)
        linked.set_int("backup_size", src.size)
        linked.set_int("backup_dst", dst)
    linked.set_int("skip_checks", 1 if skip_checks else 0)
    store_sha256(linked, segments)
    return Segment("purgatory", bytes(linked.buf), where.start, where.size), linked.entry


def _check_cmdline(image: BzImage, cmdline: str) -> None:
    if len(cmdline.encode()) > image.cmdline_size:
        raise UsageError(f"the command line for the new kernel is {len(cmdline.encode())} bytes; "
                         f"{image.path} takes at most {image.cmdline_size}",
                         "shorten --append / --command-line")


def _check_4g(image: BzImage, ranges) -> None:
    from kexec_py.structs.bootparam import XLF_CAN_BE_LOADED_ABOVE_4G
    if image.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G:
        return
    for r in ranges:
        if r.end > 4 * GiB:
            raise UnsupportedImage(f"{image.path} cannot be loaded above 4 GiB, but the crash region is there",
                                   "reserve crash memory below 4 GiB (crashkernel=SIZE without ,high)")
