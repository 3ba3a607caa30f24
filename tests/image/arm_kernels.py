"""32-bit arm vmlinux files the tests build from Debian's armhf zImage.

Debian ships no armhf vmlinux outside its -dbg packages, so the tests rebuild one
around the kernel a Debian zImage carries: the zImage's compressed payload (xz on
Debian's armmp kernels; gzip and lzma found the same way) decompresses to the Image,
which is ``objcopy -O binary`` of the vmlinux from ``_text`` to ``_edata``. The ELF
around it is laid out as arch/arm/kernel/vmlinux.lds.S links the kernel, less the
symbols and sections a loader never reads:

* ELF32, little-endian, EM_ARM, ET_EXEC;
* one PT_LOAD at ``_text`` = PAGE_OFFSET + TEXT_OFFSET (the config's CONFIG_PAGE_OFFSET,
  0xC0000000 on Debian; TEXT_OFFSET from the zImage's size tag, 0x208000), p_paddr =
  p_vaddr, p_filesz the Image, p_memsz running to the end of bss (the tag's bss size);
* e_entry = ``stext``, which head.S puts at ``_text``;
* a PT_NOTE with the "Linux" owner note.

Everything here is read with ``struct`` and the standard library's decompressors, not
with kexec-py's parsers.
"""

from __future__ import annotations

import lzma
import re
import struct
import zlib
from pathlib import Path

PAGE_OFFSET = 0xC0000000
EM_ARM, ET_EXEC, PT_LOAD, PT_NOTE = 40, 2, 1, 4
PF_RWX = 7
FILE_ALIGN = 0x10000
KLSZ = 0x5A534C4B


def size_tag(zimage: bytes) -> tuple[int, int, int, int]:
    """The zImage's KLSZ tag (size word offset, bss size, TEXT_OFFSET, malloc size), from
    booting.rst's header (magic at 0x24, table magic 0x45454545 at 0x34, table offset at 0x38)."""
    assert struct.unpack_from("<I", zimage, 0x24)[0] == 0x016F2818
    assert struct.unpack_from("<I", zimage, 0x34)[0] == 0x45454545
    at = struct.unpack_from("<I", zimage, 0x38)[0]
    while (size := struct.unpack_from("<I", zimage, at)[0]) != 0:
        if struct.unpack_from("<I", zimage, at + 4)[0] == KLSZ:
            return struct.unpack_from("<4I", zimage, at + 8)
        at += 4 * size
    raise ValueError("no KLSZ tag")


def decompressed_image(zimage: bytes) -> bytes:
    """The Image inside a zImage: the one compressed stream that decompresses to the size
    the zImage's size word says."""
    size_ptr = size_tag(zimage)[0]
    want = struct.unpack_from("<I", zimage, size_ptr)[0]
    signatures = {b"\xfd7zXZ\x00": lambda b: lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(b),
                  b"\x1f\x8b\x08": lambda b: zlib.decompressobj(31).decompress(b),
                  b"\x5d\x00\x00": lambda b: lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(b)}
    for magic, undo in signatures.items():
        for m in re.finditer(re.escape(magic), zimage):
            try:
                image = undo(zimage[m.start():size_ptr + 4])
            except (lzma.LZMAError, zlib.error, EOFError):
                continue
            if len(image) == want:
                return image
    raise ValueError("no compressed stream in the zImage decompresses to its size word")


def _note(name: bytes, n_type: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)
    return struct.pack("<III", len(name) + 1, len(desc), n_type) + pad(name + b"\0") + pad(desc)


def vmlinux_from_zimage(zimage: bytes, *, page_offset: int = PAGE_OFFSET) -> bytes:
    """An arm vmlinux holding the zImage's kernel at PAGE_OFFSET + TEXT_OFFSET."""
    _, bss, text_offset, _ = size_tag(zimage)
    image = decompressed_image(zimage)
    text = page_offset + text_offset
    notes = _note(b"Linux", 6, b"6.1.0-test\0")
    phoff, note_off = 52, 52 + 2 * 32
    phdrs = struct.pack("<8I", PT_LOAD, FILE_ALIGN, text, text, len(image), len(image) + bss, PF_RWX, FILE_ALIGN)
    phdrs += struct.pack("<8I", PT_NOTE, note_off, 0, 0, len(notes), len(notes), 4, 4)
    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    ehdr = ident + struct.pack("<HHIIIIIHHHHHH", ET_EXEC, EM_ARM, 1, text, phoff, 0, 0x05000000,
                               52, 32, 2, 40, 0, 0)
    head = ehdr + phdrs + notes
    return head + bytes(FILE_ALIGN - len(head)) + image


def debian_vmlinux(zimage: Path) -> tuple[Path, Path]:
    """(vmlinux, vmlinux.gz) around the kernel of Debian's armhf ``zimage``, cached."""
    from tests.image.kernels import cached_vmlinux
    return cached_vmlinux(zimage, "armhf", vmlinux_from_zimage)


