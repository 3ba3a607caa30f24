"""What x86_64 and i386 share: the memory picture of a crashed machine, the
capture kernel's e820, the zero page, and the 640 KiB low-memory backup.

Facts are gathered from a SystemView once (``read_crash_facts``); everything
after that is pure.
"""

from __future__ import annotations

from kexec_py.arch.x86_options import X86Options
from kexec_py.errors import NoCrashMemory, SnapshotError
from kexec_py.plan.elf_core import Backup, KernelTextMap
from kexec_py.plan.ranges import KiB, Range, align_down, align_up, merge, subtract
from kexec_py.record import REQUIRED, Record
from kexec_py.system.kcore import kcore_loads
from kexec_py.system.view import SystemView, TypedRange

BACKUP_SRC_DEFAULT = Range(0, 0xA0000)      # the first 640 KiB
ELFCOREHDR_MIN = 16 * KiB
KERNEL_TEXT_START = 0xFFFFFFFF80000000      # __START_KERNEL_map
KERNEL_TEXT_END = 0xFFFFFFFFC0000000        # start of the module area
PAGE_OFFSET_DEFAULT = 0xFFFF888000000000    # x86_64 direct map without KASLR
# x86 base pages are 4 KiB, always: the boot protocol's layouts are in these units (segments
# are aligned to the running kernel's page size by the allocator, which is this on x86)
PAGE_SIZE = 4096

# /proc/iomem names that become non-RAM entries of the capture kernel's e820
E820_NAMES = {
    "ACPI Tables": "acpi",
    "ACPI Non-volatile Storage": "nvs",
    "reserved": "reserved",
    "Reserved": "reserved",
    "Persistent Memory (legacy)": "pram",
    "Persistent Memory": "pmem",
}


class CrashFacts(Record):
    _defaults = dict(
        crash_regions=REQUIRED,         # tuple[Range, ...]
        ram=REQUIRED,                   # tuple[Range, ...]  every System RAM range, at any depth
        other=REQUIRED,                 # tuple[TypedRange, ...]  ACPI, NVS, reserved, PMEM (for the e820)
        excluded=REQUIRED,              # tuple[Range, ...]  never dumped (GART)
        notes=REQUIRED,                 # tuple[tuple[int, int], ...]  crash notes, then vmcoreinfo: (paddr, size)
        kernel_text=REQUIRED,           # KernelTextMap | None
        page_offset=REQUIRED,           # int | None
        boot_params=REQUIRED,           # bytes | None  the running kernel's zero page
        acpi_rsdp=0,                    # int  from the EFI system table, when boot_params has none
        lowmem_limit=None,              # int | None  i386: RAM from here up has no linear mapping
        core_class=None,                # int | None  force ELF32/ELF64 core headers; None: the arch decides
        efi=None,                       # "EfiFacts | None"  the EFI the running kernel was booted from; None: none
    )
    __slots__ = tuple(_defaults)


def read_crash_facts(sys: SystemView, *, page_offset_default: int | None) -> CrashFacts:
    iomem = sys.iomem
    regions = tuple(sys.crash_regions())
    if not regions:
        raise NoCrashMemory("no 'Crash kernel' region in /proc/iomem: memory for a crash kernel is not reserved",
                            "boot with crashkernel=256M (or more) on the kernel command line")
    other = tuple(TypedRange(r.range, E820_NAMES[r.name]) for r in iomem.walk() if r.name in E820_NAMES)
    notes = sys.core_notes()
    kcore = kcore_loads(sys.kcore_headers())
    return CrashFacts(
        crash_regions=regions,
        ram=tuple(merge(iomem.containing_name("System RAM"))),
        other=other,
        excluded=tuple(iomem.named("GART")),
        notes=tuple(notes),
        kernel_text=_kernel_text(kcore, iomem.named("Kernel code")),
        page_offset=_page_offset(kcore, page_offset_default),
        boot_params=sys.boot_params(),
        acpi_rsdp=_efi_acpi_rsdp(sys),
        efi=read_efi_facts(sys),
    )


class EfiFacts(Record):
    """What the running kernel shows of the EFI firmware it was booted from, which a kernel
    started through kexec_load needs to keep using EFI (it cannot ask the firmware again:
    boot services are gone and the runtime services are mapped at the running kernel's
    virtual addresses, which the new kernel must map the same way)."""
    _defaults = dict(
        info=REQUIRED,                  # bytes  the running zero page's efi_info (32 bytes)
        systab=REQUIRED,                # bool  /sys/firmware/efi/systab exists
        fw_vendor=REQUIRED,             # int | None  /sys/firmware/efi/fw_vendor (None: absent)
        runtime=REQUIRED,               # int | None  /sys/firmware/efi/runtime
        tables=REQUIRED,                # int | None  /sys/firmware/efi/config_table
        smbios=REQUIRED,                # int  SMBIOS= of the systab, 0 when it has none
        runtime_map=REQUIRED,           # tuple[tuple[int, int, int, int, int], ...] | None  (type, phys, virt, pages, attr)
        platform_size=REQUIRED,         # int | None  /sys/firmware/efi/fw_platform_size: 64 or 32
    )
    __slots__ = tuple(_defaults)


def read_efi_facts(sys: SystemView) -> EfiFacts | None:
    """The EFI facts, or None when the running kernel was not booted through EFI (no
    boot_params, or its efi_info describes no memory map)."""
    from kexec_py.structs import fast as F       # struct forms of bootparam's, for speed (no construct)
    running = sys.boot_params()
    at = F.BOOT_PARAMS_AT["efi_info"]
    if not running or len(running) < at + F.EFI_INFO.size:
        return None
    info = bytes(running[at:at + F.EFI_INFO.size])
    if not F.EFI_INFO.unpack(info)[F.EFI_INFO_NAMES.index("efi_memmap_size")]:
        return None
    rmap = sys.efi_runtime_map()
    from kexec_py.system.view import EFI_RUNTIME_MAP_FIELDS
    return EfiFacts(
        info=info, systab=sys.exists("/sys/firmware/efi/systab"),
        fw_vendor=sys.efi_number("fw_vendor"), runtime=sys.efi_number("runtime"),
        tables=sys.efi_number("config_table"), smbios=sys.efi_systab().get("SMBIOS", 0),
        runtime_map=None if rmap is None else tuple(tuple(d[k] for k in EFI_RUNTIME_MAP_FIELDS) for d in rmap),
        platform_size=sys.efi_platform_size())


class EfiHandover(Record):
    """What a plan hands the new kernel of EFI: efi_info for its zero page (the memory map
    fields are filled where the map lands), a SETUP_EFI setup_data and the runtime map."""
    _defaults = dict(
        info=REQUIRED,                  # dict  efi_info fields taken from the running kernel
        setup_data=REQUIRED,            # bytes  the SETUP_EFI payload (struct efi_setup_data)
        memmap=REQUIRED,                # bytes  the runtime map: EFI memory descriptors, 40 bytes each
    )
    __slots__ = tuple(_defaults)

    @property
    def room(self) -> int:
        """Bytes the setup segment needs for it (16-aligned parts)."""
        from kexec_py.structs.fast import SETUP_DATA    # bootparam.setup_data's struct form (speed)
        return align_up(SETUP_DATA.size + len(self.setup_data), 16) + len(self.memmap)


def efi_handover(efi: EfiFacts | None, setup_header: bytes, *, noefi: bool) -> tuple[EfiHandover | None, str | None]:
    """(what to hand on of EFI, or None; a note saying why not, when there is EFI to speak of).

    Handed on, as kexec-tools does for bzImage64, when the image says it can take it
    (XLF_EFI_KEXEC), --noefi is not given, the running kernel was booted through EFI with
    version 1 memory descriptors, and it shows its system table, fw_vendor, config_table
    and a non-empty runtime map. The runtime field (unused by kernels since 5.7) is 0 when
    /sys/firmware/efi/runtime is absent, where kexec-tools would give up."""
    from kexec_py.structs import fast as F       # struct forms of bootparam's, for speed (no construct)
    if noefi:
        return None, "--noefi: no EFI information is passed (efi_info in the zero page is empty)"
    if efi is None:
        return None, None
    if not F.setup_header_field(setup_header, "xloadflags") & F.XLF_EFI_KEXEC:
        return None, ("EFI not passed: the kernel image cannot take the EFI runtime state from kexec "
                      "(no XLF_EFI_KEXEC in its xloadflags)")
    info = dict(zip(F.EFI_INFO_NAMES, F.EFI_INFO.unpack(efi.info)))
    if info["efi_memdesc_version"] != F.EFI_MEMDESC_VERSION:
        return None, f"EFI not passed: memory descriptor version {info['efi_memdesc_version']} (only 1 is known)"
    missing = [name for name, value in (("systab", efi.systab or None), ("fw_vendor", efi.fw_vendor),
                                        ("config_table", efi.tables)) if value is None]
    if missing:
        return None, f"EFI not passed: /sys/firmware/efi/{', '.join(missing)} missing"
    if not efi.runtime_map:
        return None, ("EFI not passed: no /sys/firmware/efi/runtime-map (the running kernel has no EFI "
                      "runtime services, or lacks CONFIG_EFI_RUNTIME_MAP)")
    # bootparam.efi_setup_data (fw_vendor, runtime, tables, smbios, reserved[8]) and
    # efi_memory_desc (type, pad, phys_addr, virt_addr, num_pages, attribute), as struct forms
    setup_data = F.EFI_SETUP_DATA.pack(efi.fw_vendor, efi.runtime or 0, efi.tables, efi.smbios, *[0] * 8)
    memmap = b"".join(F.EFI_MEMORY_DESC.pack(t, 0, p, v, n, a) for t, p, v, n, a in efi.runtime_map)
    keep = {k: info[k] for k in ("efi_loader_signature", "efi_systab", "efi_systab_hi", "efi_memdesc_version")}
    return EfiHandover(info=keep, setup_data=setup_data, memmap=memmap), None


def _efi_acpi_rsdp(sys: SystemView) -> int:
    systab = sys.efi_systab()
    return systab.get("ACPI20", systab.get("ACPI", 0))


def _kernel_text(kcore, kernel_code: list[Range]) -> KernelTextMap | None:
    for vaddr, paddr, size in kcore:
        if KERNEL_TEXT_START <= vaddr < KERNEL_TEXT_END:
            if paddr < 0:
                if not kernel_code:
                    return None
                paddr = kernel_code[0].start
            return KernelTextMap(vaddr=vaddr, paddr=paddr, size=size)
    return None


def _page_offset(kcore, default: int | None) -> int | None:
    """The direct-map base: kcore's RAM entries map vaddr = page_offset + paddr."""
    direct = [(v - p) for v, p, _ in kcore if p >= 0 and not KERNEL_TEXT_START <= v]
    return min(direct) if direct else default


# /sys/firmware/memmap type names -> e820 kinds (anything else: reserved)
MEMMAP_KINDS = {
    "System RAM": "ram",
    "ACPI Tables": "acpi",
    "ACPI Non-volatile Storage": "nvs",
    "Persistent Memory (legacy)": "pram",
    "Persistent Memory": "pmem",
}


class LoadFacts(Record):
    _defaults = dict(
        ram=REQUIRED,                   # tuple[Range, ...]
        e820=REQUIRED,                  # tuple[tuple[Range, str], ...]  the firmware's map, handed on to the new kernel
        boot_params=REQUIRED,           # bytes | None
        acpi_rsdp=REQUIRED,             # int
        source=REQUIRED,                # str
        efi=None,                       # "EfiFacts | None"
    )
    __slots__ = tuple(_defaults)


def read_load_facts(sys: SystemView) -> LoadFacts:
    """The machine's memory as the firmware described it at boot (/sys/firmware/memmap),
    or /proc/iomem's top level when that is missing."""
    memmap = sys.firmware_memmap()
    source = "/sys/firmware/memmap"
    if memmap is None:
        memmap = [TypedRange(r.range, r.name) for r in sys.iomem.roots]
        source = "/proc/iomem"
    e820 = [(t.range, MEMMAP_KINDS.get(t.type, "reserved")) for t in memmap
            if t.type in MEMMAP_KINDS or t.type.lower() in ("reserved", "unusable memory", "unknown e820 type")]
    e820 = _drop_overlaps(sorted(e820, key=lambda e: e[0].start))
    ram = tuple(merge(r for r, kind in e820 if kind == "ram"))
    if not ram:
        raise SnapshotError(f"{source} lists no System RAM", "is /sys mounted, and are you root?")
    return LoadFacts(ram=ram, e820=tuple(e820), boot_params=sys.boot_params(), acpi_rsdp=_efi_acpi_rsdp(sys),
                     source=source, efi=read_efi_facts(sys))


# -- the crash layout ------------------------------------------------------

def dump_ram(facts: CrashFacts) -> list[Range]:
    """The RAM the capture kernel must be able to read: all of it but the crash regions."""
    return subtract(facts.ram, list(facts.crash_regions) + list(facts.excluded))


def backup_source(facts: CrashFacts) -> Range:
    """The low RAM range the capture kernel will reuse, so the purgatory saves it first."""
    for r in dump_ram(facts):
        if r.end <= BACKUP_SRC_DEFAULT.end:
            return r
    return BACKUP_SRC_DEFAULT


def crash_e820(facts: CrashFacts, *, backup_src: Range, taken_out: list[Range]) -> list[tuple[Range, str]]:
    """The capture kernel's memory map: the backed-up low RAM and the crash regions
    (less the segments it must not overwrite) as RAM, plus the firmware tables."""
    ram = [_shrink_1k(r) for r in [backup_src, *facts.crash_regions]]
    ram = subtract([r for r in ram if r], taken_out)
    if not any(r.start >= BACKUP_SRC_DEFAULT.end for r in ram):
        from kexec_py.errors import EXIT_NO_CRASH_KERNEL
        raise NoCrashMemory("the crash region has no usable memory left for the capture kernel",
                            "reserve more with crashkernel=", exit_code=EXIT_NO_CRASH_KERNEL)
    entries = [(r, "ram") for r in ram]
    for t in facts.other:
        if not any(t.range.overlaps(r) for r in ram):
            entries.append((t.range, t.type))
    entries.sort(key=lambda e: e[0].start)
    return _drop_overlaps(entries)


def _shrink_1k(r: Range) -> Range | None:
    start, end = align_up(r.start, KiB), align_down(r.end, KiB)
    return Range(start, end) if start < end else None


def _drop_overlaps(entries: list[tuple[Range, str]]) -> list[tuple[Range, str]]:
    out: list[tuple[Range, str]] = []
    for r, kind in entries:
        if out and r.start < out[-1][0].end:
            continue
        out.append((r, kind))
    return out


# -- helpers for the bzImage planners (i386 uses them; the logic is x86_64's too) --

def check_cmdline(image, cmdline: str) -> None:
    """The boot protocol's cmdline_size bounds the new kernel's command line (NUL excluded)."""
    from kexec_py.errors import UsageError
    if len(cmdline.encode()) > image.cmdline_size:
        raise UsageError(f"the command line for the new kernel is {len(cmdline.encode())} bytes; "
                         f"{image.path} takes at most {image.cmdline_size}",
                         "shorten --append / --command-line")


def e820_notes(e820) -> tuple[str, ...]:
    return tuple(f"e820 {r.start:#016x}-{r.last:#016x} {kind}" for r, kind in e820)


class CrashCore(Record):
    """The two segments every x86 crash load places first, at the top of the crash region."""
    _defaults = dict(
        backup_src=REQUIRED,            # Range  the low RAM the purgatory copies ...
        backup=REQUIRED,                # Range  ... to here
        core=REQUIRED,                  # bytes  the ELF core header ...
        elfcorehdr=REQUIRED,            # Range  ... and where it goes
    )
    __slots__ = tuple(_defaults)

    def segments(self) -> list:
        from kexec_py.plan.plan import Segment
        return [Segment("backup", b"", self.backup.start, self.backup.size),
                Segment("elfcorehdr", self.core, self.elfcorehdr.start, self.elfcorehdr.size)]


def place_crash_core(alloc, facts: CrashFacts, *, elf_class: int, machine: int, ram=None,
                     hotplug_size: int | None = None) -> CrashCore:
    """Backup area, then ELF core header, top-down (kexec-tools' order). ``ram`` defaults
    to ``dump_ram(facts)``; i386 passes it split at the lowmem limit."""
    from kexec_py.plan.elf_core import CoreHeaderSpec, build_elf_core_header
    from kexec_py.plan.placement import Placement
    backup_src = backup_source(facts)
    backup = alloc.take("backup", Placement(size=align_up(backup_src.size, KiB)))
    core = build_elf_core_header(CoreHeaderSpec(
        elf_class=elf_class, machine=machine, notes=facts.notes,
        ram=tuple(dump_ram(facts) if ram is None else ram), page_offset=facts.page_offset,
        kernel_text=facts.kernel_text, backup=Backup(backup_src, backup.start),
        lowmem_limit=facts.lowmem_limit))
    size = max(len(core), ELFCOREHDR_MIN, align_up(hotplug_size or 0, KiB))    # --hotplug: the kernel's size
    elfcorehdr = alloc.take("elfcorehdr", Placement(size=size))
    return CrashCore(backup_src, backup, core, elfcorehdr)


def crash_notes(facts: CrashFacts, region: Range, cc: CrashCore, e820) -> tuple[str, ...]:
    """The --dry-run / -d lines of a crash plan."""
    return (f"crash region {region.start:#x}-{region.last:#x}",
            f"backup {cc.backup_src.start:#x}-{cc.backup_src.last:#x} -> {cc.backup.start:#x}",
            f"elfcorehdr {cc.elfcorehdr.start:#x} ({len(cc.core)} bytes, "
            f"ELF{32 if cc.core[4] == 1 else 64})",
            f"page_offset {facts.page_offset:#x}" if facts.page_offset is not None else "page_offset unknown",
            *e820_notes(e820))


class BootLayout(Record):
    """Where the parts every x86 Linux boot has were placed."""
    _defaults = dict(
        purgatory=REQUIRED,             # Range
        setup=REQUIRED,                 # Range
        kernel=REQUIRED,                # Range
        initrd=REQUIRED,                # Range | None
        cmd_bytes=REQUIRED,             # bytes
    )
    __slots__ = tuple(_defaults)


RNG_SEED_ROOM = 64          # a 16-byte setup_data header and a 32-byte seed, 16-aligned


def setup_size(cmd_bytes: bytes, efi: EfiHandover | None = None) -> int:
    return PAGE_SIZE + len(cmd_bytes) + 16 + RNG_SEED_ROOM + (efi.room if efi else 0)


def setup_bytes(setup_header: bytes, setup: Range, cmd_bytes: bytes, initrd: Range | None, *, e820,
                running: bytes | None, acpi_rsdp: int, rng_seed: bytes | None = None,
                efi: EfiHandover | None = None) -> bytes:
    """The setup segment: the zero page (with the image's ``setup_header``), the command
    line one page in, then (protocol 2.09+) the setup_data, each 16-aligned, the way the
    kernel's own kexec_file_load carries them: SETUP_EFI and the EFI runtime map (``efi``,
    which efi_info points at), and a SETUP_RNG_SEED with ``rng_seed``. The chain starts
    at the last one (kexec-tools' order: RNG seed, then EFI)."""
    from kexec_py.arch.zeropage import ZeroPageSpec, build_zero_page
    from kexec_py.structs import fast as F       # struct forms of bootparam's, for speed (no construct)
    tail = bytearray(cmd_bytes)
    head = 0
    efi_info = None

    def put(data: bytes) -> int:
        tail.extend(bytes(align_up(len(tail), 16) - len(tail)))
        at = setup.start + PAGE_SIZE + len(tail)
        tail.extend(data)
        return at

    version = F.setup_header_field(setup_header, "version")
    if efi is not None and version >= 0x0209:
        head = put(F.SETUP_DATA.pack(head, F.SETUP_EFI, len(efi.setup_data)) + efi.setup_data)
        memmap = put(efi.memmap)
        efi_info = dict(efi.info, efi_memdesc_size=F.EFI_MEMORY_DESC.size, efi_memmap=memmap & 0xFFFFFFFF,
                        efi_memmap_hi=memmap >> 32, efi_memmap_size=len(efi.memmap))
    if rng_seed and version >= 0x0209:
        head = put(F.SETUP_DATA.pack(head, F.SETUP_RNG_SEED, len(rng_seed)) + rng_seed)
    zero_page = build_zero_page(ZeroPageSpec(
        setup_header=setup_header, cmdline_addr=setup.start + PAGE_SIZE, setup_data=head,
        initrd=initrd, e820=tuple(e820), running=running, acpi_rsdp=acpi_rsdp, efi_info=efi_info))
    return zero_page + bytes(tail)


def options(inputs) -> X86Options:
    """The x86 options a plan was asked with (all defaults when none were parsed)."""
    return inputs.options if inputs.options is not None else X86Options()


def plan_efi(inputs, efi: EfiFacts | None, setup_header: bytes) -> tuple[EfiHandover | None, tuple[str, ...]]:
    """What a plan hands on of EFI, and the --dry-run / -d lines that say so."""
    handover, why_not = efi_handover(efi, setup_header, noefi=options(inputs).noefi)
    if handover is not None:
        from kexec_py.structs.fast import EFI_MEMORY_DESC     # bootparam.efi_memory_desc (speed)
        n = len(handover.memmap) // EFI_MEMORY_DESC.size
        sig = handover.info["efi_loader_signature"].decode("ascii", "replace")
        systab = handover.info["efi_systab"] | handover.info["efi_systab_hi"] << 32
        return handover, (f"EFI passed: {sig} system table {systab:#x}, runtime map of {n} descriptors, "
                          f"SETUP_EFI setup_data",)
    return None, (why_not,) if why_not else ()


def purgatory_options(inputs) -> dict:
    """What the user's options change in an x86 purgatory."""
    opts = options(inputs)
    return dict(console_port=opts.serial_port, serial_baud=opts.serial_baud,
                unhashed=("elfcorehdr",) if inputs.hotplug_size else ())


def crash_flags(inputs, kexec_arch: int) -> int:
    from kexec_py.structs import kexec_uapi as K
    return K.KEXEC_ON_CRASH | kexec_arch | (K.KEXEC_UPDATE_ELFCOREHDR if inputs.hotplug_size else 0)


def running_acpi_rsdp(facts: CrashFacts) -> int:
    """The ACPI RSDP's physical address: the running zero page's, else the EFI
    system table's; 0 when neither knows it."""
    from kexec_py.structs.fast import BOOT_PARAMS_AT       # bootparam.boot_params' offsets (speed)
    bp = facts.boot_params
    at = BOOT_PARAMS_AT["acpi_rsdp_addr"]
    raw = bytes(bp[at:at + 8]) if bp else b""
    from_zero_page = int.from_bytes(raw, "little") if len(raw) == 8 else 0      # read_field's default=0
    return from_zero_page or facts.acpi_rsdp


def crash_cmdline(inputs, cc: "CrashCore", e820, *, acpi_rsdp: int = 0) -> str:
    """The capture kernel's command line: the user's, acpi_rsdp= (when known),
    elfcorehdr=, and with --pass-memmap-cmdline its memory map as memmap= options.

    acpi_rsdp= is there for capture kernels that do not read the zero page's
    acpi_rsdp_addr (boot protocol < 2.14) and are not handed the EFI system table
    (the caller passes 0 when the plan hands on EFI): without either they could not
    find ACPI. kexec-tools 2.0.25 adds it too, in the same place, whenever it passes
    no EFI runtime map."""
    rsdp = f" acpi_rsdp={acpi_rsdp:#x}" if acpi_rsdp else ""
    line = f"{inputs.cmdline}{rsdp} elfcorehdr={cc.elfcorehdr.start >> 10}K"
    if options(inputs).pass_memmap:
        line += " memmap=exactmap" + "".join(_memmap_option(r, kind) for r, kind in e820)
    return line.strip()


def _memmap_option(r: Range, kind: str) -> str:
    """kexec-tools' forms: RAM of 100 KiB or more as K@, ACPI/NVS as K# (end rounded up to
    a KiB), persistent memory as K!; other kinds are left to the e820."""
    start = r.start >> 10
    if kind == "ram" and r.size >= 100 * KiB:
        return f" memmap={r.size >> 10}K@{start}K"
    if kind in ("acpi", "nvs"):
        return f" memmap={(align_up(r.end, KiB) >> 10) - start}K#{start}K"
    if kind == "pram":
        return f" memmap={r.size >> 10}K!{start}K"
    return ""


def link_entry_purgatory(purgatory, where: Range, segments, *, regs_symbol: str, reg_names: tuple,
                         reg_size: int, regs: dict[str, int], backup: tuple | None, skip_checks: bool,
                         stack_reg: str | None = None, console_port: int | None = None,
                         serial_baud: int | None = None,
                         unhashed: tuple[str, ...] = ()):
    """Link an x86 purgatory at ``where`` and fill in its variables: the entry registers
    (``regs_symbol``: ``reg_names`` in order, ``reg_size`` bytes each, unnamed ones 0;
    ``stack_reg``, when named and not given, points at the purgatory's stack), the
    backup to make, and the digest of every other segment but those named ``unhashed``
    (--hotplug: the kernel rewrites the elfcorehdr)."""
    from kexec_py.plan.plan import Segment
    from kexec_py.plan.purgatory import store_sha256

    linked = purgatory.link(where.start)
    values = {name: 0 for name in reg_names} | regs
    if stack_reg and not values[stack_reg]:
        values[stack_reg] = linked.symbol_addr("stack_end")
    linked.set_symbol(regs_symbol, b"".join(values[n].to_bytes(reg_size, "little") for n in reg_names))
    if backup:
        src, dst = backup
        linked.set_int("backup_src", src.start)
        linked.set_int("backup_size", src.size)
        linked.set_int("backup_dst", dst)
    linked.set_int("skip_checks", 1 if skip_checks else 0)
    if console_port is not None:
        linked.set_int("console_serial", 1)
        linked.set_int("serial_base", console_port)
        if serial_baud:
            linked.set_int("serial_baud", serial_baud)
    store_sha256(linked, [s for s in segments if s.name not in unhashed])
    return Segment("purgatory", bytes(linked.buf), where.start, where.size), linked.entry
