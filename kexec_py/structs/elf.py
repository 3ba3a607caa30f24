"""ELF layouts (the System V ABI, "Object Files" chapter: ELF identification, ELF
header, program header, note section), for both word sizes and both byte orders.

``layouts(bits, byteorder)`` gives the file header, program header and note
header of ELF32 (``bits=32``) or ELF64 files in ``"little"`` (ELFDATA2LSB) or
``"big"`` (ELFDATA2MSB) byte order: one definition, four instances. The
identification bytes (``e_ident``) are the same in all of them.

Offsets in comments are ELF32 / ELF64.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from construct import Const, Int8ul, Int16ub, Int16ul, Int32ub, Int32ul, Int64ub, Int64ul, Padding, Struct

ELF_MAGIC = b"\x7fELF"
EI_NIDENT = 16
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
EV_CURRENT = 1

ET_CORE = 4
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4

# ei_class <-> word size, ei_data <-> byte order
CLASS_BITS = {ELFCLASS32: 32, ELFCLASS64: 64}
BITS_CLASS = {32: ELFCLASS32, 64: ELFCLASS64}
DATA_BYTEORDER = {ELFDATA2LSB: "little", ELFDATA2MSB: "big"}
BYTEORDER_DATA = {"little": ELFDATA2LSB, "big": ELFDATA2MSB}

e_ident = Struct(
    "magic" / Const(ELF_MAGIC),        # 0x00 "\x7fELF"
    "ei_class" / Int8ul,               # 0x04 ELFCLASS32 / ELFCLASS64
    "ei_data" / Int8ul,                # 0x05 ELFDATA2LSB / ELFDATA2MSB
    "ei_version" / Int8ul,             # 0x06 EV_CURRENT
    "ei_osabi" / Int8ul,               # 0x07
    "ei_abiversion" / Int8ul,          # 0x08
    Padding(7),                        # 0x09
)                                      # 0x10 bytes


class ElfLayouts(NamedTuple):
    bits: int                          # 32 or 64
    byteorder: str                     # "little" or "big"
    ehdr: Struct                       # Elf32_Ehdr / Elf64_Ehdr
    phdr: Struct                       # Elf32_Phdr / Elf64_Phdr
    nhdr: Struct                       # Elf32_Nhdr / Elf64_Nhdr (the same: three 4-byte words)


@lru_cache(maxsize=None)
def layouts(bits: int = 64, byteorder: str = "little") -> ElfLayouts:
    """The ELF header, program header and note header for ``bits`` and ``byteorder``."""
    if bits not in BITS_CLASS:
        raise ValueError(f"ELF word size {bits!r}: 32 or 64")
    if byteorder not in BYTEORDER_DATA:
        raise ValueError(f"ELF byte order {byteorder!r}: 'little' or 'big'")
    half, word32, word64 = (Int16ul, Int32ul, Int64ul) if byteorder == "little" else (Int16ub, Int32ub, Int64ub)
    addr = word64 if bits == 64 else word32        # Elf_Addr, Elf_Off, and ELF64's Xword
    ehdr = Struct(
        "e_ident" / e_ident,           # 0x00
        "e_type" / half,               # 0x10
        "e_machine" / half,            # 0x12
        "e_version" / word32,          # 0x14
        "e_entry" / addr,              # 0x18
        "e_phoff" / addr,              # 0x1c / 0x20
        "e_shoff" / addr,              # 0x20 / 0x28
        "e_flags" / word32,            # 0x24 / 0x30
        "e_ehsize" / half,             # 0x28 / 0x34
        "e_phentsize" / half,          # 0x2a / 0x36
        "e_phnum" / half,              # 0x2c / 0x38
        "e_shentsize" / half,          # 0x2e / 0x3a
        "e_shnum" / half,              # 0x30 / 0x3c
        "e_shstrndx" / half,           # 0x32 / 0x3e
    )                                  # 0x34 / 0x40 bytes
    if bits == 64:
        phdr = Struct(
            "p_type" / word32,         # 0x00
            "p_flags" / word32,        # 0x04
            "p_offset" / addr,         # 0x08
            "p_vaddr" / addr,          # 0x10
            "p_paddr" / addr,          # 0x18
            "p_filesz" / addr,         # 0x20
            "p_memsz" / addr,          # 0x28
            "p_align" / addr,          # 0x30
        )                              # 0x38 bytes
    else:
        phdr = Struct(
            "p_type" / word32,         # 0x00
            "p_offset" / addr,         # 0x04
            "p_vaddr" / addr,          # 0x08
            "p_paddr" / addr,          # 0x0c
            "p_filesz" / addr,         # 0x10
            "p_memsz" / addr,          # 0x14
            "p_flags" / word32,        # 0x18
            "p_align" / addr,          # 0x1c
        )                              # 0x20 bytes
    nhdr = Struct(
        "n_namesz" / word32,           # 0x00 the name's bytes, NUL included; padded to 4
        "n_descsz" / word32,           # 0x04 the descriptor's bytes; padded to 4
        "n_type" / word32,             # 0x08
    )                                  # 0x0c bytes, then name, then descriptor
    return ElfLayouts(bits, byteorder, ehdr, phdr, nhdr)

