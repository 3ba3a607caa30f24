"""Kernel files the tests derive from the cached Debian bzImage, deterministically.

* ``vmlinux``: the ELF kernel inside the bzImage. The setup header's
  payload_offset / payload_length (boot.rst, protocol 2.08+) point at the
  compressed kernel inside the protected-mode part; Debian 12 builds it with
  CONFIG_KERNEL_LZ4, i.e. an LZ4 "legacy" stream (magic 0x184c2102). What comes
  out is the stripped vmlinux followed by its relocation table, which is cut off
  at the end of the ELF file's section headers.
* ``build_uki``: a minimal PE/COFF unified kernel image, enough for kexec
  (section table and payloads; no stub code, no signature).
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

from kexec_py.structs import pe

LZ4_LEGACY_MAGIC = 0x184C2102


def compressed_payload(bzimage: bytes) -> bytes:
    setup_size = ((bzimage[0x1F1] or 4) + 1) * 512
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    return bzimage[setup_size + offset:setup_size + offset + length]


def lz4_legacy_decompress(data: bytes) -> bytes:
    """An LZ4 legacy stream: the magic, then blocks of (u32 compressed size, LZ4 block).
    The kernel build appends the uncompressed size, which ends the stream (the lz4
    tool stops with an error there, so this small decoder is used instead)."""
    if struct.unpack_from("<I", data)[0] != LZ4_LEGACY_MAGIC:
        raise ValueError("not an LZ4 legacy stream")
    out, pos = bytearray(), 4
    while pos + 4 <= len(data):
        size = struct.unpack_from("<I", data, pos)[0]
        if size == LZ4_LEGACY_MAGIC:                 # concatenated streams
            pos += 4
            continue
        if pos + 4 + size > len(data):              # the kernel build appends the size: the end
            break
        pos += 4
        _lz4_block(data, pos, pos + size, out)
        pos += size
    return bytes(out)


def _lz4_block(src: bytes, pos: int, end: int, out: bytearray) -> None:
    """Decode one LZ4 block (sequences of literals and back-references) onto ``out``."""
    while pos < end:
        token = src[pos]
        pos += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = src[pos]
                pos += 1
                lit += b
                if b != 255:
                    break
        out += src[pos:pos + lit]
        pos += lit
        if pos >= end:
            return
        offset = src[pos] | src[pos + 1] << 8
        pos += 2
        n = (token & 15) + 4
        if n == 19:
            while True:
                b = src[pos]
                pos += 1
                n += b
                if b != 255:
                    break
        start = len(out) - offset
        if offset >= n:
            out += out[start:start + n]
        else:
            chunk = out[start:]
            out += (chunk * (n // offset + 1))[:n]


def elf_file_end(elf: bytes) -> int:
    """Where an ELF64 file ends: after its section headers (or program data, if later)."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", elf, 0x3A)
    return shoff + shentsize * shnum


def extract_vmlinux(bzimage: bytes) -> bytes:
    elf = lz4_legacy_decompress(compressed_payload(bzimage))
    if elf[:4] != b"\x7fELF":
        raise ValueError("the bzImage's payload is not an ELF vmlinux")
    return elf[:elf_file_end(elf)]


def derived_dir(arch: str = "x86_64") -> Path:
    from tests.guest.fetch import cache_dir
    path = cache_dir() / arch / "derived"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_vmlinux(kernel: Path, arch: str, make) -> tuple[Path, Path]:
    """(vmlinux, vmlinux.gz) that ``make(kernel bytes)`` derives from ``kernel``, cached by
    the kernel's digest next to the guest inputs of ``arch``."""
    data = kernel.read_bytes()
    tag = hashlib.sha256(data).hexdigest()[:12]
    where = derived_dir(arch)
    plain, packed = where / f"vmlinux-{tag}", where / f"vmlinux-{tag}.gz"
    if not plain.exists():
        tmp = plain.with_suffix(".tmp")
        tmp.write_bytes(make(data))
        tmp.rename(plain)
    if not packed.exists():
        tmp = packed.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1, mtime=0))
        tmp.rename(packed)
    return plain, packed


def debian_vmlinux(kernel: Path) -> tuple[Path, Path]:
    """(vmlinux, vmlinux.gz) extracted from the Debian bzImage ``kernel``."""
    return cached_vmlinux(kernel, "x86_64", extract_vmlinux)


# -- unified kernel images --------------------------------------------------------

FILE_ALIGN = 0x200
SECTION_ALIGN = 0x1000


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def build_uki(sections: list[tuple[str, bytes]], *, machine: int = pe.IMAGE_FILE_MACHINE_AMD64) -> bytes:
    """A PE32+ image holding ``sections`` (name, bytes) in order, VirtualSize exact,
    raw data padded to the file alignment (as ukify lays them out)."""
    headers = _align(pe.DOS_HEADER_SIZE + pe.COFF_HEADER_SIZE + 0xF0 + pe.SECTION_HEADER_SIZE * len(sections),
                     FILE_ALIGN)
    table, raw, file_off, rva = [], b"", headers, SECTION_ALIGN
    for name, data in sections:
        table.append(pe.section_header.build(dict(
            name=name.encode().ljust(8, b"\0"), virtual_size=len(data), virtual_address=rva,
            size_of_raw_data=_align(len(data), FILE_ALIGN), pointer_to_raw_data=file_off,
            pointer_to_relocations=0, pointer_to_linenumbers=0, number_of_relocations=0,
            number_of_linenumbers=0,
            characteristics=pe.IMAGE_SCN_CNT_INITIALIZED_DATA | pe.IMAGE_SCN_MEM_READ)))
        raw += data.ljust(_align(len(data), FILE_ALIGN), b"\0")
        file_off += _align(len(data), FILE_ALIGN)
        rva += _align(len(data), SECTION_ALIGN)
    dos = pe.dos_header.build(dict(e_lfanew=pe.DOS_HEADER_SIZE))
    coff = pe.coff_header.build(dict(machine=machine, number_of_sections=len(sections), time_date_stamp=0,
                                     pointer_to_symbol_table=0, number_of_symbols=0,
                                     size_of_optional_header=0xF0, characteristics=0x0206))
    opt = pe.optional_header_pe32plus.build(_optional_header(rva, headers))
    head = (dos + coff + opt + b"".join(table)).ljust(headers, b"\0")
    return head + raw


def _optional_header(size_of_image: int, size_of_headers: int) -> dict:
    fields = {sc.name: 0 for sc in pe.optional_header_pe32plus.subcons if sc.name}
    fields.update(magic=pe.PE32PLUS_MAGIC, section_alignment=SECTION_ALIGN, file_alignment=FILE_ALIGN,
                  size_of_image=size_of_image, size_of_headers=size_of_headers, subsystem=10,  # EFI app
                  number_of_rva_and_sizes=16,
                  data_directories=[dict(virtual_address=0, size=0)] * 16)
    return fields
