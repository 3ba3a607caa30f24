"""The s390 kernel image: Debian's s390x /boot/vmlinuz (fetched into the cache with a private
apt state, see tests/guest/fetch.py) and images laid out here, with plain ``struct`` at the
offsets of the kernel's arch/s390/include/asm/setup.h (PARMAREA 0x10400: INITRD_START +0x08,
INITRD_SIZE +0x10, OLDMEM_BASE +0x18, OLDMEM_SIZE +0x20, the version pointer +0x28, the
command line's size +0x30; COMMAND_LINE 0x10480; EP_STRING "S390EP" at 0x10008). Expected
values come from the package's own config (CONFIG_COMMAND_LINE_SIZE), from the running
kernel's log in the snapshot captured from a guest booted from that very image ("Linux
version ..."), and from those documented offsets."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from kexec_py.errors import CorruptImage, UnknownFormat, UsageError
from kexec_py.image.open import describe, parse_kernel, read_kernel_file
from kexec_py.image.s390_image import looks_like_s390_image, parse_s390_image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures/systems"
SNAPSHOT = FIXTURES / "s390x-qemu-2cpu"


@pytest.fixture(scope="module")
def debian():
    from tests.guest.fetch import fetch
    return fetch("s390x").kernel


def synthetic(*, cmdline_size: int = 4096, cmdline: bytes = b"root=/dev/ram0 ro", size: int = 0x20000,
              psw: tuple[int, int] = (0x00080000, 0x80000200), ep: bool = True) -> bytes:
    """An image laid out from the documented offsets (its code is not needed to parse it)."""
    data = bytearray(size)
    struct.pack_into(">II", data, 0, *psw)
    struct.pack_into(">II", data, 8, 0x02000018, 0x60000050)         # two read CCWs
    struct.pack_into(">II", data, 16, 0x02000068, 0x60000050)
    if ep:
        data[0x10008:0x10010] = b"S390EP\x00\x01"
    data[0x11000:0x11010] = b"6.1.0-test (x)\0\0"
    struct.pack_into(">QQ", data, 0x10428, 0x11000, cmdline_size)
    data[0x10480:0x10480 + len(cmdline)] = cmdline
    return bytes(data)


def test_debian_image_is_recognised_with_its_own_numbers(debian):
    data = debian.read_bytes()
    assert looks_like_s390_image(data[:64 * 1024])
    image = parse_s390_image(data, path=str(debian))
    release = debian.name.removeprefix("vmlinuz-")
    config = (debian.parent / f"config-{release}").read_text()
    assert image.command_line_size == int(re.search(r"^CONFIG_COMMAND_LINE_SIZE=(\d+)$", config, re.M)[1])
    assert image.kdump_entry
    # the running kernel (booted from this image's version) says the same version string
    log = (SNAPSHOT / "dmesg.txt").read_text()
    running = re.search(r"Linux version (\S+) .*?(#1 .*)$", log, re.M)
    assert running, "the snapshot's log has no 'Linux version' line"
    assert image.version.startswith(release) and image.version.endswith(running[2])
    assert running[1] == release, "Debian published a newer s390x kernel: recapture the s390x snapshot"


def test_payload_fills_the_documented_fields_and_nothing_else(debian):
    data = debian.read_bytes()
    image = parse_s390_image(data, path=str(debian))
    out = image.payload(cmdline="console=ttysclp0 x=1", initrd=(0x800000, 12345), oldmem=(0x20000000, 0x18000000))
    assert len(out) == len(data) - 0x10000
    start, size, old_base, old_size = struct.unpack_from(">QQQQ", out, 0x408)
    assert (start, size, old_base, old_size) == (0x800000, 12345, 0x20000000, 0x18000000)
    field = out[0x480:0x480 + 4096]
    assert field == b"console=ttysclp0 x=1".ljust(4096, b"\0")
    changed = [i for i in range(len(out)) if out[i] != data[0x10000 + i]]
    assert changed and all(0x408 <= i < 0x428 or 0x480 <= i < 0x480 + 4096 for i in changed)


def test_no_command_line_keeps_the_images_own(debian):
    data = debian.read_bytes()
    image = parse_s390_image(data, path=str(debian))
    out = image.payload(cmdline=None)
    assert out[0x480:0x480 + 4096] == data[0x10480:0x10480 + 4096]
    assert image.default_cmdline == data[0x10480:].split(b"\0", 1)[0].decode()


def test_a_command_line_longer_than_the_field_is_refused():
    image = parse_s390_image(synthetic(cmdline_size=0), path="img")
    assert image.command_line_size == 896                 # 0: the legacy size
    image.payload(cmdline="x" * 895)
    with pytest.raises(UsageError, match="at most 895"):
        image.payload(cmdline="x" * 896)


def test_synthetic_image_fields():
    image = parse_s390_image(synthetic(ep=False), path="img")
    assert (image.command_line_size, image.default_cmdline, image.version, image.kdump_entry) == \
        (4096, "root=/dev/ram0 ro", "6.1.0-test (x)", False)


@pytest.mark.parametrize("psw", [(0x00080000, 0x00000200),      # 24-bit mode
                                 (0x040C0000, 0x80000200),      # DAT and I/O interrupts on
                                 (0x00080000, 0x80010000),      # address past the IPL area
                                 (0, 0)])
def test_probe_wants_the_ipl_psw(psw):
    assert not looks_like_s390_image(synthetic(psw=psw)[:64 * 1024])


def test_short_or_inconsistent_images_are_corrupt():
    with pytest.raises(CorruptImage, match="too short"):
        parse_s390_image(synthetic()[:0x10500], path="img")
    with pytest.raises(CorruptImage, match="command line holds"):
        parse_s390_image(synthetic(cmdline_size=0x100000, size=0x20000), path="img")


def test_other_kernels_are_refused_with_one_line(tmp_path):
    from kexec_py.arch.s390x import S390x
    from tests.image.test_arm64_image import make_image
    arm64 = tmp_path / "Image"
    arm64.write_bytes(make_image(image_size=24 << 20, size=1 << 20))
    for path in (arm64, Path("/bin/ls")):
        with pytest.raises(UnknownFormat) as info:
            parse_kernel(read_kernel_file(path), S390x().formats)
        assert "\n" not in str(info.value) and "s390 image" in str(info.value)


def test_other_arches_say_what_an_s390_image_is(debian):
    assert describe(debian.read_bytes()[:64 * 1024]) == "an s390 kernel image"
