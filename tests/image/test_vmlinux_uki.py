"""ELF vmlinux and UKI parsing: the Debian kernel's vmlinux (extracted from its
bzImage) and UKIs built here, then every kind of damage a file can have."""

import gzip
import struct

import pytest

from kexec_py.arch.x86_64 import X86_64
from kexec_py.errors import CorruptImage, UnsupportedImage
from kexec_py.image.open import open_kernel
from kexec_py.image.uki import Uki, parse_uki
from kexec_py.image.vmlinux import Vmlinux, parse_vmlinux
from kexec_py.structs import pe
from tests.image import kernels


@pytest.fixture(scope="module")
def vmlinux_files(debian_kernel):
    return kernels.debian_vmlinux(debian_kernel)


@pytest.fixture(scope="module")
def elf(vmlinux_files):
    return vmlinux_files[0].read_bytes()


def test_debian_vmlinux(elf):
    v = parse_vmlinux(elf, path="vmlinux")
    assert v.is_linux and v.entry == 0x1000000 == v.start          # phys_startup_64 at CONFIG_PHYSICAL_START
    assert len(v.loads) == 4 and all(s.filesz <= s.memsz for s in v.loads)
    assert v.end - v.start < 0x4000000


def test_payload_is_lz4_legacy(debian_kernel):
    payload = kernels.compressed_payload(debian_kernel.read_bytes())
    assert struct.unpack_from("<I", payload)[0] == kernels.LZ4_LEGACY_MAGIC


@pytest.mark.parametrize("which", [0, 1], ids=["vmlinux", "vmlinux.gz"])
def test_probe_picks_elf(vmlinux_files, which):
    img = open_kernel(vmlinux_files[which], X86_64().formats)
    assert isinstance(img, Vmlinux) and img.entry == 0x1000000


def _patch(data, off, value: bytes):
    b = bytearray(data)
    b[off:off + len(value)] = value
    return bytes(b)


def _phdr(data, i):
    return 64 + i * 56


@pytest.mark.parametrize("mutate,err,match", [
    (lambda d: d[:40], CorruptImage, "truncated ELF header"),
    (lambda d: d[:0x1000], CorruptImage, "truncated"),
    (lambda d: _patch(d, 18, struct.pack("<H", 183)), UnsupportedImage, "EM_AARCH64.*not x86_64"),
    (lambda d: _patch(d, 16, struct.pack("<H", 1)), UnsupportedImage, "ET_REL"),
    (lambda d: _patch(d, 4, b"\x01"), (CorruptImage, UnsupportedImage), "ELF"),
    (lambda d: _patch(d, _phdr(d, 1) + 24, struct.pack("<Q", 0x1800000)), CorruptImage, "overlap"),
    (lambda d: _patch(d, _phdr(d, 0) + 32, struct.pack("<Q", 0x7000000)), CorruptImage, "more file bytes"),
    (lambda d: _patch(d, _phdr(d, 3) + 24, struct.pack("<Q", 1 << 50)), CorruptImage, "beyond any physical"),
    (lambda d: _patch(d, _phdr(d, 3) + 8, struct.pack("<Q", 1 << 40)), CorruptImage, "truncated"),
    (lambda d: _patch(d, 0x20, struct.pack("<Q", 1 << 40)), CorruptImage, "program headers"),
    (lambda d: _patch(d, 24, struct.pack("<Q", 0x50000000)), CorruptImage, "entry point"),
], ids=["tiny", "truncated", "arm64", "ET_REL", "elf32", "overlap", "filesz>memsz", "wild-paddr",
        "wild-offset", "wild-phoff", "entry-outside"])
def test_bad_vmlinux(elf, mutate, err, match):
    with pytest.raises(err, match=match):
        parse_vmlinux(mutate(elf), path="vmlinux")


def test_compressed_truncated_vmlinux(tmp_path, elf):
    f = tmp_path / "vmlinux.gz"
    f.write_bytes(gzip.compress(elf[:5_000_000], compresslevel=1))
    with pytest.raises(CorruptImage, match="truncated"):
        open_kernel(f, X86_64().formats)


# -- UKI -----------------------------------------------------------------------------

LINUX = b"bzImage bytes" * 100


def _uki(**extra):
    sections = [(".osrel", b"ID=test\nVERSION_ID=1\n"), (".cmdline", b"console=ttyS0 quiet\n\0"),
                (".linux", LINUX), (".initrd", b"INITRD" * 7)]
    return kernels.build_uki(sections, **extra)


def test_uki_sections_use_virtual_size():
    u = parse_uki(_uki(), path="u.efi")
    assert isinstance(u, Uki)
    assert u.linux == LINUX                         # not padded to SizeOfRawData (0x600)
    assert u.initrd == b"INITRD" * 7 and u.cmdline == "console=ttyS0 quiet" and u.osrel.startswith("ID=test")
    assert u.machine == pe.IMAGE_FILE_MACHINE_AMD64


def test_uki_defaults():
    u = parse_uki(_uki(), path="u.efi")
    assert u.defaults("", None) == ("console=ttyS0 quiet", b"INITRD" * 7)
    assert u.defaults("mine", b"x") == ("mine", b"x")


def test_uki_of_the_debian_kernel(debian_kernel, tmp_path):
    f = tmp_path / "k.efi"
    f.write_bytes(kernels.build_uki([(".linux", debian_kernel.read_bytes())]))
    u = open_kernel(f, X86_64().formats)
    assert isinstance(u, Uki) and u.kernel.format == "bzImage" and u.initrd is None and u.cmdline is None


def test_uki_for_another_machine(debian_kernel):
    from kexec_py.arch.x86_64 import _parse_uki
    with pytest.raises(UnsupportedImage, match="UKI for arm64"):
        _parse_uki(kernels.build_uki([(".linux", debian_kernel.read_bytes())],
                                     machine=pe.IMAGE_FILE_MACHINE_ARM64), path="u.efi")


def _section_field(data, index, offset):
    lfanew = struct.unpack_from("<I", data, 0x3C)[0]
    opt = struct.unpack_from("<H", data, lfanew + 20)[0]
    return lfanew + 24 + opt + index * 40 + offset


@pytest.mark.parametrize("mutate,err,match", [
    (lambda d: d[:0x30], CorruptImage, "truncated DOS header"),
    (lambda d: _patch(d, 0x3C, struct.pack("<I", 0x7FFFFFF0)), CorruptImage, "e_lfanew"),
    (lambda d: _patch(d, 0x3C, struct.pack("<I", 0x10)), CorruptImage, "e_lfanew"),
    (lambda d: _patch(d, 0x40, b"XX\0\0"), CorruptImage, "no PE signature"),
    (lambda d: _patch(d, 0x46, struct.pack("<H", 5000)), CorruptImage, "section table"),
    (lambda d: _patch(d, 0x54, struct.pack("<H", 0xFFFF)), CorruptImage, "section table"),
    (lambda d: _patch(d, _section_field(d, 2, 0x14), struct.pack("<I", 0xFFFFFF00)), CorruptImage,
     "runs past the end"),
    (lambda d: _patch(d, _section_field(d, 2, 0x08), struct.pack("<I", 0x100000)), CorruptImage,
     "VirtualSize"),
    (lambda d: d[:_section_field(d, 3, 0) + 40 + 0x300], CorruptImage, "runs past the end"),
    (lambda d: _patch(d, _section_field(d, 2, 0), b".text\0\0\0"), UnsupportedImage, "without a .linux"),
], ids=["tiny", "wild-lfanew", "low-lfanew", "no-pe", "many-sections", "wild-optional-size",
        "wild-pointer", "virtual-size-beyond-raw", "truncated", "no-linux"])
def test_bad_uki(mutate, err, match):
    with pytest.raises(err, match=match):
        parse_uki(mutate(_uki()), path="u.efi")


def test_uki_fuzzed_headers_never_escape():
    """Any byte of the headers set to any of a few values: a KexecError or a parse, nothing else."""
    from kexec_py.errors import ImageError
    good = _uki()
    for off in range(0, 0x40 + 24 + 0xF0 + 4 * 40):
        for value in (0x00, 0x7F, 0xFF):
            try:
                parse_uki(_patch(good, off, bytes([value])), path="u.efi")
            except ImageError:
                pass
