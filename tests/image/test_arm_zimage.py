"""32-bit arm kernel formats: Debian's armhf zImages (fetched into the cache with a private
apt state, see tests/guest/fetch.py), zImages and uImages built here from the documented
layouts (Documentation/arch/arm/booting.rst; U-Boot's image_header_t), each checked against
an independent reader: file(1), gzip, and the kernel's own /proc/iomem in the snapshot
captured from a guest running that very kernel."""

from __future__ import annotations

import gzip
import re
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from kexec_py.errors import CorruptImage, UnsupportedImage
from kexec_py.image.arm_zimage import looks_like_uimage, looks_like_zimage, parse_uimage, parse_zimage
from kexec_py.system.view import SystemView
from tests.conftest import require_tool

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/systems"
SNAPSHOT = {"armmp-lpae": FIXTURES / "arm-qemu-lpae-2cpu", "armmp": FIXTURES / "arm-qemu-2cpu"}


@pytest.fixture(scope="module", params=["armmp-lpae", "armmp"])
def debian(request):
    from tests.guest.fetch import fetch_arm_kernel
    return request.param, fetch_arm_kernel(request.param)


def _file(path: Path) -> str:
    return subprocess.run([require_tool("file", "file"), "-b", str(path)], capture_output=True,
                          text=True, check=True).stdout


def test_debian_zimage_is_what_file_says(debian):
    _, path = debian
    assert "ARM boot executable zImage (little-endian)" in _file(path)
    image = parse_zimage(path.read_bytes(), path=str(path))
    assert image.source == "zImage" and image.sized and image.appended_dtb is None


def test_debian_zimage_text_offset_is_what_its_config_makes_it(debian):
    """arch/arm/Makefile: TEXT_OFFSET is 0x8000 unless a platform moves it; Debian's armmp
    kernels enable ARCH_MESON, whose ``textofs-$(CONFIG_ARCH_MESON) := 0x00208000`` applies
    (../shared/reference/next-arches-facts.md). The package's own config says which."""
    _, path = debian
    config = (path.parent / f"config-{path.name.removeprefix('vmlinuz-')}").read_text()
    assert re.search(r"^CONFIG_ARCH_MESON=y$", config, re.M), "Debian's armmp config no longer has ARCH_MESON"
    assert parse_zimage(path.read_bytes(), path=str(path)).text_offset == 0x208000


def test_debian_zimage_numbers_match_the_running_kernel(debian):
    """The snapshot was captured from a guest booted from this zImage's version (by QEMU, which
    puts it at RAM base + 0x8000): its /proc/iomem says where the decompressed kernel ran
    ("Kernel code" starts at _text) and where it ended ("Kernel data" ends at _end, bss
    included). When Debian publishes a newer armmp kernel, the snapshots are of the older one
    (Debian's System.map is a stub, so nothing else in the package has _end): recapture them
    (scripts/capture-snapshot) and this compares again; until then the TEXT_OFFSET tests above
    and below still hold."""
    flavour, path = debian
    view = SystemView(SNAPSHOT[flavour])
    version = path.name.removeprefix("vmlinuz-")
    (ram,) = [r.range for r in view.iomem.roots if r.name == "System RAM"]
    (code,) = view.iomem.named("Kernel code")
    (data,) = view.iomem.named("Kernel data")
    image = parse_zimage(path.read_bytes(), path=str(path))
    assert image.text_offset == code.start - ram.start
    if version in (SNAPSHOT[flavour] / "dmesg.txt").read_text():
        assert image.kernel_size + image.bss_size == data.end - code.start
    else:
        # another build: its size may differ, but not by much (same major version and config)
        assert abs(image.kernel_size + image.bss_size - (data.end - code.start)) < (data.end - code.start) // 10


def test_the_snapshots_ran_at_the_same_text_offset():
    """The captured guests' /proc/iomem (QEMU put the zImage at RAM base + 0x8000; "Kernel code"
    starts at _text): their kernels ran at RAM base + 0x208000, as their zImages' tags said."""
    for snapshot in SNAPSHOT.values():
        view = SystemView(snapshot)
        (ram,) = [r.range for r in view.iomem.roots if r.name == "System RAM"]
        (code,) = view.iomem.named("Kernel code")
        assert code.start - ram.start == 0x208000


def test_debian_zimage_decompressed_size_is_the_payload_s(debian):
    """The size word the tag points at is the size of the xz payload (CONFIG_KERNEL_XZ): decompress it."""
    _, path = debian
    data = path.read_bytes()
    image = parse_zimage(data, path=str(path))
    xz = require_tool("xz", "xz-utils")
    sizes = set()
    for m in re.finditer(re.escape(b"\xfd7zXZ\x00"), data):    # the magic is also in the decompressor's code
        run = subprocess.run([xz, "-dc", "--single-stream"], input=data[m.start():], capture_output=True)
        if run.returncode == 0:
            sizes.add(len(run.stdout))
    assert sizes == {image.kernel_size}


def test_kexec_tools_placement_falls_inside_the_relocated_decompressor(debian):
    """Why kexec-tools 2.0.25 hangs (next-arches-facts.md): it reserves text+data+bss from
    base + 0x8000 and puts the initrd right after. The decompressor, at base + TEXT_OFFSET,
    copies itself past the decompressed kernel: over that spot. Our room covers it."""
    _, path = debian
    image = parse_zimage(path.read_bytes(), path=str(path))
    kexec_tools_initrd = 0x8000 + image.kernel_size + image.bss_size
    relocated_end = image.text_offset + image.kernel_size + len(image.data) + image.malloc_size
    assert kexec_tools_initrd < relocated_end
    assert image.text_offset + image.memory() >= relocated_end


def _zimage(*, size: int = 0x1000, tag: tuple | None = (0x3000, 0x100, 0x8000, 0x10000), endian=0x04030201,
            payload_size: int = 0x20000) -> bytes:
    """A zImage laid out per booting.rst: header at 0x24, tag table at 0x100, the size word
    at the tag's size_ptr."""
    buf = bytearray(size)
    struct.pack_into("<6I", buf, 0x24, 0x016F2818, 0, size, endian, 0x45454545 if tag else 0, 0x100)
    if tag:
        size_ptr, bss, text_offset, malloc = tag
        struct.pack_into("<8I", buf, 0x100, 6, 0x5A534C4B, 0x200, bss, text_offset, malloc, 0, 0)
        struct.pack_into("<I", buf, 0x200, payload_size)
    return bytes(buf)


def test_a_handmade_zimage_is_read_by_the_layout():
    image = parse_zimage(_zimage(), path="z")
    assert (image.text_offset, image.kernel_size, image.bss_size, image.malloc_size) == (0x8000, 0x20000, 0x100,
                                                                                         0x10000)
    assert len(image.data) == 0x1000


def test_a_zimage_without_tags_gets_the_conventional_offset_and_a_generous_room():
    image = parse_zimage(_zimage(tag=None), path="z")
    assert image.text_offset == 0x8000 and not image.sized       # booting.rst: base + 0x8000 by convention
    assert image.memory() >= 4 * 0x1000
    assert image.memory(0x3000000) == 0x3000000                 # --image-size wins


def test_an_appended_device_tree_is_trimmed_and_kept(tmp_path):
    dtc = require_tool("dtc", "device-tree-compiler")
    src = tmp_path / "t.dts"
    src.write_text("/dts-v1/; / { model = \"appended\"; };")
    dtb = subprocess.run([dtc, "-I", "dts", "-O", "dtb", str(src)], capture_output=True, check=True).stdout
    image = parse_zimage(_zimage() + dtb, path="z")
    assert len(image.data) == 0x1000 and image.appended_dtb == dtb
    assert image.memory() > parse_zimage(_zimage(), path="z").memory() + len(dtb)


@pytest.mark.parametrize("data, error, words", [
    (_zimage(endian=0x01020304), UnsupportedImage, "big-endian"),
    (_zimage()[:0x800], CorruptImage, "truncated"),
    (_zimage(tag=(0x3000, 0, 0x8001, 0)), CorruptImage, "TEXT_OFFSET"),
    (_zimage(payload_size=0x10), CorruptImage, "decompresses to"),
])
def test_damaged_zimages_are_refused_with_one_line(data, error, words):
    with pytest.raises(error) as e:
        parse_zimage(data, path="z")
    assert words in str(e.value) and "\n" not in str(e.value)


def _uimage(payload: bytes, *, comp: int = 0, arch: int = 2, load: int = 0x40008000, name=b"Linux") -> bytes:
    """U-Boot's legacy header: 64 big-endian bytes, the header CRC over the header with hcrc 0."""
    head = struct.pack(">7I4B32s", 0x27051956, 0, int(time.time()), len(payload), load, load,
                       zlib.crc32(payload), 5, arch, 2, comp, name)
    return head[:4] + struct.pack(">I", zlib.crc32(head)) + head[8:] + payload


def test_a_uimage_of_a_zimage(tmp_path):
    blob = _uimage(_zimage())
    (tmp_path / "uImage").write_bytes(blob)
    said = _file(tmp_path / "uImage")
    assert "u-boot legacy uImage" in said and "ARM" in said and "Linux" in said
    assert looks_like_uimage(blob) and not looks_like_zimage(blob)
    image = parse_uimage(blob, path="uImage")
    assert image.source == "uImage" and image.load_addr == 0x40008000 and image.kernel_size == 0x20000


def test_a_uimage_of_debians_zimage_loads_like_the_zimage(debian, tmp_path):
    _, path = debian
    zimage = path.read_bytes()
    (tmp_path / "uImage").write_bytes(_uimage(zimage))
    assert "u-boot legacy uImage" in _file(tmp_path / "uImage")
    wrapped, plain = parse_uimage(_uimage(zimage), path="uImage"), parse_zimage(zimage, path=str(path))
    assert wrapped.data == plain.data and wrapped.memory() == plain.memory()
    assert (wrapped.text_offset, wrapped.kernel_size, wrapped.bss_size) == (plain.text_offset, plain.kernel_size,
                                                                           plain.bss_size)


def test_a_gzip_uimage_of_a_raw_image():
    raw = bytes(range(256)) * 64
    image = parse_uimage(_uimage(gzip.compress(raw), comp=1, load=0x80008000), path="uImage")
    assert image.source == "uImage Image" and image.data == raw and image.compression == "gzip"
    assert image.text_offset == 0x8000


@pytest.mark.parametrize("blob, words", [
    (_uimage(_zimage(), arch=22), "arm64"),
    (_uimage(_zimage())[:-1], "truncated"),
    (_uimage(_zimage())[:70] + b"X" + _uimage(_zimage())[71:], "payload's CRC"),
    (_uimage(_zimage())[:40] + b"Y" + _uimage(_zimage())[41:], "header's CRC"),
    (_uimage(b"\0" * 64, comp=5), "lz4"),
])
def test_bad_uimages_are_refused(blob, words):
    with pytest.raises((CorruptImage, UnsupportedImage)) as e:
        parse_uimage(blob, path="uImage")
    assert words in str(e.value)
