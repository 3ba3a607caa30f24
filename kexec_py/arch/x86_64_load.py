"""x86_64 kexec_load plans: bzImage, ELF vmlinux and UKI kernels placed with the
zero page, the command line, the initrd and our purgatory (for a crash load also the
backup region and the ELF core header). Split from ``kexec_py.arch.x86_64`` so that
the kexec_file_load path, which needs none of it, does not import it (issue 13)."""

from __future__ import annotations

TYPE_CHECKING = False      # typing.TYPE_CHECKING without importing typing (speed, issue 13)

from kexec_py.arch import x86
from kexec_py.arch.base import LoadInputs
from kexec_py.arch.x86 import PAGE_SIZE
from kexec_py.arch.x86_64 import (ELF_CMDLINE_SIZE, ELF_KERNEL_ALIGN, ELF_KERNEL_MIN, EM_X86_64, ENTRY64_OFFSET,
                                  ENTRY64_REGS, INITRD_MIN, SETUP_MIN)
from kexec_py.errors import PlacementError, UnsupportedImage, UsageError
from kexec_py.image.bzimage import BzImage
from kexec_py.plan.placement import Allocator, Placement
from kexec_py.plan.plan import Segment, SegmentPlan
from kexec_py.plan.ranges import GiB, MiB, Range, align_down, align_up
from kexec_py.record import REQUIRED, Record
from kexec_py.structs import kexec_uapi as K

if TYPE_CHECKING:
    from kexec_py.image.uki import Uki
    from kexec_py.image.vmlinux import Vmlinux


def plan_crash(image, inputs: LoadInputs, facts: x86.CrashFacts, purgatory) -> SegmentPlan:
    if image.format == "vmlinux":      # (kexec_py.image.vmlinux and .uki: imported for such images only)
        return plan_vmlinux_crash(image, inputs, facts, purgatory)
    image, inputs = _unwrap_uki(image, inputs)
    return plan_bzimage_crash(image, inputs, facts, purgatory)


def plan_load(image, inputs: LoadInputs, facts: x86.LoadFacts, purgatory) -> SegmentPlan:
    if image.format == "vmlinux":      # (kexec_py.image.vmlinux and .uki: imported for such images only)
        return plan_vmlinux_load(image, inputs, facts, purgatory)
    image, inputs = _unwrap_uki(image, inputs)
    return plan_bzimage_load(image, inputs, facts, purgatory)


def _unwrap_uki(image, inputs: LoadInputs) -> tuple[BzImage, LoadInputs]:
    """A UKI boots as its .linux bzImage, with its .initrd and .cmdline unless the user gave their own."""
    if image.format != "uki":
        return image, inputs
    from kexec_py.record import replace
    cmdline, initrd = image.defaults(inputs.cmdline, inputs.initrd)
    return image.kernel, replace(inputs, cmdline=cmdline, initrd=initrd)


class KernelPart(Record):
    """What the shared x86_64 layout needs to know about the kernel it loads,
    whatever file it came from (bzImage, vmlinux, the bzImage inside a UKI)."""
    _defaults = dict(
        path=REQUIRED,                  # str
        placement=REQUIRED,             # Placement  size, alignment and lowest address of the kernel's memory
        header=REQUIRED,                # bytes  setup header for the zero page, from 0x1f1
        cmdline_size=REQUIRED,          # int
        above_4g=REQUIRED,              # bool  may the kernel, zero page and initrd lie above 4 GiB
        segments=REQUIRED,              # Callable[[int], list[Segment]]  the kernel's segments once placed at an address
        entry=REQUIRED,                 # Callable[[int], int]  its 64-bit entry point once placed there
        fixed=None,                     # int | None  load exactly here when that memory is free (vmlinux, -l)
    )
    __slots__ = tuple(_defaults)


def bzimage_part(image: BzImage) -> KernelPart:
    """The protected-mode part of a bzImage, entered at startup_64 (offset 0x200)."""
    size = align_up(image.init_size, PAGE_SIZE)
    from kexec_py.structs.fast import XLF_CAN_BE_LOADED_ABOVE_4G     # not bootparam: no construct (speed)
    return KernelPart(
        path=image.path,
        placement=Placement(size=size, align=image.kernel_alignment, min_addr=max(MiB, image.pref_address)),
        header=image.setup_header, cmdline_size=image.cmdline_size,
        above_4g=bool(image.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G),
        segments=lambda at: [Segment("kernel", image.payload, at, size)],
        entry=lambda at: at + ENTRY64_OFFSET)


def _place_boot(alloc: Allocator, kern: KernelPart, inputs: LoadInputs, cmdline: str, purgatory,
                efi: x86.EfiHandover | None = None) -> x86.BootLayout:
    """Purgatory, setup (zero page + command line), kernel and initrd, each top-down below the
    previous, with the alignment and lower bounds the boot protocol sets. A kernel with a
    ``fixed`` address is put there first when that memory is free."""
    x86.check_cmdline(kern, cmdline)
    kernel = _take_fixed(alloc, kern) if kern.fixed is not None else None
    purg = alloc.take("purgatory", Placement(size=purgatory.memsz, align=purgatory.align, min_addr=SETUP_MIN))
    cmd_bytes = cmdline.encode() + b"\0"
    setup = alloc.take("setup", Placement(size=x86.setup_size(cmd_bytes, efi), min_addr=SETUP_MIN))
    kernel = kernel or alloc.take("kernel", kern.placement)
    initrd = None
    if inputs.initrd is not None:
        initrd = alloc.take("initrd", Placement(size=max(len(inputs.initrd), 1), min_addr=INITRD_MIN))
    _check_4g(kern, [setup, kernel] + ([initrd] if initrd else []))
    return x86.BootLayout(purg, setup, kernel, initrd, cmd_bytes)


def _take_fixed(alloc: Allocator, kern: KernelPart) -> Range | None:
    """Reserve the kernel's own link-time range if it is free memory, else None."""
    from kexec_py.plan.ranges import subtract
    want = Range.sized(kern.fixed, align_up(kern.placement.size, PAGE_SIZE))
    if any(hole.contains(want) for hole in subtract(alloc.free, alloc.taken)):
        alloc.reserve(want)
        return want
    return None


def _boot_segments(kern: KernelPart, inputs: LoadInputs, boot: x86.BootLayout, purgatory, *, e820, running: bytes | None,
                   acpi_rsdp: int, extra: list[Segment], backup: tuple | None,
                   efi: x86.EfiHandover | None = None) -> tuple[list[Segment], int]:
    """The segments of ``boot`` plus ``extra``, and the purgatory linked to check them all."""
    initrd = Range.sized(boot.initrd.start, len(inputs.initrd)) if boot.initrd else None
    setup = x86.setup_bytes(kern.header, boot.setup, boot.cmd_bytes, initrd, e820=e820, running=running,
                            acpi_rsdp=acpi_rsdp, rng_seed=inputs.rng_seed, efi=efi)
    segments = [*extra,
                Segment("setup", setup, boot.setup.start, boot.setup.size),
                *kern.segments(boot.kernel.start)]
    if boot.initrd:
        segments.append(Segment("initrd", inputs.initrd, boot.initrd.start, boot.initrd.size))
    regs = dict(rsi=boot.setup.start, rip=kern.entry(boot.kernel.start))
    purg_seg, entry = link_purgatory(purgatory, boot.purgatory, segments, regs=regs, backup=backup,
                                     skip_checks=inputs.no_checks, **x86.purgatory_options(inputs))
    return sorted([*segments, purg_seg], key=lambda s: s.mem), entry


def plan_bzimage_crash(image: BzImage, inputs: LoadInputs, facts: x86.CrashFacts,
                       purgatory) -> SegmentPlan:
    """Every segment of a capture-kernel load inside the highest crash region, placed
    top-down the way kexec-tools places them: backup, elfcorehdr, purgatory, setup,
    kernel, initrd."""
    return plan_part_crash(bzimage_part(image), inputs, facts, purgatory)


def plan_part_crash(kern: KernelPart, inputs: LoadInputs, facts: x86.CrashFacts, purgatory,
                    notes: tuple[str, ...] = ()) -> SegmentPlan:
    """The crash layout around any kernel part: backup and ELF core header first."""
    region = facts.crash_regions[-1]
    alloc = inputs.allocator([region])
    cc = x86.place_crash_core(alloc, facts, elf_class=64, machine=EM_X86_64, hotplug_size=inputs.hotplug_size)
    e820 = x86.crash_e820(facts, backup_src=cc.backup_src, taken_out=[cc.backup, cc.elfcorehdr])
    efi, efi_notes = x86.plan_efi(inputs, facts.efi, kern.header)
    # acpi_rsdp= only for a capture kernel that is not handed the EFI system table
    cmdline = x86.crash_cmdline(inputs, cc, e820, acpi_rsdp=0 if efi else x86.running_acpi_rsdp(facts))
    boot = _place_boot(alloc, kern, inputs, cmdline, purgatory, efi)
    segments, entry = _boot_segments(
        kern, inputs, boot, purgatory, e820=e820, running=facts.boot_params, acpi_rsdp=facts.acpi_rsdp,
        extra=cc.segments(), backup=(cc.backup_src, cc.backup.start), efi=efi)
    notes = (*notes, *x86.crash_notes(facts, region, cc, e820), *efi_notes)
    return SegmentPlan(arch="x86_64", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=x86.crash_flags(inputs, K.KEXEC_ARCH_X86_64), cmdline=cmdline,
                       allowed=facts.crash_regions, notes=notes)


def plan_bzimage_load(image: BzImage, inputs: LoadInputs, facts: x86.LoadFacts, purgatory) -> SegmentPlan:
    """A kernel for a later ``kexec -e``: placed top-down in RAM, handed the firmware's memory map."""
    return plan_part_load(bzimage_part(image), inputs, facts, purgatory)


def plan_part_load(kern: KernelPart, inputs: LoadInputs, facts: x86.LoadFacts, purgatory,
                   notes: tuple[str, ...] = ()) -> SegmentPlan:
    alloc = inputs.allocator(facts.ram)
    efi, efi_notes = x86.plan_efi(inputs, facts.efi, kern.header)
    boot = _place_boot(alloc, kern, inputs, inputs.cmdline, purgatory, efi)
    segments, entry = _boot_segments(kern, inputs, boot, purgatory, e820=facts.e820, running=facts.boot_params,
                                     acpi_rsdp=facts.acpi_rsdp, extra=[], backup=None, efi=efi)
    return SegmentPlan(arch="x86_64", page_size=inputs.page_size, segments=tuple(segments), entry=entry,
                       flags=K.KEXEC_ARCH_X86_64,
                       cmdline=inputs.cmdline, allowed=facts.ram,
                       notes=(f"memory map from {facts.source}", *notes, *x86.e820_notes(facts.e820),
                              *efi_notes))


def link_purgatory(purgatory, where, segments, *, regs: dict[str, int],
                   backup: tuple | None, skip_checks: bool, **options):
    """Link the purgatory at ``where`` and fill in its variables: the digest of every
    other segment, the backup to make, and the registers to enter the kernel with."""
    return x86.link_entry_purgatory(purgatory, where, segments, regs_symbol="entry64_regs",
                                    reg_names=ENTRY64_REGS, reg_size=8, regs=regs, backup=backup,
                                    skip_checks=skip_checks, stack_reg="rsp", **options)


def _check_4g(kern: KernelPart, ranges) -> None:
    if kern.above_4g:
        return
    for r in ranges:
        if r.end > 4 * GiB:
            raise UnsupportedImage(f"{kern.path} cannot be loaded above 4 GiB, but the crash region is there",
                                   "reserve crash memory below 4 GiB (crashkernel=SIZE without ,high)")


# -- ELF vmlinux ---------------------------------------------------------------

def _elf_args(image: Vmlinux, inputs: LoadInputs) -> str:
    """How to enter the ELF kernel: "linux" (zero page, through the purgatory) or "none"."""
    style = x86.options(inputs).args or ("linux" if image.is_linux else None)
    if style is None:
        raise UsageError(f"{image.path} is an ELF program but not a Linux kernel (it has no 'Linux' ELF note)",
                         "pass --args-none to jump to its entry point, or --args-linux if it is a Linux kernel")
    if style == "elf":
        raise UsageError("--args-elf (ELF boot notes) is not supported by kexec-py",
                         "use --args-linux for a Linux vmlinux, or --args-none for other ELF programs")
    if style not in ("linux", "none"):
        raise UsageError(f"unknown ELF argument style {style!r}", "use --args-linux or --args-none")
    return style


def _faked_setup_header(image: Vmlinux, size: int) -> bytes:
    """The setup header a bzImage would carry, made up for a bare vmlinux: the kernel
    reads the protocol version, the command-line limit and the root flags from it."""
    from kexec_py.structs import bootparam as bp
    fields = {sc.name: 0 for sc in bp.setup_header.subcons}
    fields.update(header=bp.HDRS_MAGIC, version=0x020F, boot_flag=bp.BOOT_FLAG, root_flags=1,
                  loadflags=bp.LOADED_HIGH, kernel_alignment=ELF_KERNEL_ALIGN, relocatable_kernel=1,
                  min_alignment=ELF_KERNEL_ALIGN.bit_length() - 1,
                  xloadflags=bp.XLF_KERNEL_64 | bp.XLF_CAN_BE_LOADED_ABOVE_4G,
                  cmdline_size=ELF_CMDLINE_SIZE, initrd_addr_max=0x7FFFFFFF,
                  pref_address=align_down(image.start, ELF_KERNEL_ALIGN), init_size=size)
    return bp.setup_header.build(fields)


def vmlinux_part(image: Vmlinux, *, at_link_address: bool) -> KernelPart:
    """The PT_LOADs as one block, moved as a whole by a 2 MiB multiple: startup_64
    fixes up its own page tables for wherever it finds itself."""
    base = align_down(image.start, ELF_KERNEL_ALIGN)
    size = align_up(image.end, PAGE_SIZE) - base
    return KernelPart(
        path=image.path,
        placement=Placement(size=size, align=ELF_KERNEL_ALIGN,
                            min_addr=max(ELF_KERNEL_ALIGN, min(base, ELF_KERNEL_MIN))),
        header=_faked_setup_header(image, size), cmdline_size=ELF_CMDLINE_SIZE, above_4g=True,
        segments=lambda at: elf_segments(image, at - base),
        entry=lambda at: image.entry + (at - base),
        fixed=base if at_link_address else None)


def elf_segments(image: Vmlinux, delta: int) -> list[Segment]:
    """One page-aligned segment per PT_LOAD at p_paddr + ``delta`` (PT_LOADs that
    share a page after the rounding become one segment)."""
    groups: list[list] = []                       # [start, end, [(addr, bytes)]]
    for s in image.loads:
        addr = s.paddr + delta
        lo, hi = align_down(addr, PAGE_SIZE), align_up(addr + s.memsz, PAGE_SIZE)
        if groups and lo < groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], hi)
            groups[-1][2].append((addr, image.payload(s)))
        else:
            groups.append([lo, hi, [(addr, image.payload(s))]])
    out = []
    for i, (lo, hi, parts) in enumerate(groups):
        if len(parts) == 1 and parts[0][0] == lo:
            buf = parts[0][1]
        else:
            joined = bytearray(max(a - lo + len(p) for a, p in parts))
            for a, p in parts:
                joined[a - lo:a - lo + len(p)] = p
            buf = bytes(joined)
        out.append(Segment("kernel" if i == 0 else f"kernel.{i}", buf, lo, hi - lo))
    return out


def _moved_note(image: Vmlinux, plan: SegmentPlan) -> SegmentPlan:
    from kexec_py.record import replace
    kernel = next(s for s in plan.segments if s.name == "kernel")
    delta = kernel.mem - align_down(image.loads[0].paddr, PAGE_SIZE)
    note = (f"vmlinux PT_LOADs {image.start:#x}-{image.end - 1:#x} "
            + (f"moved by {delta:+#x}" if delta else "at their own addresses"))
    return replace(plan, notes=plan.notes + (note,))


def plan_vmlinux_crash(image: Vmlinux, inputs: LoadInputs, facts: x86.CrashFacts, purgatory) -> SegmentPlan:
    """A vmlinux as the capture kernel: its PT_LOADs moved into the crash region,
    with the same backup, ELF core header and e820 as a bzImage."""
    if _elf_args(image, inputs) == "none":
        return plan_elf_none(image, inputs, facts.crash_regions, crash=True)
    return _moved_note(image, plan_part_crash(vmlinux_part(image, at_link_address=False), inputs, facts,
                                              purgatory))


def plan_vmlinux_load(image: Vmlinux, inputs: LoadInputs, facts: x86.LoadFacts, purgatory) -> SegmentPlan:
    """A vmlinux for -l: at its own physical addresses when that RAM is free, else moved."""
    if _elf_args(image, inputs) == "none":
        return plan_elf_none(image, inputs, facts.ram, crash=False)
    return _moved_note(image, plan_part_load(vmlinux_part(image, at_link_address=True), inputs, facts,
                                             purgatory))


def plan_elf_none(image: Vmlinux, inputs: LoadInputs, allowed, *, crash: bool) -> SegmentPlan:
    """--args-none: the PT_LOADs where they say, entered at e_entry, no purgatory and
    nothing passed (an ELF program that is not Linux may not be movable)."""
    if inputs.initrd is not None:
        raise UsageError("--args-none passes nothing to the new kernel, so it cannot take an initrd",
                         "drop --initrd, or use --args-linux")
    segments = elf_segments(image, 0)
    for s in segments:
        if not any(a.contains(s.range) for a in allowed):
            where = "the crash region" if crash else "RAM"
            raise PlacementError(f"{image.path}: with --args-none the PT_LOADs stay at their own addresses, and "
                                 f"{s.mem:#x}-{s.mem + s.memsz - 1:#x} is outside {where}",
                                 "use --args-linux (the default for a Linux vmlinux), which moves the kernel")
    flags = (K.KEXEC_ON_CRASH if crash else 0) | K.KEXEC_ARCH_X86_64
    return SegmentPlan(arch="x86_64", page_size=inputs.page_size, segments=tuple(segments), entry=image.entry,
                       flags=flags, cmdline="",
                       allowed=tuple(allowed),
                       notes=("--args-none: entered at e_entry with no purgatory, no zero page and "
                              "no command line",))
