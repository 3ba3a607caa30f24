"""32-bit arm kernels: the self-decompressing ``zImage`` and U-Boot's legacy ``uImage``.

A zImage (Documentation/arch/arm/booting.rst) is entered at its first byte with
r0 = 0, r1 = the machine type and r2 = the device tree's (or ATAG list's) physical
address. Its header (``kexec_py.structs.arm.zimage_header``) says how long it is; its
size tag says how big the kernel it decompresses will be and where: at the start of
RAM (the address the zImage runs at, rounded down to 128 MiB) plus TEXT_OFFSET. That
TEXT_OFFSET is 0x8000 on most kernels but 0x208000 on Debian's armmp kernels, and a
loader that assumes 0x8000 puts the initrd and device tree where the decompressor then
copies itself (kexec-tools 2.0.25's hang; see docs/differences.md).

When the decompressed kernel would overwrite the running zImage, the decompressor
first copies itself past the end of the decompressed kernel (with its stack, its
malloc area and any appended device tree), so the memory a zImage needs runs from the
start of RAM to about TEXT_OFFSET + decompressed size + bss + zImage size + malloc
area: ``ArmImage.memory`` computes that, and the planner puts nothing else there.

A uImage wraps either a zImage (compression "none") or a raw kernel Image
(compressed), after a 64-byte header with its own CRCs, load address and entry point.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from kexec_py.errors import CorruptImage, UnsupportedImage
from kexec_py.structs import arm as S

MiB = 1 << 20
DEFAULT_TEXT_OFFSET = 0x8000        # booting.rst: the conventional place of the kernel above RAM's start
STACK_AND_SLACK = 0x10000           # the decompressor's stack (4 KiB), relocation code, 256-byte rounding
APPENDED_DTB_GROWTH = 1 * MiB       # the most the decompressor grows an appended tree by (ATAGs merged in)
PAGE_DIRECTORY = 0x5000             # the decompressor's page tables just below the kernel (16 KiB, 20 KiB LPAE)
FDT_MAGIC = b"\xd0\x0d\xfe\xed"
UNKNOWN_RATIO = 5                   # no size tag, no --image-size: a decompressed kernel of 5x the zImage


@dataclass(frozen=True, slots=True)
class ArmImage:
    path: str
    data: bytes                     # what is loaded at the kernel's address (a zImage without an appended DTB)
    source: str                     # "zImage", "uImage" (of a zImage) or "uImage Image" (a raw kernel)
    text_offset: int                # the kernel's place above the start of RAM
    kernel_size: int | None = None  # the decompressed kernel's size (to _edata), if known
    bss_size: int | None = None     # its bss, if known
    malloc_size: int = 0            # the decompressor's malloc area
    appended_dtb: bytes | None = None   # a device tree that followed the zImage (trimmed from ``data``)
    load_addr: int | None = None    # a uImage's load address
    compression: str | None = None  # a uImage payload's compression
    # vmlinux: each PT_LOAD as (its place above the kernel's address, file offset, filesz, memsz)
    pieces: tuple[tuple[int, int, int, int], ...] = ()
    entry_offset: int = 0           # the entry point above the kernel's address (vmlinux: e_entry - _text)

    @property
    def format(self) -> str:
        return self.source

    @property
    def payload(self) -> memoryview:
        return memoryview(self.data)

    @property
    def sized(self) -> bool:
        """Whether the image says how big the running kernel is (a zImage's size tag)."""
        return bool(self.pieces) or (self.kernel_size is not None and self.bss_size is not None)

    def memory(self, image_size: int | None = None) -> int:
        """Bytes from the kernel's address (start of RAM + text_offset) that the kernel, its
        decompressor and the decompressor's relocated copy may use: nothing else goes there.
        ``image_size`` (--image-size) replaces the estimate."""
        if self.pieces:                              # a vmlinux: its PT_LOADs, bss included; no decompressor
            extent = max(rel + memsz for rel, _, _, memsz in self.pieces)
            return max(image_size or 0, extent)
        if image_size is not None:
            return max(image_size, len(self.data))
        if self.source == "uImage Image":           # a raw kernel: no decompressor, bss unknown
            return len(self.data) * 2
        if not self.sized:
            return len(self.data) * UNKNOWN_RATIO + self.malloc_size + STACK_AND_SLACK
        dtb = APPENDED_DTB_GROWTH if self.appended_dtb else 0
        return (self.kernel_size + self.bss_size + len(self.data) + len(self.appended_dtb or b"") + dtb
                + self.malloc_size + STACK_AND_SLACK)

    def __repr__(self) -> str:
        return (f"<ArmImage {self.path} ({self.source}) text_offset={self.text_offset:#x} "
                f"kernel_size={self.kernel_size} bss_size={self.bss_size}>")


def looks_like_zimage(head: bytes) -> bool:
    return len(head) >= 0x30 and int.from_bytes(head[0x24:0x28], "little") == S.ZIMAGE_MAGIC


def looks_like_uimage(head: bytes) -> bool:
    return len(head) >= S.UIMAGE_HEADER_SIZE and int.from_bytes(head[:4], "big") == S.UIMAGE_MAGIC


def parse_zimage(data, *, path: str, source: str = "zImage") -> ArmImage:
    """A zImage's header, size tag and appended device tree. Raises CorruptImage / UnsupportedImage."""
    data = bytes(data)
    if not looks_like_zimage(data):
        raise CorruptImage(f"{path} is not an arm zImage (no 0x016f2818 magic at 0x24)",
                           "pass the kernel's zImage (vmlinuz) or uImage")
    hdr = S.zimage_header.parse(data[S.ZIMAGE_HEADER_OFFSET:S.ZIMAGE_HEADER_OFFSET + S.zimage_header.sizeof()]
                                .ljust(S.zimage_header.sizeof(), b"\0"))
    if hdr.endian != S.ZIMAGE_ENDIAN_LE:
        raise UnsupportedImage(f"{path} is a big-endian arm zImage (endianness word {hdr.endian:#010x})",
                               "kexec-py loads little-endian arm kernels only")
    size = (hdr.end - hdr.start) & 0xFFFFFFFF
    if not 0x40 <= size <= len(data):
        raise CorruptImage(f"{path}: the zImage header says {size:#x} bytes (start {hdr.start:#x}, end "
                           f"{hdr.end:#x}) but the file has {len(data):#x}", "the zImage is truncated: re-copy it")
    tail = data[size:]
    appended = None
    if tail.startswith(FDT_MAGIC) and len(tail) >= 8:
        total = int.from_bytes(tail[4:8], "big")
        appended = tail[:total] if 40 <= total <= len(tail) else None
    image = ArmImage(path=path, data=data[:size], source=source, text_offset=DEFAULT_TEXT_OFFSET,
                     appended_dtb=appended)
    if hdr.table_magic != S.ZIMAGE_TABLE_MAGIC:
        return image                                # an old zImage without tags
    tag = _kernel_size_tag(data, size, hdr.table, path)
    if tag is None:
        return image
    if not tag.size_ptr + 4 <= size:
        raise CorruptImage(f"{path}: the zImage's size tag points at {tag.size_ptr:#x}, past its end {size:#x}",
                           "the zImage is damaged: re-copy it")
    kernel_size = int.from_bytes(data[tag.size_ptr:tag.size_ptr + 4], "little")
    if tag.text_offset % 4096 or not PAGE_DIRECTORY <= tag.text_offset < 128 * MiB:
        raise CorruptImage(f"{path}: the zImage's TEXT_OFFSET {tag.text_offset:#x} is not a page offset "
                           "inside 128 MiB", "the zImage is damaged: re-copy it")
    if not size <= kernel_size < 1 << 30:
        raise CorruptImage(f"{path}: the zImage says it decompresses to {kernel_size:#x} bytes, from "
                           f"{size:#x}", "the zImage is damaged: re-copy it")
    return ArmImage(path=path, data=data[:size], source=source, text_offset=tag.text_offset,
                    kernel_size=kernel_size, bss_size=tag.bss_size, malloc_size=tag.malloc_size,
                    appended_dtb=appended)


def _kernel_size_tag(data: bytes, size: int, table: int, path: str):
    """The parsed KLSZ tag of the table at ``table``, or None when the table has none."""
    at = table
    while at + 8 <= size:
        head = S.tag_header.parse(data[at:at + 8])
        if head.size == 0:
            return None
        if head.size < 2 or at + 4 * head.size > size:
            raise CorruptImage(f"{path}: the zImage's tag table is damaged at {at:#x} (size {head.size})",
                               "re-copy the zImage")
        if head.tag == S.TAG_KERNEL_SIZE and head.size >= 2 + 4:
            return S.kernel_size_tag.parse(data[at + 8:at + 8 + S.kernel_size_tag.sizeof()])
        at += 4 * head.size
    raise CorruptImage(f"{path}: the zImage's tag table at {table:#x} runs past its end", "re-copy the zImage")


def parse_uimage(data, *, path: str) -> ArmImage:
    """A legacy uImage of an arm Linux kernel: its zImage, or its (decompressed) raw Image."""
    from dataclasses import replace

    data = memoryview(data)
    if not looks_like_uimage(data[:S.UIMAGE_HEADER_SIZE]):
        raise CorruptImage(f"{path} is not a uImage (no 0x27051956 magic)", "pass a U-Boot legacy uImage")
    raw = bytes(data[:S.UIMAGE_HEADER_SIZE])
    hdr = S.uimage_header.parse(raw)
    if zlib.crc32(raw[:4] + b"\0\0\0\0" + raw[8:]) != hdr.hcrc:
        raise CorruptImage(f"{path}: the uImage header's CRC does not match", "the uImage is damaged: re-copy it")
    payload = data[S.UIMAGE_HEADER_SIZE:S.UIMAGE_HEADER_SIZE + hdr.size]
    if len(payload) < hdr.size:
        raise CorruptImage(f"{path}: the uImage says {hdr.size} payload bytes, the file holds {len(payload)}",
                           "the uImage is truncated: re-copy it")
    if hdr.arch != S.IH_ARCH_ARM:
        raise UnsupportedImage(f"{path} is a uImage for {S.IH_ARCH_NAMES.get(hdr.arch, f'architecture {hdr.arch}')}, "
                               "not for arm", "give a kernel built for this machine")
    if hdr.os != S.IH_OS_LINUX or hdr.type not in (S.IH_TYPE_KERNEL, S.IH_TYPE_KERNEL_NOLOAD):
        raise UnsupportedImage(f"{path}: the uImage holds no Linux kernel (os {hdr.os}, type {hdr.type})",
                               "give a uImage made with mkimage -O linux -T kernel")
    if zlib.crc32(payload) != hdr.dcrc:
        raise CorruptImage(f"{path}: the uImage payload's CRC does not match", "the uImage is damaged: re-copy it")
    if hdr.comp not in S.IH_COMP:
        raise UnsupportedImage(f"{path}: the uImage's compression {hdr.comp} is unknown")
    kind = S.IH_COMP[hdr.comp]
    if kind is None:
        if not looks_like_zimage(payload[:0x40]):
            raise UnsupportedImage(f"{path}: the uncompressed uImage holds no zImage",
                                   "wrap a zImage (mkimage -C none) or a compressed Image")
        return replace(parse_zimage(payload, path=path, source="uImage"), load_addr=hdr.load)
    if kind in ("lzo", "lz4"):
        raise UnsupportedImage(f"{path}: the uImage is {kind}-compressed, which kexec-py cannot undo",
                               "wrap the kernel with mkimage -C gzip, lzma or none")
    from kexec_py.image.decompress import decompress
    image = decompress(bytes(payload), kind, what=path)
    if looks_like_zimage(image[:0x40]):
        return replace(parse_zimage(image, path=path, source="uImage"), load_addr=hdr.load, compression=kind)
    return ArmImage(path=path, data=image, source="uImage Image", text_offset=hdr.load % (16 * MiB) or
                    DEFAULT_TEXT_OFFSET, load_addr=hdr.load, compression=kind)
