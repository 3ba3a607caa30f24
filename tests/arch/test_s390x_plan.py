"""The s390x plans on the snapshot captured from a QEMU guest running Debian's s390x kernel, with
that very image. Byte-for-byte agreement with Debian's kexec-tools is tests/test_differential_s390x.py;
here: what the memory facts do (offline memory blocks, a guest changed in a copy of the
snapshot), the refusals, and the placement rule's numbers against the documented layout
(arch/s390/include/asm/setup.h, read with plain struct)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from kexec_py.arch.base import LoadInputs
from kexec_py.arch.s390x import S390x, read_ram
from kexec_py.errors import NoSpace, UsageError
from kexec_py.image.s390_image import parse_s390_image
from kexec_py.plan.ranges import Range
from kexec_py.system.view import SystemView
from tests.conftest import SYSTEMS

SNAPSHOT = SYSTEMS / "s390x-qemu-2cpu"
INITRD = b"070701" + bytes(range(256)) * 40


@pytest.fixture(scope="module")
def kernel():
    from tests.guest.fetch import fetch
    return fetch("s390x").kernel


def _iomem_ram(root: Path) -> list[tuple[int, int]]:
    """System RAM lines of the snapshot's /proc/iomem, read here on their own."""
    out = []
    for line in (root / "proc/iomem").read_text().splitlines():
        if not line.startswith(" ") and line.endswith(": System RAM"):
            a, b = line.split(" :")[0].split("-")
            out.append((int(a, 16), int(b, 16) + 1))
    return out


def _plan(root: Path, kernel: Path, *, initrd=INITRD, cmdline="console=ttysclp0"):
    sys = SystemView(root)
    arch = S390x()
    image = parse_s390_image(kernel.read_bytes(), path=str(kernel))
    inputs = LoadInputs(cmdline=cmdline, initrd=initrd, page_size=sys.page_size)
    return arch.plan_load(image, inputs, arch.read_load_facts(sys))


def test_load_plan_on_the_snapshot(kernel):
    plan = _plan(SNAPSHOT, kernel)
    size = kernel.stat().st_size
    kernel_seg, initrd_seg = plan.segments
    assert (plan.entry, kernel_seg.mem, kernel_seg.bufsz) == (0x10000, 0x10000, size - 0x10000)
    assert initrd_seg.mem == max(8 << 20, -(-size // (1 << 20)) * (1 << 20)) and initrd_seg.buf == INITRD
    assert struct.unpack_from(">QQ", kernel_seg.buf, 0x408) == (initrd_seg.mem, len(INITRD))
    assert bytes(kernel_seg.buf[0x480:0x480 + 17]) == b"console=ttysclp0\0"
    assert plan.flags == 22 << 16                       # KEXEC_ARCH_S390 (EM_S390 = 22)
    ram = _iomem_ram(SNAPSHOT)
    assert [(r.start, r.end) for r in plan.allowed] == ram
    assert all(any(a <= s.mem and s.mem + s.memsz <= b for a, b in ram) for s in plan.segments)


def _copy_with_offline(tmp_path: Path, blocks: list[int]) -> Path:
    root = tmp_path / "s390x"
    shutil.copytree(SNAPSHOT, root)
    for n in blocks:
        (root / f"sys/devices/system/memory/memory{n}/state").write_text("offline\n")
    return root


def test_offline_memory_blocks_are_not_ram(tmp_path):
    root = _copy_with_offline(tmp_path, [2, 4])
    size = int((root / "sys/devices/system/memory/block_size_bytes").read_text(), 16)
    (start, end), = _iomem_ram(root)
    expected = [Range(start, 2 * size), Range(3 * size, 4 * size), Range(5 * size, end)]
    assert read_ram(SystemView(root)) == expected


def test_offline_memory_under_the_kernel_is_refused(tmp_path, kernel):
    root = _copy_with_offline(tmp_path, [0])
    with pytest.raises(NoSpace, match="kernel .* is not in usable memory"):
        _plan(root, kernel)


def test_a_capture_kernel_is_not_planned_yet(kernel):
    arch = S390x()
    image = parse_s390_image(kernel.read_bytes(), path=str(kernel))
    with pytest.raises(UsageError, match="purgatory"):
        arch.plan_crash(image, LoadInputs(cmdline="", initrd=None, page_size=4096), None)


def _cli(root: Path, *args: str):
    from kexec_py import cli
    try:
        cli.main(["--root", str(root), "--arch", "s390x", "--dry-run", *args])
    except SystemExit as e:
        return e.code
    return 0


def test_p_without_crash_memory_exits_1_with_the_reason(tmp_path, kernel, capsys, monkeypatch):
    """The reason comes from the kernel's config when it is installed: Debian's s390x config
    (the package's own file) has CONFIG_CRASH_DUMP unset."""
    monkeypatch.delenv("KEXEC_PY_RECORD", raising=False)
    assert _cli(SNAPSHOT, "-p", "-c", str(kernel)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Memory for crashkernel is not reserved" in err and "CONFIG_CRASH" not in err
    root = tmp_path / "s390x"
    shutil.copytree(SNAPSHOT, root)
    release = kernel.name.removeprefix("vmlinuz-")
    config = kernel.parent / f"config-{release}"
    assert "# CONFIG_CRASH_DUMP is not set" in config.read_text()
    (root / "boot").mkdir()
    shutil.copy(config, root / "boot" / config.name)
    assert _cli(root, "-p", "-c", str(kernel)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "built without CONFIG_CRASH_DUMP" in err and config.name in err


def test_kexec_file_load_takes_a_command_line_shorter_than_the_field(kernel):
    """The kernel's s390 kexec_file_load refuses cmdline_buf_len (NUL included) >= the image's
    max_command_line_size (arch/s390/kernel/machine_kexec_file.c): CONFIG_COMMAND_LINE_SIZE
    4096 (the package's config) takes 4094 characters and the NUL."""
    import re
    config = (kernel.parent / f"config-{kernel.name.removeprefix('vmlinuz-')}").read_text()
    size = int(re.search(r"^CONFIG_COMMAND_LINE_SIZE=(\d+)$", config, re.M)[1])
    image = parse_s390_image(kernel.read_bytes(), path=str(kernel))
    assert S390x().file_inputs(image).cmdline_max == size - 1
