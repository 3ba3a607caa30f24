import gzip
import lzma

import pytest

from kexec_py.arch.x86_64 import X86_64
from kexec_py.errors import CorruptImage, ImageNotFound, UnknownFormat, UnsupportedImage
from kexec_py.image.bzimage import parse_bzimage
from kexec_py.image.open import open_kernel


@pytest.fixture(scope="module")
def kernel_bytes(debian_kernel):
    return debian_kernel.read_bytes()


def test_debian_kernel_header(debian_kernel, kernel_bytes):
    img = parse_bzimage(kernel_bytes, path=str(debian_kernel))
    # Values any x86_64 Debian 12 kernel has (boot.rst: 2.15, 64-bit entry, relocatable, 2 MiB aligned)
    assert img.version >= 0x020F
    assert img.xloadflags & 0x3 == 0x3
    assert img.relocatable and img.kernel_alignment == 0x200000
    assert img.cmdline_size == 2047
    assert img.setup_size == (kernel_bytes[0x1F1] + 1) * 512
    assert bytes(img.payload[:16]) == kernel_bytes[img.setup_size:img.setup_size + 16]
    assert img.init_size >= len(img.payload)


@pytest.mark.parametrize("wrap", [gzip.compress, lambda b: lzma.compress(b, format=lzma.FORMAT_XZ, preset=0)],
                         ids=["gzip", "xz"])
def test_compressed_bzimage_is_unwrapped(tmp_path, kernel_bytes, wrap):
    f = tmp_path / "vmlinuz.z"
    f.write_bytes(wrap(kernel_bytes))
    img = open_kernel(f, X86_64().formats)
    assert img.init_size and bytes(img.payload[:64]) == kernel_bytes[img.setup_size:img.setup_size + 64]


def _patched(data, offset, value: bytes):
    b = bytearray(data)
    b[offset:offset + len(value)] = value
    return bytes(b)


@pytest.mark.parametrize("mutate,err,match", [
    (lambda d: d[:2000], CorruptImage, "truncated"),
    (lambda d: _patched(d, 0x206, b"\x0b\x02"), UnsupportedImage, "too old"),
    (lambda d: _patched(d, 0x236, b"\x00\x00"), UnsupportedImage, "64-bit"),
    (lambda d: _patched(d, 0x230, b"\x00\x00\x30\x00"), CorruptImage, "power of two"),
    (lambda d: _patched(d, 0x260, b"\x00\x10\x00\x00"), CorruptImage, "init_size"),
    (lambda d: _patched(d, 0x211, b"\x00"), UnsupportedImage, "zImage"),
], ids=["truncated", "old-protocol", "no-64bit-entry", "bad-alignment", "tiny-init-size", "zimage"])
def test_bad_headers(kernel_bytes, mutate, err, match):
    with pytest.raises(err, match=match):
        parse_bzimage(mutate(kernel_bytes), path="vmlinuz")


def test_unknown_and_missing_files(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(UnknownFormat, match="junk: not a kernel image"):
        open_kernel(junk, X86_64().formats)
    with pytest.raises(ImageNotFound):
        open_kernel(tmp_path / "nope", X86_64().formats)
    bad_gz = tmp_path / "bad.gz"
    bad_gz.write_bytes(gzip.compress(bytes(range(256)) * 64)[:-20])
    with pytest.raises(CorruptImage, match="gzip data is corrupt"):
        open_kernel(bad_gz, X86_64().formats)


def test_huge_file_refused_without_reading_it(tmp_path):
    """A read sized by the limit allocated 2 GiB at once and died with MemoryError in a small guest."""
    from kexec_py.errors import ImageError
    big = tmp_path / "sparse"
    with open(big, "wb") as f:
        f.truncate((1 << 31) + 1)
    with pytest.raises(ImageError, match="larger than 2 GiB"):
        open_kernel(big, X86_64().formats)


def test_kernel_files_are_mapped_not_copied(tmp_path):
    """read_kernel_file maps an uncompressed kernel read-only; the mapping still compares like bytes."""
    import gzip

    from kexec_py.image.open import MappedFile, read_kernel_file
    data = bytes(range(256)) * 64
    (tmp_path / "k").write_bytes(data)
    kf = read_kernel_file(tmp_path / "k")
    assert isinstance(kf.data, MappedFile) and kf.compression is None
    assert kf.data == data and kf.data != data[:-1] and kf.data[:4] == data[:4] and len(kf.data) == len(data)
    (tmp_path / "k.gz").write_bytes(gzip.compress(data))
    kf = read_kernel_file(tmp_path / "k.gz")
    assert kf.compression == "gzip" and kf.data == data
