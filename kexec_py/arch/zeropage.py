"""The x86 zero page (struct boot_params) handed to a kernel entered at its 64-bit entry."""

from __future__ import annotations

from kexec_py.plan.ranges import MiB, Range
from kexec_py.record import REQUIRED, Record

E820_TYPES = {"ram": 1, "reserved": 2, "acpi": 3, "nvs": 4, "pmem": 7, "pram": 12}

# Parts of the running kernel's own zero page that describe the firmware and are
# still true for the next kernel.
_INHERITED = ("screen_info", "acpi_rsdp_addr")


class ZeroPageSpec(Record):
    _defaults = dict(
        setup_header=REQUIRED,          # bytes  the image's setup header bytes, from 0x1f1
        cmdline_addr=REQUIRED,          # int
        initrd=REQUIRED,                # Range | None
        e820=REQUIRED,                  # tuple[tuple[Range, str], ...]
        running=REQUIRED,               # bytes | None  /sys/kernel/boot_params/data of the running kernel
        acpi_rsdp=0,                    # int  used when the running zero page has none
        setup_data=0,                   # int  physical address of the first setup_data, or 0
        efi_info=None,                  # dict | None  efi_info's fields (EFI handed on), else it stays zero
    )
    __slots__ = tuple(_defaults)


def build_zero_page(spec: ZeroPageSpec) -> bytes:
    """The zero page: the image's setup header, what is inherited of the running kernel's
    (_INHERITED, the hardware subarch), efi_info, the loader's fields and the e820 table;
    all else zero.

    Written with the precompiled struct forms of kexec_py.structs.fast, for speed: building
    it through construct's boot_params (``_build_zero_page_construct`` below, which this
    function replaces) imports construct, 10-20 ms of a crash load's start (issue 13).
    tests/arch/test_zeropage_fast.py builds random pages both ways and compares the bytes."""
    import struct

    from kexec_py.structs import fast as F

    at, hdr_at = F.BOOT_PARAMS_AT, F.BOOT_PARAMS_AT["hdr"]
    page = bytearray(F.ZERO_PAGE_SIZE)
    header = bytes(spec.setup_header[:F.SETUP_HEADER.size])     # beyond the setup header: padding, zero
    page[hdr_at:hdr_at + len(header)] = header

    def field(name: str) -> int:
        return hdr_at + F.SETUP_HEADER_AT[name]

    if spec.running and len(spec.running) >= F.ZERO_PAGE_SIZE:
        running = spec.running
        for start, size in ((at["screen_info"], F.SCREEN_INFO_SIZE), (at["acpi_rsdp_addr"], 8),
                            (field("hardware_subarch"), 4), (field("hardware_subarch_data"), 8)):
            page[start:start + size] = running[start:start + size]
    if spec.efi_info is not None:
        F.EFI_INFO.pack_into(page, at["efi_info"], *(spec.efi_info[name] for name in F.EFI_INFO_NAMES))
    pack_into = struct.pack_into
    if not int.from_bytes(page[at["acpi_rsdp_addr"]:at["acpi_rsdp_addr"] + 8], "little"):
        pack_into("<Q", page, at["acpi_rsdp_addr"], spec.acpi_rsdp)
    page[field("type_of_loader")] = F.LOADER_TYPE_KEXEC
    page[field("loadflags")] = 0
    pack_into("<Q", page, field("setup_data"), spec.setup_data)
    pack_into("<L", page, field("cmd_line_ptr"), spec.cmdline_addr & 0xFFFFFFFF)
    pack_into("<L", page, at["ext_cmd_line_ptr"], spec.cmdline_addr >> 32)
    initrd = spec.initrd
    start, size = (initrd.start, initrd.size) if initrd else (0, 0)
    pack_into("<L", page, field("ramdisk_image"), start & 0xFFFFFFFF)
    pack_into("<L", page, at["ext_ramdisk_image"], start >> 32)
    pack_into("<L", page, field("ramdisk_size"), size & 0xFFFFFFFF)
    pack_into("<L", page, at["ext_ramdisk_size"], size >> 32)

    if len(spec.e820) > F.E820_MAX_ENTRIES_ZEROPAGE:
        from kexec_py.errors import PlacementError
        raise PlacementError(f"the new kernel's memory map has {len(spec.e820)} entries; "
                             f"the zero page holds {F.E820_MAX_ENTRIES_ZEROPAGE}")
    entry = F.E820_ENTRY
    for i, (r, kind) in enumerate(spec.e820):
        entry.pack_into(page, at["e820_table"] + i * entry.size, r.start, r.size, E820_TYPES[kind])
    page[at["e820_entries"]] = len(spec.e820)
    mem_k = _mem_k_above_1m(spec.e820)
    pack_into("<L", page, at["alt_mem_k"], min(mem_k, 0xFFFFFFFF))
    # screen_info.ext_mem_k (offset 2, u16), as _with_ext_mem_k
    pack_into("<H", page, at["screen_info"] + 2, min(mem_k, EXT_MEM_K_MAX))
    return bytes(page)


def _build_zero_page_construct(spec: ZeroPageSpec) -> bytes:
    """build_zero_page through construct's boot_params: the definition the fast form is
    tested against (tests/arch/test_zeropage_fast.py); not used by the loader."""
    from kexec_py.structs import bootparam as bp

    page = bytearray(bp.ZERO_PAGE_SIZE)
    page[bp.SETUP_HEADER_OFFSET:bp.SETUP_HEADER_OFFSET + len(spec.setup_header)] = spec.setup_header
    zp = bp.boot_params.parse(bytes(page))
    running = None
    if spec.running and len(spec.running) >= bp.ZERO_PAGE_SIZE:
        running = bp.boot_params.parse(spec.running[:bp.ZERO_PAGE_SIZE])
        for name in _INHERITED:
            zp[name] = running[name]
        zp.hdr.hardware_subarch = running.hdr.hardware_subarch
        zp.hdr.hardware_subarch_data = running.hdr.hardware_subarch_data

    if spec.efi_info is not None:
        zp.efi_info = spec.efi_info

    if not zp.acpi_rsdp_addr:
        zp.acpi_rsdp_addr = spec.acpi_rsdp
    hdr = zp.hdr
    hdr.type_of_loader = bp.LOADER_TYPE_KEXEC
    hdr.loadflags = 0
    hdr.setup_data = spec.setup_data
    hdr.cmd_line_ptr = spec.cmdline_addr & 0xFFFFFFFF
    zp.ext_cmd_line_ptr = spec.cmdline_addr >> 32
    if spec.initrd:
        hdr.ramdisk_image, zp.ext_ramdisk_image = spec.initrd.start & 0xFFFFFFFF, spec.initrd.start >> 32
        hdr.ramdisk_size, zp.ext_ramdisk_size = spec.initrd.size & 0xFFFFFFFF, spec.initrd.size >> 32
    else:
        hdr.ramdisk_image = hdr.ramdisk_size = zp.ext_ramdisk_image = zp.ext_ramdisk_size = 0

    if len(spec.e820) > bp.E820_MAX_ENTRIES_ZEROPAGE:
        from kexec_py.errors import PlacementError
        raise PlacementError(f"the new kernel's memory map has {len(spec.e820)} entries; "
                             f"the zero page holds {bp.E820_MAX_ENTRIES_ZEROPAGE}")
    table = [dict(addr=r.start, size=r.size, type=E820_TYPES[kind]) for r, kind in spec.e820]
    table += [dict(addr=0, size=0, type=0)] * (bp.E820_MAX_ENTRIES_ZEROPAGE - len(table))
    zp.e820_table = table
    zp.e820_entries = len(spec.e820)
    mem_k = _mem_k_above_1m(spec.e820)
    zp.alt_mem_k = min(mem_k, 0xFFFFFFFF)
    zp.screen_info = _with_ext_mem_k(zp.screen_info, min(mem_k, EXT_MEM_K_MAX))
    return bp.boot_params.build(zp)


EXT_MEM_K_MAX = 0xFC00      # the most BIOS int 15h AX=88h can report (63 MiB above 1 MiB)


def _mem_k_above_1m(e820) -> int:
    """KiB from 1 MiB to the last KiB of the RAM entry that covers 1 MiB (0 when none),
    for the legacy alt_mem_k / ext_mem_k fields: counted the way the kernel's own
    kexec_file_load and kexec-tools count it, from the entry's last byte, so a
    KiB-aligned end yields one KiB less than the size."""
    for r, kind in e820:
        if kind == "ram" and r.start <= MiB < r.last:
            return (r.last >> 10) - (MiB >> 10)
    return 0


def _with_ext_mem_k(screen_info: bytes, kib: int) -> bytes:
    # screen_info.ext_mem_k (offset 2, u16) is the pre-2.00 copy of the same number
    return screen_info[:2] + kib.to_bytes(2, "little") + screen_info[4:]
