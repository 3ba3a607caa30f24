"""ELF layouts for building a core-file header (the kdump elfcorehdr).

One Struct set per word size; all little-endian (the architectures that use
big-endian core headers get their own set when they arrive).
"""

import struct

from construct import Bytes, Int16ul, Int32ul, Int64ul, Struct

ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PF_X, PF_W, PF_R = 1, 2, 4
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB = 1
EV_CURRENT = 1

EM_386 = 3
EM_X86_64 = 62
EM_AARCH64 = 183

ELF_CORE_HEADER_ALIGN = 1024
PN_XNUM = 0xFFFF            # e_phnum at or above this needs extended numbering (no kernel reads it)


def _ehdr(word):
    return Struct(
        "e_ident" / Bytes(16),
        "e_type" / Int16ul,
        "e_machine" / Int16ul,
        "e_version" / Int32ul,
        "e_entry" / word,
        "e_phoff" / word,
        "e_shoff" / word,
        "e_flags" / Int32ul,
        "e_ehsize" / Int16ul,
        "e_phentsize" / Int16ul,
        "e_phnum" / Int16ul,
        "e_shentsize" / Int16ul,
        "e_shnum" / Int16ul,
        "e_shstrndx" / Int16ul,
    )


Elf64_Ehdr = _ehdr(Int64ul)
Elf32_Ehdr = _ehdr(Int32ul)

Elf64_Phdr = Struct(
    "p_type" / Int32ul,
    "p_flags" / Int32ul,
    "p_offset" / Int64ul,
    "p_vaddr" / Int64ul,
    "p_paddr" / Int64ul,
    "p_filesz" / Int64ul,
    "p_memsz" / Int64ul,
    "p_align" / Int64ul,
)

Elf32_Phdr = Struct(
    "p_type" / Int32ul,
    "p_offset" / Int32ul,
    "p_vaddr" / Int32ul,
    "p_paddr" / Int32ul,
    "p_filesz" / Int32ul,
    "p_memsz" / Int32ul,
    "p_flags" / Int32ul,
    "p_align" / Int32ul,
)

# The program headers again as struct formats, for building tens of thousands at once
# (construct takes tens of microseconds a header); tests check they match the Structs.
PHDR64 = struct.Struct("<IIQQQQQQ")     # p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align
PHDR32 = struct.Struct("<IIIIIIII")     # p_type p_offset p_vaddr p_paddr p_filesz p_memsz p_flags p_align
