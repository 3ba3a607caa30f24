"""EFI zboot images: a small PE/COFF EFI application that carries a compressed kernel.

Kernels built with CONFIG_EFI_ZBOOT (arm64, riscv, loongarch) ship as such a
``vmlinuz``. Its DOS header is reused as a description of the payload (all
little-endian; drivers/firmware/efi/libstub/zboot-header.S; the layout is
``kexec_py.structs.zboot.zboot_header``):

    0x00  "MZ\\0\\0"
    0x04  "zimg"              the image type
    0x08  u32 payload offset  from the start of the file
    0x0c  u32 payload size    the compressed bytes (without any trailing size word)
    0x18  compression name    NUL-terminated: gzip, lzma, xzkern, zstd22, lz4, lzo, bzip2

Loaders other than EFI firmware take the payload out and decompress it: the
result is the plain kernel image (an arm64 ``Image``).
"""

from __future__ import annotations

from kexec_py.errors import CorruptImage, UnsupportedImage

ZBOOT_MAGIC = b"zimg"
HEADER_SIZE = 0x40
COMPRESSION_NAME_OFFSET = 0x18
COMPRESSION_NAME_MAX = 0x38 - COMPRESSION_NAME_OFFSET

# the names the kernel build writes -> the names decompress.decompress takes
COMPRESSIONS = {"gzip": "gzip", "lzma": "lzma", "xzkern": "xz", "xz": "xz",
                "zstd22": "zstd", "zstd": "zstd", "bzip2": "bzip2"}


def looks_like_zboot(head: bytes) -> bool:
    return len(head) >= 8 and head[:2] == b"MZ" and head[4:8] == ZBOOT_MAGIC


def payload_info(data: bytes, *, what: str) -> tuple[int, int, str]:
    """(offset, size, compression) of the payload; checks every bound."""
    if len(data) < HEADER_SIZE or not looks_like_zboot(data):
        raise CorruptImage(f"{what} is not an EFI zboot image (no 'zimg' at offset 4)")
    from kexec_py.structs.zboot import zboot_header
    hdr = zboot_header.parse(bytes(data[:HEADER_SIZE]))         # the length was checked above
    offset, size = hdr.payload_offset, hdr.payload_size
    name = hdr.compression.split(b"\0", 1)[0].decode("ascii", "replace")
    if offset < HEADER_SIZE or size == 0 or offset + size > len(data):
        raise CorruptImage(f"{what}: zboot payload {offset:#x}+{size:#x} lies outside the "
                           f"file's {len(data):#x} bytes", "the file is truncated: re-copy it")
    if name not in COMPRESSIONS:
        raise UnsupportedImage(f"{what}: zboot payload is compressed with {name!r}, which kexec-py "
                               f"cannot undo", f"use a kernel built with one of "
                               f"{', '.join(sorted(set(COMPRESSIONS)))}, or pass its Image")
    return offset, size, COMPRESSIONS[name]


def unwrap(data: bytes, *, what: str) -> bytes:
    """The decompressed kernel inside a zboot image."""
    from kexec_py.image.decompress import decompress

    offset, size, kind = payload_info(data, what=what)
    return decompress(bytes(memoryview(data)[offset:offset + size]), kind, what=f"{what} (zboot payload)")
