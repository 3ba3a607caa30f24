"""kexec-py against Debian's kexec-tools 2.0.25 for 32-bit arm with ``--atags``: the
tagged list each passes to the new kernel, and where it lies.

The host is x86_64, so Debian's armhf kexec runs under qemu-user (qemu-arm -L its root),
in a private namespace with the snapshot over /proc and /sys and capture.c (built with
arm-linux-gnueabihf-gcc) preloaded (tests/differential/run.py). The snapshot is the
armmp guest's (tests/fixtures/systems/arm-qemu-2cpu), copied, with a hand-made
/proc/atags: QEMU's virt machine boots only with a device tree, so no guest has one.

The lists are read here with ``struct`` from the kernel's layout (arch/arm/include/uapi/
asm/setup.h; Documentation/arch/arm/booting.rst): each tag two 32-bit words, its size in
words (header included) and its tag, then its data; ATAG_NONE (size 0) ends the list.
Not with kexec-py's construct definition.

Equal on both sides: every tag, in order, byte for byte, except ATAG_INITRD2's start
(each loader's own initrd segment, compared with that segment) and the bytes after the
command line's NUL in its last word (kexec-tools leaves its buffer's 0xff there; kexec-py
writes 0); the list's distance from the entry point (-0x7000: the arm kernel's
machine_kexec points r2 at entry - 0x8000 + 0x1000 when no segment starts with the device
tree magic, and none does). Where the kernel itself goes differs: kexec-tools puts the
zImage at RAM base + 0x8000, kexec-py at RAM base + the zImage's TEXT_OFFSET (0x208000 on
Debian's armmp: docs/differences.md, 32-bit arm).
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from tests.conftest import SYSTEMS
from tests.differential import facts as F
from tests.differential import run as R

ARCH = "arm"
FIXTURE = SYSTEMS / "arm-qemu-2cpu"

# setup.h's tags
CORE, MEM, SERIAL, REVISION, INITRD2, CMDLINE, NONE = (0x54410001, 0x54410002, 0x54410006, 0x54410007,
                                                     0x54420005, 0x54410009, 0)
VENDOR = 0x41000403                     # a tag neither loader knows (copied as it is)
FDT_MAGIC = bytes.fromhex("d00dfeed")
R2_FROM_ENTRY = -0x8000 + 0x1000        # KEXEC_ARM_ZIMAGE_OFFSET, KEXEC_ARM_ATAGS_OFFSET


def _words(*w: int) -> bytes:
    return struct.pack(f"<{len(w)}I", *w)


def _cmdline_tag(text: bytes) -> bytes:
    body = text + b"\0" + bytes(-(len(text) + 1) % 4)
    return _words(2 + len(body) // 4, CMDLINE) + body


# The running kernel's list, as its boot loader might have given it: the old initrd and
# command line must not be passed on, everything else must.
RUNNING = [
    _words(5, CORE, 1, 4096, 0x0100),                   # flags (read-only root), page size, root device
    _words(4, MEM, 0x20000000, 0x40000000),             # 512 MiB at 1 GiB
    _words(4, MEM, 0x20000000, 0x60000000),
    _words(4, INITRD2, 0x48000000, 0x200000),
    _words(4, SERIAL, 0x12345678, 0x9abcdef0),
    _cmdline_tag(b"console=ttyS0 root=/dev/mmcblk0p2 rootwait"),
    _words(3, REVISION, 0x20),
    _words(5, VENDOR, 1, 2, 3),
]
PROC_ATAGS = b"".join(RUNNING) + _words(0, NONE)
KEPT = [t for t in RUNNING if struct.unpack_from("<I", t, 4)[0] not in (INITRD2, CMDLINE)]

KERNEL, INITRD = "@KERNEL", "@INITRD"
APPEND = "console=ttyAMA0 panic=-1"
CASES = {
    "p": ["-p", "-c", "--atags", KERNEL, f"--initrd={INITRD}", f"--append={APPEND}"],
    "l": ["-l", "-c", "--atags", KERNEL, f"--append={APPEND}"],
    "l-initrd": ["-l", "-c", "--atags", KERNEL, f"--initrd={INITRD}", f"--append={APPEND}"],
}
INITRD_BYTES = bytes(range(256)) * 400 + b"tail"


def parse_tags(buf: bytes) -> list[tuple[int, bytes]]:
    """(tag, whole tag bytes) up to ATAG_NONE, which must be there."""
    out, at = [], 0
    while True:
        size, tag = struct.unpack_from("<II", buf, at)
        if size == 0:
            assert tag == NONE and at + 8 <= len(buf)
            return out
        out.append((tag, buf[at:at + 4 * size]))
        at += 4 * size
        assert at <= len(buf), "a tag runs past the segment's bytes"


def atags_facts(directory: Path, initrd: bytes | None) -> dict:
    (call,) = F.read_calls(directory)
    assert call.name == "kexec_load"
    (atags,) = [s for s in call.segments if s.buf[4:8] == _words(CORE)]
    tags = parse_tags(atags.buf)
    facts: dict = {"r2_from_entry": atags.mem - call.args["entry"], "atags.memsz": atags.memsz,
                   "no_dtb_segment": not any(s.buf[:4] == FDT_MAGIC for s in call.segments),
                   "order": [t for t, _ in tags], "copied": [b for t, b in tags if t not in (INITRD2, CMDLINE)]}
    (line,) = [b for t, b in tags if t == CMDLINE]
    text = line[8:line.index(b"\0", 8)]
    facts["cmdline"] = text.decode()
    facts["cmdline.words"] = struct.unpack_from("<I", line)[0]
    facts["cmdline.pad_after_nul"] = line[8 + len(text) + 1:]
    initrds = [b for t, b in tags if t == INITRD2]
    if initrd is None:
        assert not initrds
    else:
        (tag,) = initrds
        start, size = struct.unpack_from("<II", tag, 8)
        (seg,) = [s for s in call.segments if s.mem == start]
        facts["initrd.size"] = size
        facts["initrd.is_segment"] = seg.buf == initrd and struct.unpack_from("<I", tag)[0] == 4
    return facts


class Harness:
    def __init__(self, work: Path):
        from tests.guest.fetch import fetch_arm_kernel
        self.work = work
        self.snapshot = work / "snapshot"
        shutil.copytree(FIXTURE, self.snapshot)
        (self.snapshot / "proc/atags").write_bytes(PROC_ATAGS)
        self.initrd = work / "initrd.img"
        self.initrd.write_bytes(INITRD_BYTES)
        self.ref = R.reference_kexec(ARCH)
        self.lib = R.build_capture_library(work, ARCH)
        self.kernel = fetch_arm_kernel("armmp")
        self.runs: dict = {}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("differential-arm"))


def compare(harness: Harness, case: str):
    if case not in harness.runs:
        args = [a.replace(KERNEL, str(harness.kernel)).replace(INITRD, str(harness.initrd)) for a in CASES[case]]
        runs = R.run_both(harness.ref, harness.lib, harness.snapshot, args, harness.work / case)
        for run in runs:
            assert run.returncode == 0, f"{run.out}: exit {run.returncode}: {run.stderr[-2000:]}"
        initrd = INITRD_BYTES if any(INITRD in a for a in CASES[case]) else None
        harness.runs[case] = (atags_facts(runs[0].out, initrd), atags_facts(runs[1].out, initrd), runs)
    return harness.runs[case]


@pytest.mark.parametrize("case", list(CASES))
def test_same_atags_as_kexec_tools(harness, case):
    theirs, ours, _ = compare(harness, case)
    assert theirs["cmdline.pad_after_nul"] in (b"", b"\xff", b"\xff" * 2, b"\xff" * 3)    # kexec-tools' 0xff buffer
    assert set(ours["cmdline.pad_after_nul"]) <= {0}
    strip = lambda f: {k: v for k, v in f.items() if k != "cmdline.pad_after_nul"}
    assert strip(theirs) == strip(ours)


@pytest.mark.parametrize("case", list(CASES))
def test_atags_are_what_the_kernel_expects(harness, case):
    """From the hand-made /proc/atags and the kernel's rules, for both loaders."""
    theirs, ours, _ = compare(harness, case)
    crash = case == "p"
    has_initrd = INITRD in " ".join(CASES[case])
    for side in (theirs, ours):
        assert side["copied"] == KEPT                                 # every other tag, unchanged, in order
        assert side["order"] == [CORE, MEM, MEM, SERIAL, REVISION, VENDOR] + [INITRD2] * has_initrd + [CMDLINE]
        assert side["r2_from_entry"] == R2_FROM_ENTRY and side["no_dtb_segment"]
        assert side["cmdline"].startswith(APPEND) and ("elfcorehdr=" in side["cmdline"]) == crash
        assert side["cmdline.words"] == 2 + (len(side["cmdline"]) + 1 + 3) // 4
        if has_initrd:
            assert side["initrd.size"] == len(INITRD_BYTES) and side["initrd.is_segment"]


def test_ours_follows_the_zimage_text_offset(harness):
    """The one placement difference: kexec-py's entry is RAM base + TEXT_OFFSET (0x208000),
    kexec-tools' RAM base + 0x8000; the list stays 0x7000 below the entry on both."""
    _, _, (theirs, ours) = compare(harness, "p")
    (t,), (o,) = F.read_calls(theirs.out), F.read_calls(ours.out)
    crash_base = 0x58000000                          # arm-qemu-2cpu's "Crash kernel" in /proc/iomem
    assert (t.args["entry"] - crash_base, o.args["entry"] - crash_base) == (0x8000, 0x208000)


def test_a_dropped_tag_is_caught(harness, tmp_path):
    theirs, _, runs = compare(harness, "l")
    dest = tmp_path / "ours"
    shutil.copytree(runs[1].out, dest)
    edited = 0
    for seg in dest.glob("0.seg-*.bin"):
        buf = seg.read_bytes()
        if buf[4:8] == _words(CORE):
            serial = RUNNING[4]
            assert buf.count(serial) == 1
            seg.write_bytes(buf.replace(serial, b"") + bytes(len(serial)))
            edited += 1
    assert edited == 1
    broken = atags_facts(dest, None)
    assert broken["copied"] != theirs["copied"] and broken["order"] != theirs["order"]
