"""arm64 vmlinux files the tests build from an Image, the way the kernel's link lays them out.

Debian ships no arm64 vmlinux outside its -dbg packages (about 260 MB to
download), so the tests rebuild one around Debian's Image. The Image is what
``objcopy -O binary`` cut out of the vmlinux, so the ELF around it is what the
kernel build makes, less the symbols and sections a loader never reads:

* ELF64, EM_AARCH64, ET_DYN (a relocatable kernel is linked -pie; ET_EXEC without KASLR);
* PT_LOADs at the link address KIMAGE_VADDR (VA_BITS 48: 0xffff800008000000 on 6.1),
  p_paddr = p_vaddr, file offsets 64 KiB aligned, the last one's p_memsz running
  to the end of bss (the header's image_size);
* e_entry = _text = the first PT_LOAD's start, where the Image header sits;
* a PT_NOTE with the "Linux" owner notes.

``split`` cuts the Image into two PT_LOADs (text, then data at a 64 KiB aligned
file offset), as a linker that separates read-only and writable segments would.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

KIMAGE_VADDR = 0xFFFF800008000000
ET_EXEC, ET_DYN = 2, 3
EM_AARCH64 = 183
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
FILE_ALIGN = 0x10000


def _note(name: bytes, n_type: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)
    return struct.pack("<III", len(name) + 1, len(desc), n_type) + pad(name + b"\0") + pad(desc)


def vmlinux_from_image(image: bytes, *, vaddr: int = KIMAGE_VADDR, e_type: int = ET_DYN,
                       split: int | None = None, machine: int = EM_AARCH64,
                       memsz: int | None = None, entry: int | None = None) -> bytes:
    """An arm64 vmlinux whose PT_LOADs hold ``image`` at ``vaddr``."""
    image_size, = struct.unpack_from("<Q", image, 0x10)
    memsz = memsz if memsz is not None else max(image_size, len(image))
    pieces = [(0, len(image))] if split is None else [(0, split), (split, len(image))]
    notes = _note(b"Linux", 6, b"6.1.0-test\0") + _note(b"GNU", 3, hashlib.sha1(image[:4096]).digest())
    phnum = len(pieces) + 1
    phoff, note_off = 64, 64 + 56 * phnum
    phdrs, blobs, offset = [], [], FILE_ALIGN
    for i, (start, end) in enumerate(pieces):
        last = i == len(pieces) - 1
        mem = (memsz - start) if last else end - start
        flags = PF_R | PF_W | PF_X if split is None else (PF_R | PF_X if i == 0 else PF_R | PF_W)
        phdrs.append(struct.pack("<IIQQQQQQ", PT_LOAD, flags, offset, vaddr + start, vaddr + start,
                                 end - start, mem, FILE_ALIGN))
        blobs.append((offset, image[start:end]))
        offset = (offset + end - start + FILE_ALIGN - 1) // FILE_ALIGN * FILE_ALIGN
    phdrs.append(struct.pack("<IIQQQQQQ", PT_NOTE, PF_R, note_off, 0, 0, len(notes), len(notes), 4))
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1,
                               vaddr if entry is None else entry, phoff, 0, 0, 64, 56, phnum, 64, 0, 0)
    out = bytearray(ehdr + b"".join(phdrs) + notes)
    for off, blob in blobs:
        out[len(out):] = bytes(off - len(out))
        out[off:off + len(blob)] = blob
    return bytes(out)


def debian_vmlinux(kernel: Path) -> tuple[Path, Path]:
    """(vmlinux, vmlinux.gz) around the Debian Image ``kernel``, cached next to the guest inputs."""
    from tests.image.kernels import cached_vmlinux
    return cached_vmlinux(kernel, "aarch64", vmlinux_from_image)
