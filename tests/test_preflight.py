"""check_plan and check_file_plan (kexec_py.preflight): every refusal the kernel would make, made first."""

from __future__ import annotations

import errno
from kexec_py.record import replace
from pathlib import Path

import pytest

from kexec_py.errors import FileSyscallUnavailable, ImageError, PlacementError, UsageError
from kexec_py.plan.plan import FilePlan, Segment, SegmentPlan
from kexec_py.plan.ranges import GiB, MiB, Range
from kexec_py.arch.arm64 import Arm64
from kexec_py.arch.base import FileInputs
from kexec_py.arch.i386 import I386
from kexec_py.arch.x86_64 import X86_64
from kexec_py.image.uki import has_pe_signature
from kexec_py.preflight import check_file_plan
from kexec_py.preflight import check_plan as _check_plan
from kexec_py.structs import kexec_uapi as K

CRASH = Range(0x2F000000, 0x47000000)
LOW = Range(0x10000000, 0x20000000)          # a crashkernel=,low range below the main one
CRASH_FLAGS = K.KEXEC_ON_CRASH | K.KEXEC_ARCH_X86_64
X86 = X86_64()


def check_plan(plan, **kw):
    return _check_plan(plan, X86, **kw)


def seg(name, mem, memsz, bufsz=0x100):
    return Segment(name, b"\xaa" * bufsz, mem, memsz)


def good_plan(**kw) -> SegmentPlan:
    base = CRASH.start
    segments = (seg("backup", base, 0xA0000, 0), seg("elfcorehdr", base + 0xA0000, 0x1000),
                seg("purgatory", base + 0x100000, 0x5000), seg("setup", base + 0x200000, 0x3000),
                seg("kernel", base + 0x1000000, 0x3400000, 0x1000))
    fields = dict(arch="x86_64", segments=segments, entry=base + 0x100000, flags=CRASH_FLAGS, cmdline="",
                  page_size=4096, allowed=(CRASH,))
    return SegmentPlan(**(fields | kw))


def test_a_good_plan_passes():
    check_plan(good_plan())
    check_plan(good_plan(), ram_total=2 * GiB)


@pytest.mark.parametrize("segments,words", [
    ((), "no segments"),
    (tuple(seg(f"s{i}", CRASH.start + i * 0x10000, 0x1000) for i in range(17)), "at most 16"),
    ((seg("kernel", CRASH.start + 0x800, 0x1000),), "not aligned to the running kernel's 4 KiB pages"),
    ((seg("kernel", CRASH.start, 0x1800),), "not aligned to the running kernel's 4 KiB pages"),
    ((seg("kernel", CRASH.start, 0x1000, bufsz=0x1001),), "only 0x1000 of memory"),
    ((seg("kernel", CRASH.start, 0),), "no memory"),
    ((seg("a", CRASH.start, 0x2000), seg("b", CRASH.start + 0x1000, 0x1000)), "overlap"),
    ((seg("kernel", CRASH.end - 0x1000, 0x2000),), "outside the crash region"),
    ((seg("kernel", CRASH.start - 0x1000, 0x2000),), "outside the crash region"),
    ((seg("initrd", LOW.start, 0x1000), seg("kernel", CRASH.start, 0x1000)), "outside the crash region"),
])
def test_refusals(segments, words):
    plan = good_plan(segments=segments, entry=CRASH.start, allowed=(LOW, CRASH))
    with pytest.raises(PlacementError, match=words):
        check_plan(plan)


def test_entry_must_be_in_a_segment_and_in_the_crash_region():
    with pytest.raises(PlacementError, match="entry point"):
        check_plan(good_plan(entry=CRASH.start + 0x50000000))
    with pytest.raises(PlacementError, match="entry point 0x2f900000 is in no segment"):
        check_plan(good_plan(entry=CRASH.start + 0x900000))


def test_a_crash_plan_needs_a_crash_region():
    with pytest.raises(PlacementError, match="crashkernel="):
        check_plan(good_plan(allowed=()))


def test_flags():
    with pytest.raises(PlacementError, match="bits no kernel knows"):
        check_plan(good_plan(flags=CRASH_FLAGS | 0x100))
    with pytest.raises(PlacementError, match="name machine 183"):
        check_plan(good_plan(flags=K.KEXEC_ON_CRASH | K.KEXEC_ARCH_AARCH64))
    check_plan(good_plan(flags=K.KEXEC_ON_CRASH))                     # KEXEC_ARCH_DEFAULT
    check_plan(good_plan(flags=CRASH_FLAGS | K.KEXEC_UPDATE_ELFCOREHDR))


def test_half_of_ram():
    with pytest.raises(PlacementError, match="more than half of the machine's RAM"):
        check_plan(good_plan(), ram_total=0x6000000)      # kernel segment 0x3400000 > 0x3000000
    with pytest.raises(PlacementError, match="segments take"):
        check_plan(good_plan(), ram_total=0x6900000)      # each fits, all together do not


def test_normal_load_must_be_in_ram():
    ram = (Range(0x100000, 0x40000000),)
    plan = good_plan(flags=K.KEXEC_ARCH_X86_64, allowed=ram)
    check_plan(plan)
    with pytest.raises(PlacementError, match="not in RAM"):
        check_plan(replace(plan, allowed=(Range(0x100000, 0x30000000),)))


def test_destination_limit():
    plan = SegmentPlan(arch="i386", segments=(seg("kernel", 0xFFFFE000, 0x2000),), entry=0xFFFFE000,
                       flags=0, cmdline="", page_size=4096)
    with pytest.raises(PlacementError, match="highest address"):
        _check_plan(plan, I386())


def test_alignment_is_the_running_kernels_page_size():
    """A 64 KiB-page kernel (ppc64el, some arm64) refuses segments that are only 4 KiB aligned."""
    base = CRASH.start                                   # 64 KiB aligned
    plan = good_plan(segments=(seg("kernel", base, 0x10000), seg("dtb", base + 0x11000, 0x1000)),
                     entry=base, flags=K.KEXEC_ON_CRASH | K.KEXEC_ARCH_AARCH64, page_size=0x10000)
    with pytest.raises(PlacementError, match="dtb segment .* 64 KiB pages"):
        _check_plan(plan, Arm64())
    _check_plan(replace(plan, page_size=4096), Arm64())
    _check_plan(replace(plan, segments=(seg("kernel", base, 0x10000), seg("dtb", base + 0x20000, 0x10000))),
                Arm64())


# --- kexec_file_load ----------------------------------------------------------------------------

def file_plan(tmp_path: Path, *, kernel=b"k" * 8192, initrd: bytes | None = b"i" * 4096, cmdline="quiet",
              crash=True) -> FilePlan:
    k = tmp_path / "vmlinuz"
    k.write_bytes(kernel)
    i = None
    if initrd is not None:
        i = tmp_path / "initrd"
        i.write_bytes(initrd)
    return FilePlan(arch="x86_64", kernel=k, initrd=i, cmdline=cmdline, flags=K.KEXEC_FILE_ON_CRASH if crash else 0)


LIMITS = FileInputs(kernel_memory=64 * MiB, kernel_align=2 * MiB, cmdline_max=2047 - 30)


def test_file_plan_passes(tmp_path):
    check_file_plan(file_plan(tmp_path), LIMITS, crash_region=CRASH, page_size=4096)
    check_file_plan(file_plan(tmp_path, initrd=None), LIMITS, crash_region=None, page_size=4096)


def test_file_plan_cmdline_limit_counts_the_nul_and_elfcorehdr(tmp_path):
    check_file_plan(file_plan(tmp_path, cmdline="x" * (2047 - 30 - 1)), LIMITS, crash_region=CRASH, page_size=4096)
    with pytest.raises(UsageError, match="at most 2016"):
        check_file_plan(file_plan(tmp_path, cmdline="x" * (2047 - 30)), LIMITS, crash_region=CRASH, page_size=4096)


def test_file_plan_empty_initrd(tmp_path):
    with pytest.raises(ImageError, match="empty"):
        check_file_plan(file_plan(tmp_path, initrd=b""), LIMITS, crash_region=CRASH, page_size=4096)


def test_file_plan_initrd_must_fit_the_crash_region(tmp_path):
    plan = file_plan(tmp_path)
    with open(plan.initrd, "r+b") as f:
        f.truncate(CRASH.size - 64 * MiB)
    with pytest.raises(PlacementError, match="do not fit in the crash region"):
        check_file_plan(plan, LIMITS, crash_region=CRASH, page_size=4096)
    check_file_plan(plan, LIMITS, crash_region=None, page_size=4096)      # -l: the kernel finds room in RAM


def test_file_plan_initrd_over_4g(tmp_path):
    plan = file_plan(tmp_path)
    with open(plan.initrd, "r+b") as f:
        f.truncate(5 * GiB)
    with pytest.raises(ImageError, match="at most 4 GiB"):
        check_file_plan(plan, LIMITS, crash_region=None, page_size=4096)


def test_file_plan_unreadable_and_not_regular(tmp_path):
    plan = file_plan(tmp_path)
    with pytest.raises(ImageError, match="no such initrd"):
        check_file_plan(replace(plan, initrd=tmp_path / "gone"), LIMITS, crash_region=CRASH, page_size=4096)
    with pytest.raises(ImageError, match="directory"):
        check_file_plan(replace(plan, initrd=tmp_path), LIMITS, crash_region=CRASH, page_size=4096)


def test_file_inputs_of_a_bzimage(debian_kernel):
    from kexec_py.image.bzimage import parse_bzimage
    image = parse_bzimage(debian_kernel.read_bytes(), path=str(debian_kernel))
    limits = X86.file_inputs(image)
    # the kernel's x86_64 kexec_file_load appends "elfcorehdr=0x<up to 16 hex digits> " to every
    # command line and reserves room for it: derived here from that string, not from our constant
    room = len("elfcorehdr=0x") + len(f"{(1 << 64) - 1:x}") + len(" ")
    assert limits.cmdline_max == image.cmdline_size - room
    # and cmdline_size is the boot protocol's field at 0x238 (Documentation/arch/x86/boot.rst)
    assert image.cmdline_size == int.from_bytes(debian_kernel.read_bytes()[0x238:0x23C], "little")
    assert limits.kernel_memory >= image.init_size and limits.kernel is None
    no4g = replace(image, xloadflags=image.xloadflags & ~0x2)
    with pytest.raises(FileSyscallUnavailable, match="XLF_CAN_BE_LOADED_ABOVE_4G") as info:
        X86.file_inputs(no4g)
    assert info.value.errno == errno.ENOEXEC and info.value.userspace


def test_pe_signature(debian_kernel):
    data = bytearray(debian_kernel.read_bytes())
    assert has_pe_signature(data)                       # Debian signs its kernels
    data[0xEC:0xF0] = bytes(4)                          # certificate table size 0
    assert not has_pe_signature(data)
    assert not has_pe_signature(b"MZ" + bytes(100)) and not has_pe_signature(b"")
