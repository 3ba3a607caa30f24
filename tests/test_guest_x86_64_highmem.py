"""kdump on a machine with RAM above 4 GiB and two crash ranges, in a QEMU (TCG) guest.

The guest is the one tests/fixtures/systems/x86_64-qemu-6g-high was captured from:
-m 6G (RAM below the PCI hole and above 4 GiB) and
``crashkernel=256M,high crashkernel=128M,low``, so /proc/iomem has a Crash kernel
range on each side of 4 GiB. kexec-py must load into the high one (the only one the
kernel's kexec_load accepts), leave both out of the dump, and the capture kernel,
given both as RAM, must come up above 4 GiB and read the dead kernel's log.

Run: flock /tmp/kexec-guest.lock pytest -m guest tests/test_guest_x86_64_highmem.py
"""

from __future__ import annotations

import re

import pytest

from tests.guest import harness
from tests.test_guest_x86_64 import assert_kdump_proof

pytestmark = pytest.mark.guest

MEM = 6144
CRASHKERNEL = "256M,high"
APPEND = "crashkernel=128M,low"

# Before loading: the two ranges are there, and the load goes into the high one.
SHOW_RANGES = 'grep "Crash kernel" /proc/iomem | sed "s/^ */CRASH-RANGE /"'


@pytest.fixture(scope="module", autouse=True)
def guest_inputs():
    return harness.prepare("x86_64")


def two_range_kdump(syscall: str) -> harness.Result:
    """syscall "c" or "s": kexec-py -p -c/-s; "reference": Debian's kexec-tools 2.0.25 (-c)."""
    if syscall == "reference":
        load = harness.REFERENCE_LOAD + " -d"
    else:
        load = harness.kexec_py_load(syscall) + (" -d" if syscall == "c" else "")
    scenario = harness.Scenario(f"kdump-{syscall}-6g-high",
                                [("ranges", SHOW_RANGES), ("load", load)], crash=True)
    return harness.run(scenario, "x86_64", mem=MEM, crashkernel=CRASHKERNEL, append=APPEND)


def crash_ranges(result: harness.Result) -> list[tuple[int, int]]:
    out = []
    for line in result.step_output("ranges").splitlines():
        if line.startswith("CRASH-RANGE "):
            a, _, b = line.split()[1].partition("-")
            out.append((int(a, 16), int(b, 16) + 1))
    return sorted(out)


def assert_two_ranges(result: harness.Result) -> tuple[int, int]:
    ranges = crash_ranges(result)
    assert len(ranges) == 2, f"expected a low and a high Crash kernel range\n{result.explain()}"
    (low, high) = ranges
    assert low[1] <= 1 << 32 <= high[0], f"ranges {ranges}\n{result.explain()}"
    return high


# "reference" is the baseline: if it fails, the guest or the harness is broken, not kexec-py.
@pytest.mark.parametrize("syscall", ["reference", "c", "s"])
def test_kdump_with_crashkernel_high_and_low(syscall):
    result = two_range_kdump(syscall)
    high = assert_two_ranges(result)
    assert_kdump_proof(result)
    # /proc/vmcore: 6 GiB of RAM less both crash ranges (384 MiB), plus the kernel-text
    # map (~40 MiB) -> about 5800 MiB. Without the RAM above 4 GiB it would be ~3 GiB less;
    # with either crash range in it, 128 or 256 MiB more.
    size_mib = int(result.markers.get("VMCORE-SIZE", 0)) >> 20
    assert 5700 < size_mib < 5880, f"/proc/vmcore is {size_mib} MiB\n{result.explain()}"
    if syscall != "s":
        # -d prints kexec-tools' segment dump (both loaders): every segment lies in the high range
        segs: dict[int, dict[str, int]] = {}
        for i, key, value in re.findall(r"segment\[(\d+)\]\.(mem|memsz) *= *0x([0-9a-f]+)",
                                        result.step_output("load")):
            segs.setdefault(int(i), {})[key] = int(value, 16)
        assert len(segs) >= 5, f"no segment dump in the load output\n{result.step_output('load')}"
        for seg in segs.values():
            assert high[0] <= seg["mem"] and seg["mem"] + seg["memsz"] <= high[1], (segs, high)
