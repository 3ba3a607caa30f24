"""Struct forms of construct definitions, precompiled, for the paths that must start fast.

Replaced by struct for speed: importing construct takes about 10 ms of the 35 ms a
``kexec-py -s`` run may take (issue 13), and the kexec_file_load path reads nothing
but the bzImage's setup header. Each table here is what
``kexec_py.structs.layout.fast_struct`` derives from the construct definition it
names (format and field names), written out so that the definition's module, and
construct, need not be imported. The definitions stay the source of truth:
``tests/structs/test_fast_forms.py`` derives each form again and compares, and
parses real and random headers both ways.
"""

from __future__ import annotations

import struct

# kexec_py.structs.bootparam.setup_header (Documentation/arch/x86/boot.rst), from 0x1f1
SETUP_HEADER_OFFSET = 0x1F1
SETUP_HEADER = struct.Struct("<BHLHHHHH4sHLHHBBHLLLLHBBLLLBBHLLQLLQQLLL")
SETUP_HEADER_NAMES = (
    "setup_sects", "root_flags", "syssize", "ram_size", "vid_mode", "root_dev", "boot_flag", "jump", "header",
    "version", "realmode_swtch", "start_sys_seg", "kernel_version", "type_of_loader", "loadflags",
    "setup_move_size", "code32_start", "ramdisk_image", "ramdisk_size", "bootsect_kludge", "heap_end_ptr",
    "ext_loader_ver", "ext_loader_type", "cmd_line_ptr", "initrd_addr_max", "kernel_alignment",
    "relocatable_kernel", "min_alignment", "xloadflags", "cmdline_size", "hardware_subarch",
    "hardware_subarch_data", "payload_offset", "payload_length", "setup_data", "pref_address", "init_size",
    "handover_offset", "kernel_info_offset",
)
SETUP_HEADER_HEADER_AT = 0x11       # offset of "header" ("HdrS") in the setup header: where the jump counts from

# kexec_py.structs.bootparam flags the kexec_file_load path checks
LOADED_HIGH = 0x01                  # loadflags
XLF_KERNEL_64 = 0x01                # xloadflags
XLF_CAN_BE_LOADED_ABOVE_4G = 0x02


def _offsets(form: struct.Struct, names: tuple, *, sizes: bool = False) -> dict:
    """Each named field's offset (with ``sizes``: (offset, size)) in a packed ("<" or ">") form without pad bytes."""
    offsets, at, count = {}, 0, ""
    fields = iter(names)
    for ch in form.format[1:]:
        if ch.isdigit():
            count += ch
            continue
        size = struct.calcsize(form.format[0] + count + ch)
        offsets[next(fields)] = (at, size) if sizes else at
        at += size
        count = ""
    return offsets


SETUP_HEADER_AT = _offsets(SETUP_HEADER, SETUP_HEADER_NAMES)    # field -> offset from 0x1f1
SETUP_HEADER_FIELDS = _offsets(SETUP_HEADER, SETUP_HEADER_NAMES, sizes=True)     # field -> (offset, size)


def setup_header_field(header, name: str, default: int = 0) -> int:
    """An integer field of setup-header bytes (from 0x1f1); ``default`` when they end before
    the field does: what ``layout.read_field(bootparam.setup_header, name, header, default=...)``
    gives, without construct."""
    at, size = SETUP_HEADER_FIELDS[name]
    raw = header[at:at + size]
    return int.from_bytes(raw, "little") if len(raw) == size else default


# -- the x86 kexec_load (-c) path (issue 13, second part) ---------------------------------
# For speed, as above: with these the x86_64 crash load imports no construct (10-20 ms of
# its start). tests/structs/test_fast_forms.py holds every one to the construct definition
# it stands for (format, field names, offsets, and values packed and unpacked both ways).

# kexec_py.structs.bootparam: constants, and the offsets in boot_params (the zero page)
# of the fields a loader writes
ZERO_PAGE_SIZE = 0x1000
E820_MAX_ENTRIES_ZEROPAGE = 128
LOADER_TYPE_KEXEC = 0xD0
XLF_EFI_KEXEC = 0x10
SETUP_EFI = 4
SETUP_RNG_SEED = 9
EFI_MEMDESC_VERSION = 1
BOOT_PARAMS_AT = dict(
    screen_info=0x000, acpi_rsdp_addr=0x070, ext_ramdisk_image=0x0C0, ext_ramdisk_size=0x0C4,
    ext_cmd_line_ptr=0x0C8, efi_info=0x1C0, alt_mem_k=0x1E0, e820_entries=0x1E8, hdr=0x1F1, e820_table=0x2D0,
)
SCREEN_INFO_SIZE = 0x40
E820_ENTRY = struct.Struct("<QQL")                  # bootparam.boot_e820_entry: addr size type
SETUP_DATA = struct.Struct("<QLL")                  # bootparam.setup_data: next type len
EFI_INFO = struct.Struct("<4sLLLLLLL")              # bootparam.efi_info
EFI_INFO_NAMES = ("efi_loader_signature", "efi_systab", "efi_memdesc_size", "efi_memdesc_version", "efi_memmap",
                  "efi_memmap_size", "efi_systab_hi", "efi_memmap_hi")
EFI_SETUP_DATA = struct.Struct("<12Q")              # bootparam.efi_setup_data: fw_vendor runtime tables smbios reserved[8]
EFI_MEMORY_DESC = struct.Struct("<LLQQQQ")          # bootparam.efi_memory_desc: type pad phys virt pages attribute

# kexec_py.structs.elf: ELF identification, file, program and note headers, by (bits, byteorder).
# The file header's e_ident is flattened into its fields (magic, class, data, version, OS ABI,
# ABI version, 7 pad bytes).
ELF_MAGIC = b"\x7fELF"
EI_NIDENT = 16
CLASS_BITS = {1: 32, 2: 64}                         # ei_class -> word size
BITS_CLASS = {32: 1, 64: 2}
DATA_BYTEORDER = {1: "little", 2: "big"}            # ei_data -> byte order
BYTEORDER_DATA = {"little": 1, "big": 2}
EV_CURRENT = 1
ET_CORE = 4
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
PN_XNUM = 0xFFFF
EHDR_NAMES = ("magic", "ei_class", "ei_data", "ei_version", "ei_osabi", "ei_abiversion", "e_type", "e_machine",
              "e_version", "e_entry", "e_phoff", "e_shoff", "e_flags", "e_ehsize", "e_phentsize", "e_phnum",
              "e_shentsize", "e_shnum", "e_shstrndx")
PHDR64_NAMES = ("p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz", "p_align")
PHDR32_NAMES = ("p_type", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz", "p_flags", "p_align")
NHDR_NAMES = ("n_namesz", "n_descsz", "n_type")
_ORDER = {"little": "<", "big": ">"}


def _order(bits: int, byteorder: str) -> str:
    """The struct prefix; the errors of kexec_py.structs.elf.layouts for what it refuses."""
    if bits not in BITS_CLASS:
        raise ValueError(f"ELF word size {bits!r}: 32 or 64")
    if byteorder not in _ORDER:
        raise ValueError(f"ELF byte order {byteorder!r}: 'little' or 'big'")
    return _ORDER[byteorder]


def elf_ehdr(bits: int, byteorder: str) -> struct.Struct:
    """structs.elf.layouts(bits, byteorder).ehdr, fields as EHDR_NAMES."""
    addr = "Q" if bits == 64 else "L"
    return struct.Struct(f"{_order(bits, byteorder)}4sBBBBB7xHHL{addr}{addr}{addr}LHHHHHH")


def elf_phdr(bits: int, byteorder: str) -> struct.Struct:
    """structs.elf.layouts(bits, byteorder).phdr, fields as PHDR64_NAMES / PHDR32_NAMES."""
    return struct.Struct(_order(bits, byteorder) + ("LLQQQQQQ" if bits == 64 else "LLLLLLLL"))


def elf_nhdr(byteorder: str) -> struct.Struct:
    """structs.elf.layouts(64, byteorder).nhdr (the same in ELF32), fields as NHDR_NAMES."""
    return struct.Struct(_order(64, byteorder) + "LLL")
