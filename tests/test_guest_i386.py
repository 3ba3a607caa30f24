"""i386 kdump end to end, in qemu-system-i386 (TCG) guests running Debian 12's 686-pae kernel.

The same proof as tests/test_guest_x86_64.py: the first kernel writes a random
token to its log, loads a capture kernel and crashes; the capture kernel reads
the dead kernel's log from /proc/vmcore (described by our ELF32 core header)
with Debian's vmcore-dmesg and must find the token. The 32-bit kernel has no
kexec_file_load, so -s must fail with 253 and -a must fall back to kexec_load.

Run: pytest -m guest tests/test_guest_i386.py   (about 25 s a test)
"""

from __future__ import annotations

import pytest

from tests.guest import harness
from tests.test_guest_x86_64 import assert_kdump_proof, assert_unloaded

pytestmark = pytest.mark.guest
ARCH = "i386"
LOAD_ARGS = '"$KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'


@pytest.fixture(scope="module", autouse=True)
def guest_inputs():
    """Install QEMU and fetch the i386 guest inputs once (a failure fails, never skips)."""
    return harness.prepare(ARCH)


def test_reference_kexec_tools_kdump():
    assert_kdump_proof(harness.run(harness.kdump(harness.REFERENCE_LOAD, "i386-reference-kdump"), ARCH))


def test_kdump_kexec_load_and_no_file_syscall():
    scenario = harness.Scenario("i386-kexec-py-kdump-c", [
        ("file_syscall", f"kexec-py -p -s {LOAD_ARGS}"),
        ("load", harness.kexec_py_load("c")),
    ], crash=True)
    result = harness.run(scenario, ARCH, dmesg_files=True)
    m = result.markers
    assert m.get("RC-file_syscall") == "253", result.explain()
    assert "syscall kexec_file_load not available" in result.step_output("file_syscall"), result.explain()
    assert m.get("CRASH-LOADED-file_syscall") == "0", result.explain()
    assert_kdump_proof(result)
    harness.assert_python_dmesg_matches(result)      # kexec_py.vmcore.dmesg == vmcore-dmesg (32-bit ring)


def test_auto_falls_back_to_kexec_load_then_unloads():
    scenario = harness.load_unload(f"kexec-py -p {LOAD_ARGS}", harness.KEXEC_PY_UNLOAD, "i386-kexec-py-unload")
    assert_unloaded(harness.run(scenario, ARCH))
