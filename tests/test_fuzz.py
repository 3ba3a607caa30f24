"""A short fuzz round over every parser (scripts/fuzz runs the long one)."""

import bz2
import gzip
import importlib.resources
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kexec_py.fuzz import TARGETS, run_one
from tests.conftest import SYSTEMS

MiB = 1 << 20

SMOKE = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def mini_bzimage(bz: bytes, payload: int = 0x2000) -> bytes:
    """The real setup part of ``bz`` with only ``payload`` bytes of its kernel, the header
    made to agree (syssize), so that it parses and mutations reach past the size checks."""
    setup = ((bz[0x1F1] or 4) + 1) * 512
    head = bytearray(bz[:setup + payload])
    struct.pack_into("<I", head, 0x1F4, payload // 16)
    return bytes(head)


def seeds(debian_kernel_bytes: bytes) -> dict[str, list[bytes]]:
    """Seed inputs per target: small, real where the project has the real thing."""
    import lzma

    import zstandard

    from tests.image.kernels import build_uki
    from tests.image.test_arm64_image import make_image, make_zboot
    from tests.test_bad_inputs import GOOD_ELF_LOADS, make_elf

    purg = importlib.resources.files("kexec_py").joinpath("data/purgatory/x86_64.o").read_bytes()
    iomem = [p.read_bytes() for p in SYSTEMS.glob("*/proc/iomem")]
    mini = mini_bzimage(debian_kernel_bytes)
    kcore = [p.read_bytes() for p in SYSTEMS.glob("x86_64*/proc/kcore")]
    arm_kcore = [p.read_bytes() for p in SYSTEMS.glob("arm64*/proc/kcore")]
    from tests.system.test_kcore import byte_swapped
    big_kcore = [byte_swapped((SYSTEMS / name / "proc/kcore").read_bytes())     # ELF64 and ELF32, big-endian
                 for name in ("x86_64-qemu-2cpu", "i386-qemu-1cpu")]
    elf_x86 = make_elf(GOOD_ELF_LOADS + [(24 * MiB, 8 * MiB, b"\xcc" * 512)])
    image = make_image(size=8192)
    elf_arm64 = _arm64_elf(image)
    uki = build_uki([(".osrel", b"ID=debian\n"), (".cmdline", b"console=ttyS0 quiet\0"), (".linux", mini),
                     (".initrd", b"070701" + bytes(200))])
    fdt = (SYSTEMS / "arm64-qemu-2cpu/sys/firmware/fdt").read_bytes()
    fdt = fdt[:struct.unpack_from(">I", fdt, 4)[0]]
    small = mini[:2048]
    wrapped = [gzip.compress(small), lzma.compress(small), lzma.compress(small, format=lzma.FORMAT_ALONE),
               bz2.compress(small), zstandard.ZstdCompressor().compress(small)]
    cmdlines = [p.read_bytes().strip() + b"\0irqpoll nr_cpus=1" for p in SYSTEMS.glob("*/proc/cmdline")]
    cmdlines.append(b"BOOT_IMAGE=/vmlinuz root=/dev/vda1 crashkernel=1G-4G:192M,4G-:512M\0console=ttyS0 a=\"b c\"")
    return {"iomem": iomem, "bzimage": [mini], "kernel-file": [mini, gzip.compress(mini), elf_x86, uki],
            "purgatory": [purg], "kcore": kcore + arm_kcore + big_kcore, "vmlinux": [elf_x86, elf_arm64], "uki": [uki],
            "arm64-image": [image, make_image(size=4096, efi=False, image_size=0)],
            "zboot": [make_zboot(gzip.compress(image), b"gzip"),
                      make_zboot(zstandard.ZstdCompressor().compress(image), b"zstd22")],
            "arm64-kernel-file": [image, gzip.compress(image), make_zboot(gzip.compress(image), b"gzip"), elf_arm64],
            "decompress": wrapped, "fdt": [fdt], "cmdline": cmdlines, "crash-plan": iomem,
            "snapshot": [_snapshot_seed(SYSTEMS / name) for name in ("x86_64-qemu-2cpu", "x86_64-handmade")]}


def _arm64_elf(image: bytes) -> bytes:
    """An arm64 vmlinux in miniature: one PT_LOAD holding ``image`` at the kernel's
    virtual base, entered at its first byte."""
    from tests.test_bad_inputs import make_elf
    base = 0xFFFF800080000000
    elf = bytearray(make_elf([(0x40000000, len(image), image)], machine=183, entry=base, linux_note=False))
    struct.pack_into("<Q", elf, 64 + 16, base)            # p_vaddr of the PT_LOAD
    return bytes(elf)


def _snapshot_seed(root) -> bytes:
    from kexec_py.fuzz import SNAPSHOT_FILES
    parts = []
    for rel in SNAPSHOT_FILES:
        path = root / rel
        data = path.read_bytes() if path.is_file() else b""
        parts.append(data if rel == SNAPSHOT_FILES[-1] else data.replace(b"\0", b""))   # the last keeps its NULs
    return b"\0".join(parts)


def mutated(seed_list):
    """A seed with a few bytes overwritten, inserted or cut off."""
    return st.tuples(st.sampled_from(seed_list), st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)),
                                                          max_size=8), st.integers(0, 1 << 20)).map(_apply)


def _apply(args):
    seed, edits, cut = args
    b = bytearray(seed)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    return bytes(b[:max(1, cut % (len(b) + 1))]) if cut % 3 == 0 else bytes(b)


@pytest.fixture(scope="module")
def seed_table(debian_kernel):
    return seeds(debian_kernel.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_no_uncaught_exception(target, seed_table):
    @SMOKE
    @given(st.one_of(st.binary(max_size=4096), mutated(seed_table[target])))
    def check(data):
        run_one(target, data)
    check()


def test_elf_readers_do_not_hide_programming_errors():
    """What a damaged ELF file raises is reported as CorruptImage; a bug's AttributeError,
    KeyError or IndexError is not swallowed into one (the fuzzer must see it)."""
    from kexec_py.image.elf import elf_errors
    caught = elf_errors()
    for bug in (AttributeError, KeyError, IndexError, TypeError, NameError):
        assert not any(issubclass(bug, c) for c in caught), bug
