"""Recognise and undo the compressions kernels are shipped in (vmlinuz.gz and friends).

Only whole-file wrappers are handled here (a gzip'd vmlinux, an xz'd bzImage...).
The compressed payload inside a bzImage is the kernel's own business.
"""

from __future__ import annotations

from kexec_py.errors import CorruptImage

GZIP = b"\x1f\x8b"
XZ = b"\xfd7zXZ\x00"
ZSTD = b"\x28\xb5\x2f\xfd"
BZIP2 = b"BZh"
# Raw .lzma streams start with the properties byte (0x5d for the usual lc=3,lp=0,pb=2)
# and a dictionary size; they have no real magic number.
LZMA_ALONE = b"\x5d\x00\x00"


def sniff(head: bytes) -> str | None:
    """The name of the compression ``head`` starts with, or None."""
    if head[:2] == b"MZ" and head[4:8] == b"zimg":
        return "zboot"          # an EFI zboot kernel: see kexec_py.image.zboot
    if head.startswith(GZIP):
        return "gzip"
    if head.startswith(XZ):
        return "xz"
    if head.startswith(ZSTD):
        return "zstd"
    if head.startswith(BZIP2) and head[3:4].isdigit():
        return "bzip2"
    if head.startswith(LZMA_ALONE):
        return "lzma"
    return None


def _codec_errors() -> tuple:
    """zlib's and lzma's exceptions, imported when one is being matched (a kernel that is not
    compressed needs neither module)."""
    import lzma
    import zlib
    return zlib.error, lzma.LZMAError


def decompress(data: bytes, kind: str, *, what: str) -> bytes:
    """Decompress ``data`` (named ``what`` in errors) as ``kind``."""
    if kind == "zboot":
        from kexec_py.image.zboot import unwrap
        return unwrap(data, what=what)
    try:
        if kind == "gzip":
            import gzip
            return gzip.decompress(data)
        if kind in ("xz", "lzma"):
            import lzma
            return lzma.decompress(data, format=lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE)
        if kind == "bzip2":
            import bz2
            return bz2.decompress(data)
        if kind == "zstd":
            return _zstd(data, what)
    except (OSError, EOFError, ValueError) + _codec_errors() as e:   # BadGzipFile, LZMAError, a bad deflate block
        raise CorruptImage(f"{what}: {kind} data is corrupt or truncated ({e})",
                           "re-copy the file or pass the uncompressed kernel") from e
    except MemoryError:
        raise CorruptImage(f"{what}: {kind} data decompresses to more than this machine's memory holds",
                           "decompress the kernel with a tool first, or re-copy it if it is damaged") from None
    raise CorruptImage(f"{what}: unknown compression {kind!r}")


def _zstd(data: bytes, what: str) -> bytes:
    try:
        import zstandard
    except ImportError:
        try:
            from compression import zstd  # Python 3.14+
        except ImportError:
            raise CorruptImage(f"{what} is zstd-compressed",
                               "install the 'zstandard' Python package or decompress it with unzstd") from None
        return zstd.decompress(data)
    # A stream object, not ZstdDecompressor.decompress: that one allocates whatever
    # content size the frame header claims (up to 2 GiB from a 20-byte file)
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = dobj.decompress(data)
    except zstandard.ZstdError as e:
        raise CorruptImage(f"{what}: zstd data is corrupt or truncated ({e})") from e
    if not dobj.eof:
        raise CorruptImage(f"{what}: zstd data is truncated (the frame does not end)")
    return out
