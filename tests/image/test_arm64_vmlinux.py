"""arm64 vmlinux ELF kernels: detected by content, laid out into the Image they hold,
the architecture named when it is the wrong one, damage refused with one clear error."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from kexec_py.arch.arm64 import Arm64
from kexec_py.arch.base import LoadInputs
from kexec_py.arch.x86_64 import X86_64
from kexec_py.errors import CorruptImage, FileSyscallUnavailable, UnsupportedImage
from kexec_py.image.arm64_image import Arm64Image, parse_arm64_vmlinux
from kexec_py.image.open import open_kernel
from kexec_py.image.vmlinux import describe_machine, elf_machine, parse_vmlinux
from tests.image import arm64_kernels as ak
from tests.image.test_arm64_image import make_image

MiB = 1 << 20
IMAGE = make_image(image_size=3 * MiB, size=256 * 1024)


@pytest.fixture(scope="module")
def debian_arm64_kernel() -> Path:
    """Debian 12's arm64 cloud kernel, an Image (fetched into the cache on first use)."""
    from tests.guest.fetch import fetch
    return fetch("aarch64").kernel


def test_vmlinux_is_the_image_it_holds():
    img = parse_arm64_vmlinux(ak.vmlinux_from_image(IMAGE), path="vmlinux")
    assert isinstance(img, Arm64Image) and img.data == IMAGE
    assert (img.source, img.format, img.image_size, img.text_offset) == ("vmlinux", "vmlinux", 3 * MiB, 0)


@pytest.mark.parametrize("e_type", [ak.ET_DYN, ak.ET_EXEC], ids=["ET_DYN", "ET_EXEC"])
def test_relocatable_and_fixed_links_both_load(e_type):
    assert parse_arm64_vmlinux(ak.vmlinux_from_image(IMAGE, e_type=e_type), path="v").data == IMAGE


def test_two_pt_loads_with_a_file_gap_are_laid_out_by_virtual_address():
    elf = ak.vmlinux_from_image(IMAGE, split=0x21000)
    phdrs = [struct.unpack_from("<IIQQQQQQ", elf, 64 + 56 * i) for i in range(3)]
    assert phdrs[1][2] - phdrs[0][2] != phdrs[1][3] - phdrs[0][3]      # file offsets do not follow vaddr
    assert parse_arm64_vmlinux(elf, path="vmlinux").data == IMAGE


def test_detected_by_content_plain_and_gzipped(tmp_path):
    for name, blob in (("vmlinux", ak.vmlinux_from_image(IMAGE)),
                       ("vmlinux.gz", gzip.compress(ak.vmlinux_from_image(IMAGE)))):
        path = tmp_path / name
        path.write_bytes(blob)
        img = open_kernel(path, Arm64().formats)
        assert img.source == "vmlinux" and img.data == IMAGE


def test_kexec_file_load_gets_the_image_not_the_elf_file():
    img = parse_arm64_vmlinux(ak.vmlinux_from_image(IMAGE), path="vmlinux")
    fi = Arm64().file_inputs(img)
    assert fi.kernel == IMAGE and fi.initrd is None and fi.cmdline is None


def test_a_plain_image_goes_to_kexec_file_load_as_the_file(tmp_path):
    path = tmp_path / "Image"
    path.write_bytes(IMAGE)
    fi = Arm64().file_inputs(open_kernel(path, Arm64().formats))
    assert (fi.kernel, fi.initrd, fi.cmdline) == (None, None, None)


def test_a_pre_3_17_header_is_not_offered_to_kexec_file_load():
    """The kernel's arm64 kexec_file loader refuses image_size 0 (EINVAL): say so, ENOEXEC for -a."""
    img = parse_arm64_vmlinux(ak.vmlinux_from_image(make_image(image_size=0, flags=0, size=64 * 1024),
                                                    memsz=20 * MiB), path="old-vmlinux")
    assert img.legacy_header and img.image_size == 20 * MiB       # bss end from the ELF, above the 16 MiB default
    with pytest.raises(FileSyscallUnavailable, match="pre-3.17") as e:
        Arm64().file_inputs(img)
    assert e.value.errno == 8


def test_the_vmlinux_plans_like_the_image(tmp_path):
    from kexec_py.arch.arm64 import Arm64Facts, plan_load
    from kexec_py.plan.purgatory import load_purgatory
    from kexec_py.plan.ranges import GiB, Range
    from tests.arch.test_arm64_plan import FIXTURE
    fdt = (FIXTURE / "sys/firmware/fdt").read_bytes()
    facts = Arm64Facts(ram=(Range(0x40000000, 0x40000000 + GiB),), fdt=fdt)
    inputs = LoadInputs(cmdline="console=ttyAMA0", initrd=None, page_size=4096)
    a = plan_load(parse_arm64_vmlinux(ak.vmlinux_from_image(IMAGE), path="v"), inputs, facts, load_purgatory("arm64"))
    b = plan_load(open_kernel(_write(tmp_path / "Image", IMAGE), Arm64().formats), inputs, facts,
                  load_purgatory("arm64"))
    kernel = [s for s in a.segments if s.name == "kernel"]
    assert [(s.mem, s.memsz, bytes(s.buf)) for s in kernel] == \
        [(s.mem, s.memsz, bytes(s.buf)) for s in b.segments if s.name == "kernel"]
    assert kernel[0].mem % (2 * MiB) == 0 and a.entry == b.entry


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- the wrong architecture ------------------------------------------------------------

def test_an_x86_64_vmlinux_on_arm64_names_x86_64():
    elf = ak.vmlinux_from_image(IMAGE, machine=62)
    assert elf_machine(elf) == 62
    with pytest.raises(UnsupportedImage, match=r"for x86_64 \(EM_X86_64, e_machine 62\), not arm64"):
        parse_arm64_vmlinux(elf, path="vmlinux")


def test_an_arm64_vmlinux_on_x86_64_names_arm64(tmp_path):
    path = _write(tmp_path / "vmlinux", ak.vmlinux_from_image(IMAGE))
    with pytest.raises(UnsupportedImage, match=r"for arm64 \(EM_AARCH64, e_machine 183\), not x86_64"):
        open_kernel(path, X86_64().formats)
    with pytest.raises(UnsupportedImage, match="arm64"):
        parse_vmlinux(path.read_bytes(), path=str(path))


def test_unknown_machines_are_described_by_number():
    assert describe_machine(0x1234) == "an unknown machine (e_machine 4660)"
    assert describe_machine(40) == "arm (EM_ARM, e_machine 40)"
    assert elf_machine(b"MZ" + bytes(100)) is None


# -- damage ----------------------------------------------------------------------------

def _patch(data: bytes, off: int, value: bytes) -> bytes:
    b = bytearray(data)
    b[off:off + len(value)] = value
    return bytes(b)


def _ph(i: int, field: int) -> int:
    """File offset of program header ``i``'s field: 8 offset, 16 vaddr, 24 paddr, 32 filesz, 40 memsz."""
    return 64 + 56 * i + field


GOOD = ak.vmlinux_from_image(IMAGE, split=0x21000)


@pytest.mark.parametrize("mutate,err,match", [
    (lambda d: d[:40], CorruptImage, "truncated ELF header"),
    (lambda d: d[:0x30000], CorruptImage, "truncated"),
    (lambda d: _patch(d, 16, struct.pack("<H", 1)), UnsupportedImage, "ET_REL"),
    (lambda d: _patch(d, 4, b"\x01"), (CorruptImage, UnsupportedImage), "ELF"),
    (lambda d: _patch(d, 5, b"\x02"), UnsupportedImage, "big-endian|e_machine"),
    (lambda d: _patch(d, 24, struct.pack("<Q", ak.KIMAGE_VADDR + 0x100000)), CorruptImage, "entry point"),
    (lambda d: _patch(d, 24, struct.pack("<Q", ak.KIMAGE_VADDR + 0x1000)), UnsupportedImage, "below the entry"),
    (lambda d: _patch(d, _ph(1, 16), struct.pack("<Q", ak.KIMAGE_VADDR + 0x20000)), CorruptImage, "overlap"),
    (lambda d: _patch(d, _ph(0, 32), struct.pack("<Q", 0x30000)), CorruptImage, "more file bytes"),
    (lambda d: _patch(d, _ph(1, 8), struct.pack("<Q", 1 << 40)), CorruptImage, "truncated"),
    (lambda d: _patch(d, _ph(1, 40), struct.pack("<Q", 8 * MiB)), CorruptImage, "image_size"),
    (lambda d: _patch(d, _ph(1, 16), struct.pack("<Q", ak.KIMAGE_VADDR + (3 << 31))), CorruptImage, "span"),
    (lambda d: _patch(d, 0x20, struct.pack("<Q", 1 << 40)), CorruptImage, "program headers"),
    (lambda d: _patch(d, 0x10000 + 0x38, b"XXXX"), UnsupportedImage, "without an arm64 Image header"),
], ids=["tiny", "truncated", "ET_REL", "elf32", "big-endian", "entry-outside", "load-below-entry", "overlap",
        "filesz>memsz", "wild-offset", "bss-past-image_size", "wild-vaddr", "wild-phoff", "no-header"])
def test_bad_arm64_vmlinux(mutate, err, match):
    with pytest.raises(err, match=match):
        parse_arm64_vmlinux(mutate(GOOD), path="vmlinux")


def test_a_non_linux_elf_program_is_not_a_kernel():
    """An aarch64 ELF whose entry point holds no Image header (e.g. a user program)."""
    blob = ak.vmlinux_from_image(bytes(64 * 1024) + IMAGE[64:], memsz=3 * MiB)
    with pytest.raises(UnsupportedImage, match="not a Linux vmlinux"):
        parse_arm64_vmlinux(blob, path="a.out")


# -- the real Debian kernel --------------------------------------------------------------

def test_debian_image_round_trips_through_a_vmlinux(debian_arm64_kernel):
    image = debian_arm64_kernel.read_bytes()
    plain, packed = ak.debian_vmlinux(debian_arm64_kernel)
    direct = open_kernel(debian_arm64_kernel, Arm64().formats)
    for path in (plain, packed):
        img = open_kernel(path, Arm64().formats)
        assert img.source == "vmlinux" and img.data == image
        assert (img.text_offset, img.image_size, img.flags) == (direct.text_offset, direct.image_size, direct.flags)
    assert direct.source == "Image" and direct.image_size > len(image)     # bss after the file bytes
