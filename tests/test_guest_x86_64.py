"""kdump end to end, in QEMU (TCG) guests running Debian's cloud kernel.

Each test boots a guest whose first kernel writes a random token to its log,
loads a capture kernel and (for the kdump proofs) crashes; the capture kernel
reads the dead kernel's log from /proc/vmcore with Debian's vmcore-dmesg and
makedumpfile (--dump-dmesg, and a -l -d 31 dump, which walks the page tables)
and must find the token.  Debian's kexec-tools is the differential baseline: when
its test fails, the harness or the guest is broken, not kexec_py.

Run: pytest -m guest tests/test_guest_x86_64.py   (about 30 s a test)
"""

from __future__ import annotations

import pytest

from tests.guest import harness

pytestmark = pytest.mark.guest


@pytest.fixture(scope="module", autouse=True)
def guest_inputs():
    """Install QEMU and fetch the guest inputs once (a failure fails, never skips)."""
    return harness.prepare("x86_64")


assert_kdump_proof = harness.assert_kdump_proof


def assert_unloaded(result: harness.Result) -> None:
    m = result.markers
    assert m.get("RC-load") == "0", f"the load command failed\n{result.explain()}"
    assert m.get("CRASH-LOADED-load") == "1", f"no crash kernel loaded\n{result.explain()}"
    assert m.get("RC-unload") == "0", f"the unload command failed\n{result.explain()}"
    assert m.get("CRASH-LOADED-unload") == "0", f"still loaded\n{result.explain()}"
    assert "POWEROFF" in m, f"the guest did not finish\n{result.explain()}"


def test_reference_kexec_tools_kdump():
    assert_kdump_proof(harness.run(harness.kdump(harness.REFERENCE_LOAD, "reference-kdump")))


def test_reference_kexec_tools_unload():
    scenario = harness.load_unload(harness.REFERENCE_LOAD, harness.REFERENCE_UNLOAD,
                                   "reference-unload")
    assert_unloaded(harness.run(scenario))


def test_kdump_kexec_load():
    # log_buf_len=1M: the log lives in memblock memory, read through the direct map (the
    # page tables, for kexec_py.vmcore.dmesg) instead of the kernel image
    result = harness.run(harness.kdump(harness.kexec_py_load("c"), "kexec-py-kdump-c"), append="log_buf_len=1M",
                         dmesg_files=True)
    assert_kdump_proof(result)
    harness.assert_makedumpfile_reads(result)
    harness.assert_python_dmesg_matches(result)     # kexec_py.vmcore.dmesg == vmcore-dmesg
    assert b"log_buf_len: 1048576 bytes" in result.files["vmcore-dmesg.txt"], "the log stayed in the image"


def test_kdump_kexec_file_load():
    result = harness.run(harness.kdump(harness.kexec_py_load("s"), "kexec-py-kdump-s"))
    assert_kdump_proof(result)
    harness.assert_makedumpfile_reads(result)


def test_unload():
    scenario = harness.load_unload(harness.kexec_py_load("s"), harness.KEXEC_PY_UNLOAD,
                                   "kexec-py-unload")
    assert_unloaded(harness.run(scenario))
