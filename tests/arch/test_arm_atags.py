"""--atags on 32-bit arm (the differential test against kexec-tools is
tests/test_differential_arm.py): what the list holds without /proc/atags, a board with no
device tree at all, and bad input. Lists are read with ``struct`` from the kernel's layout
(arch/arm/include/uapi/asm/setup.h), not with kexec-py's construct definition."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys as python
from pathlib import Path

import pytest

from kexec_py.arch.arm import Arm, ArmOptions
from kexec_py.arch.base import LoadInputs
from kexec_py.errors import SnapshotError
from kexec_py.image.arm_zimage import parse_zimage
from kexec_py.preflight import check_plan
from kexec_py.system.view import SystemView

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO / "tests/fixtures/systems/arm-qemu-2cpu"
CORE, MEM, INITRD2, CMDLINE = 0x54410001, 0x54410002, 0x54420005, 0x54410009


def tags(buf: bytes) -> list[tuple[int, tuple[int, ...]]]:
    out, at = [], 0
    while (size := struct.unpack_from("<I", buf, at)[0]) != 0:
        tag, *data = struct.unpack_from(f"<{size - 1}I", buf, at + 4)
        out.append((tag, tuple(data)))
        at += 4 * size
    assert struct.unpack_from("<I", buf, at + 4)[0] == 0 and at + 8 == len(buf)     # ATAG_NONE, then nothing
    return out


@pytest.fixture(scope="module")
def kernel():
    from tests.guest.fetch import fetch_arm_kernel
    path = fetch_arm_kernel("armmp")
    return parse_zimage(path.read_bytes(), path=str(path))


def _snapshot(tmp_path, *, atags: bytes | None = None, device_tree: bool = True) -> SystemView:
    root = tmp_path / "snap"
    shutil.copytree(SNAPSHOT, root, symlinks=True)
    if atags is not None:
        (root / "proc/atags").write_bytes(atags)
    if not device_tree:
        shutil.rmtree(root / "proc/device-tree")
        shutil.rmtree(root / "sys/firmware")
    return SystemView(root)


def _plan(sys, image, *, crash: bool, initrd=b"070701" + bytes(100)):
    arch = Arm()
    inputs = LoadInputs(cmdline="console=ttyAMA0", initrd=initrd, page_size=4096, options=ArmOptions(atags=True))
    plan = (arch.plan_crash(image, inputs, arch.read_crash_facts(sys)) if crash
            else arch.plan_load(image, inputs, arch.read_load_facts(sys)))
    check_plan(plan, arch)
    return plan


@pytest.mark.parametrize("crash", [False, True])
def test_without_proc_atags_core_and_system_ram(tmp_path, kernel, crash):
    """No /proc/atags, no device tree (a board booted with ATAGs by a kernel without
    CONFIG_ATAGS_PROC): ATAG_CORE without data, ATAG_MEM for System RAM (the snapshot's
    /proc/iomem: 0x40000000-0x9fffffff), the initrd and the command line."""
    sys = _snapshot(tmp_path, device_tree=False)
    plan = _plan(sys, kernel, crash=crash)
    (atags,) = [s for s in plan.segments if s.name == "atags"]
    (initrd,) = [s for s in plan.segments if s.name == "initrd"]
    assert atags.mem == plan.entry - 0x8000 + 0x1000              # the arm kernel's r2 without a dtb segment
    assert not any(bytes(s.buf[:4]) == bytes.fromhex("d00dfeed") for s in plan.segments)
    line = plan.cmdline.encode() + b"\0"
    line += bytes(-len(line) % 4)
    assert tags(bytes(atags.buf)) == [
        (CORE, ()), (MEM, (0x60000000, 0x40000000)), (INITRD2, (initrd.mem, 106)),
        (CMDLINE, struct.unpack(f"<{len(line) // 4}I", line))]
    assert ("elfcorehdr=" in plan.cmdline) == crash


def test_bad_proc_atags_is_one_clear_error(tmp_path, kernel):
    sys = _snapshot(tmp_path, atags=struct.pack("<4I", 4, MEM, 1, 2) + bytes(8))
    with pytest.raises(SnapshotError, match="does not start with ATAG_CORE"):
        _plan(sys, kernel, crash=False)


def test_cut_proc_atags_is_one_clear_error(tmp_path, kernel):
    sys = _snapshot(tmp_path, atags=struct.pack("<5I", 5, CORE, 0, 4096, 0) + struct.pack("<2I", 9, MEM))
    with pytest.raises(SnapshotError, match="/proc/atags"):
        _plan(sys, kernel, crash=False)


def test_atags_and_dtb_together_are_refused(tmp_path):
    zimage = tmp_path / "z"
    zimage.write_bytes(b"x")
    run = subprocess.run([python.executable, "-m", "kexec_py", "--arch", "arm", "--root", str(SNAPSHOT),
                          "--dry-run", "-l", "--atags", "--dtb", str(zimage), str(zimage)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1 and "--atags and --dtb" in run.stderr and run.stderr.count("\n") <= 2


def test_atags_only_on_arm():
    run = subprocess.run([python.executable, "-m", "kexec_py", "--arch", "x86_64", "--dry-run", "-l", "--atags",
                          "/nonexistent"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode != 0 and "--atags" in run.stderr
