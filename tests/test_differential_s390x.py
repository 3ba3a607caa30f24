"""kexec-py against Debian's kexec-tools 2.0.25 on the captured s390x snapshot: ``kexec -l`` of
Debian's s390x kernel image, byte for byte.

The host is x86_64, so Debian's s390x kexec runs under qemu-user (qemu-s390x -L its root),
in a private namespace with the snapshot over /proc and /sys, with capture.c cross-compiled
(s390x-linux-gnu-gcc) and preloaded: it records the kexec_load (tests/differential/run.py).
kexec-py runs with its recording backend. On s390x there is nothing to differ on purpose:
the kernel goes to 0x10000, the initrd to max(8 MiB, file size) rounded up to 1 MiB, and the
initrd's place and size and the command line are written into the kernel's parameter area.
So every segment's address, size and bytes, the entry and the flags must be equal (but for
repeated --append, see OURS_CMDLINE); the
parameter area of the loaded kernel is also read at the kernel's documented offsets
(arch/s390/include/asm/setup.h: INITRD_START 0x10408, INITRD_SIZE 0x10410, COMMAND_LINE
0x10480) to show what the two agree on.

Where the snapshot has no crash region (Debian's kernel: no CONFIG_CRASH_DUMP), ``-p``
exits 1 for both, before any system call.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from tests.conftest import SYSTEMS
from tests.differential import facts as F
from tests.differential import run as R

ARCH = "s390x"
FIXTURE = SYSTEMS / "s390x-qemu-2cpu"
KERNEL, INITRD = "@KERNEL", "@INITRD"
APPEND = "console=ttysclp0 root=/dev/ram0 kpy_tag=differential"
CASES = {
    "l": ["-l", "-c", KERNEL, f"--initrd={INITRD}", f"--append={APPEND}"],
    "l-no-initrd": ["-l", "-c", KERNEL, f"--append={APPEND}"],
    "l-no-append": ["-l", "-c", KERNEL, f"--initrd={INITRD}"],          # the image's own command line stays
    "l-two-appends": ["-l", "-c", KERNEL, f"--initrd={INITRD}", "--append=console=ttysclp0", "--append=quiet"],
}
INITRD_BYTES = bytes(range(256)) * (3 * 4096 + 7)          # 3 MiB and a bit: not a page multiple


class Harness:
    def __init__(self, work: Path):
        from tests.guest.fetch import fetch
        self.work = work
        self.initrd = work / "initrd.img"
        self.initrd.write_bytes(INITRD_BYTES)
        self.ref = R.reference_kexec(ARCH)
        self.lib = R.build_capture_library(work, ARCH)
        self.kernel = fetch(ARCH).kernel

    def args(self, case: str) -> list[str]:
        return [a.replace(KERNEL, str(self.kernel)).replace(INITRD, str(self.initrd)) for a in CASES[case]]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("differential-s390x"))


def _load(capture: Path) -> F.Call:
    calls = F.read_calls(capture)
    assert [c.name for c in calls] == ["kexec_load"], f"{capture}: expected one kexec_load, got {calls}"
    return calls[0]


def _facts(call: F.Call) -> dict:
    return {"entry": call.args["entry"], "flags": call.args["flags"],
            "segments": [(s.mem, s.memsz, len(s.buf), hashlib.sha256(s.buf).hexdigest()) for s in call.segments]}


def _parameters(call: F.Call) -> dict:
    """The loaded kernel's parameter area, read at the kernel's documented addresses."""
    kernel = next(s for s in call.segments if s.mem == 0x10000)

    def at(address: int, size: int = 8) -> bytes:
        return kernel.buf[address - 0x10000:address - 0x10000 + size]
    return {"initrd_start": int.from_bytes(at(0x10408), "big"), "initrd_size": int.from_bytes(at(0x10410), "big"),
            "oldmem": (int.from_bytes(at(0x10418), "big"), int.from_bytes(at(0x10420), "big")),
            "cmdline": at(0x10480, 4096).split(b"\0", 1)[0].decode()}


# Repeated --append: kexec-py takes the last one, on every architecture (one option, defined
# once: kexec_py/options.py); kexec-tools' s390 loader joins them with spaces. INTENDED, the
# only difference (docs/differences.md, s390x): the rest of the load must still be equal.
OURS_CMDLINE = {"l-two-appends": "quiet"}


def _without_cmdline(call: F.Call) -> dict:
    """_facts with the kernel's command-line field (0x10480, 4096 bytes) blanked."""
    facts = _facts(call)
    kernel = bytearray(next(s for s in call.segments if s.mem == 0x10000).buf)
    kernel[0x480:0x480 + 4096] = bytes(4096)
    facts["segments"] = [(*seg[:3], hashlib.sha256(kernel).hexdigest()) if seg[0] == 0x10000 else seg
                         for seg in facts["segments"]]
    return facts


@pytest.mark.parametrize("case", sorted(CASES))
def test_kexec_load_is_byte_for_byte_kexec_tools(harness, case):
    theirs, ours = R.run_both(harness.ref, harness.lib, FIXTURE, harness.args(case), harness.work / case)
    for run in (theirs, ours):
        assert run.returncode == 0, f"{run.out}: exit {run.returncode}: {run.stderr[-2000:]}"
    t, o = _load(theirs.out), _load(ours.out)
    if case in OURS_CMDLINE:
        assert _without_cmdline(o) == _without_cmdline(t)
        assert _parameters(o)["cmdline"] == OURS_CMDLINE[case]
    else:
        assert _facts(o) == _facts(t)
    params = _parameters(t)
    kernel_file = harness.kernel.read_bytes()
    if INITRD in " ".join(CASES[case]):
        assert params["initrd_size"] == len(INITRD_BYTES)
        assert params["initrd_start"] == -(-max(8 << 20, len(kernel_file)) // (1 << 20)) * (1 << 20)
    else:
        assert (params["initrd_start"], params["initrd_size"]) == (0, 0)
    assert params["oldmem"] == (0, 0)
    expected = {"l-no-append": kernel_file[0x10480:0x10480 + 4096].split(b"\0", 1)[0].decode(),
                "l-two-appends": "console=ttysclp0 quiet"}.get(case, APPEND)
    assert params["cmdline"] == expected


CRASH_BASE, CRASH_SIZE = 0x4800_0000, 0x1800_0000        # what crashkernel=384M reserved on the built kernel


def test_p_with_a_crash_region_places_the_capture_kernel_as_kexec_tools(harness, tmp_path):
    """-p -c on a copy of the snapshot with a "Crash kernel" range: the kernel and the initrd
    are kexec-tools' bytes at kexec-tools' places, and the parameter areas agree (OLDMEM_BASE
    and OLDMEM_SIZE the region, the initrd's start its offset in the region, which is where
    the swap at the crash puts it). The purgatories differ by design (kexec-py's own; kexec-tools'
    is its own code): both are the entry, inside the region, below the kernel."""
    import shutil
    root = tmp_path / "s390x-crash"
    shutil.copytree(FIXTURE, root)
    iomem = root / "proc/iomem"
    iomem.write_text(iomem.read_text() + f"  {CRASH_BASE:08x}-{CRASH_BASE + CRASH_SIZE - 1:08x} : Crash kernel\n")
    args = ["-p", "-c", str(harness.kernel), f"--initrd={harness.initrd}", f"--append={APPEND}"]
    theirs, ours = R.run_both(harness.ref, harness.lib, root, args, harness.work / "p-crash")
    for run in (theirs, ours):
        assert run.returncode == 0, f"{run.out}: exit {run.returncode}: {run.stderr[-2000:]}"
    t, o = _load(theirs.out), _load(ours.out)
    assert o.args["flags"] == t.args["flags"] == (22 << 16) | 1        # KEXEC_ARCH_S390 | KEXEC_ON_CRASH
    kernel_at = CRASH_BASE + 0x10000

    def split(call):
        kernel = next(s for s in call.segments if s.mem == kernel_at)
        others = [s for s in call.segments if s is not kernel and s.mem > kernel_at]
        below = [s for s in call.segments if s.mem < kernel_at]
        return kernel, others, below
    (tk, t_rest, t_below), (ok, o_rest, o_below) = split(t), split(o)
    assert (ok.memsz, hashlib.sha256(ok.buf).digest()) == (tk.memsz, hashlib.sha256(tk.buf).digest())
    assert [(s.mem, s.memsz, hashlib.sha256(s.buf).digest()) for s in o_rest] == \
        [(s.mem, s.memsz, hashlib.sha256(s.buf).digest()) for s in t_rest]
    assert [s.buf for s in o_rest] == [INITRD_BYTES]
    params = {"initrd": struct.unpack_from(">QQ", tk.buf, 0x408), "oldmem": struct.unpack_from(">QQ", tk.buf, 0x418)}
    assert params == {"initrd": (o_rest[0].mem - CRASH_BASE, len(INITRD_BYTES)), "oldmem": (CRASH_BASE, CRASH_SIZE)}
    for below, call in ((t_below, t), (o_below, o)):          # the purgatory, and the entry in it
        assert len(below) == 1 and CRASH_BASE <= below[0].mem and below[0].mem + below[0].memsz <= kernel_at
        assert below[0].mem <= call.args["entry"] < below[0].mem + below[0].memsz


def test_p_without_a_crash_region_exits_1_for_both(harness):
    assert "Crash kernel" not in (FIXTURE / "proc/iomem").read_text()
    args = ["-p", "-c", str(harness.kernel), f"--initrd={harness.initrd}", "--append=console=ttysclp0"]
    theirs, ours = R.run_both(harness.ref, harness.lib, FIXTURE, args, harness.work / "p")
    assert (theirs.returncode, ours.returncode) == (1, 1), (theirs.stderr, ours.stderr)
    assert F.read_calls(theirs.out) == [] and F.read_calls(ours.out) == []
    assert "Memory for crashkernel is not reserved" in ours.stderr
