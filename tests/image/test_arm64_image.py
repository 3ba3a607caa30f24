"""arm64 Image headers, and the wrappers around them (Image.gz, EFI zboot), detected by content."""

from __future__ import annotations

import gzip
import lzma
import struct

import pytest

from kexec_py.arch.arm64 import Arm64
from kexec_py.errors import CorruptImage, UnknownFormat, UnsupportedImage
from kexec_py.image.arm64_image import parse_arm64_image
from kexec_py.image.open import open_kernel, read_kernel_file

MiB = 1 << 20


def make_image(*, text_offset=0, image_size=2 * MiB, flags=0b1010, size=64 * 1024, efi=True) -> bytes:
    """A fake Image: the booting.rst header (optionally behind an "MZ" EFI stub), then filler."""
    head = bytearray(size)
    if efi:
        head[0:2] = b"MZ"
    struct.pack_into("<QQQ", head, 8, text_offset, image_size, flags)
    head[0x38:0x3C] = b"ARM\x64"
    head[64:80] = b"kernel body....."
    return bytes(head)


def make_zboot(payload: bytes, name: bytes) -> bytes:
    head = bytearray(0x1000)
    head[0:4] = b"MZ\0\0"
    head[4:8] = b"zimg"
    struct.pack_into("<II", head, 8, len(head), len(payload))
    head[0x18:0x18 + len(name)] = name
    return bytes(head) + payload + b"\x01\x02\x03\x04" + bytes(512)   # size word and padding after


def test_header_fields():
    img = parse_arm64_image(make_image(text_offset=0x80000, image_size=3 * MiB), path="Image")
    assert (img.text_offset, img.image_size, img.big_endian) == (0x80000, 3 * MiB, False)


def test_pre_3_17_header_gets_the_documented_defaults():
    img = parse_arm64_image(make_image(text_offset=0x1234000, image_size=0, flags=0), path="Image")
    assert (img.text_offset, img.image_size, img.legacy_header) == (0x80000, 16 * MiB, True)


def test_big_endian_kernels_are_refused():
    with pytest.raises(UnsupportedImage, match="big-endian"):
        parse_arm64_image(make_image(flags=0b1011), path="Image")


def test_bad_text_offset_is_corrupt():
    with pytest.raises(CorruptImage, match="text_offset"):
        parse_arm64_image(make_image(text_offset=0x123), path="Image")


@pytest.mark.parametrize("wrap", [lambda d: d, gzip.compress, lzma.compress])
def test_detected_by_content_through_compression(tmp_path, wrap):
    path = tmp_path / "vmlinuz"
    path.write_bytes(wrap(make_image()))
    img = open_kernel(path, Arm64().formats)
    assert img.data == make_image()


@pytest.mark.parametrize("name,compress", [(b"gzip", gzip.compress),
                                           (b"xzkern", lambda d: lzma.compress(d, format=lzma.FORMAT_XZ)),
                                           (b"lzma", lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE))])
def test_zboot_payload_is_unwrapped(tmp_path, name, compress):
    path = tmp_path / "vmlinuz.efi"
    path.write_bytes(make_zboot(compress(make_image()), name))
    kf = read_kernel_file(path)
    assert kf.compression == "zboot" and kf.data == make_image()
    assert open_kernel(path, Arm64().formats).image_size == 2 * MiB


def test_zboot_with_an_unknown_compression_says_which(tmp_path):
    path = tmp_path / "vmlinuz.efi"
    path.write_bytes(make_zboot(b"whatever", b"lz4"))
    with pytest.raises(UnsupportedImage, match="'lz4'"):
        read_kernel_file(path)


def test_zboot_payload_outside_the_file_is_corrupt(tmp_path):
    blob = bytearray(make_zboot(gzip.compress(make_image()), b"gzip"))
    struct.pack_into("<I", blob, 12, 1 << 30)
    path = tmp_path / "vmlinuz.efi"
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptImage, match="outside"):
        read_kernel_file(path)


def test_a_bzimage_is_not_an_arm64_kernel(tmp_path):
    path = tmp_path / "bzImage"
    blob = bytearray(4096)
    blob[0x1FE:0x200] = b"\x55\xaa"
    blob[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(blob))
    with pytest.raises(UnknownFormat, match="supported: Image"):
        open_kernel(path, Arm64().formats)
