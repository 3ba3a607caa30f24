"""Keeping the last good crash kernel (kexec_py.lastgood), with refusals that come from the kernel.

The x86_64 guest loads a capture kernel, then asks for a second crash load that the kernel
itself refuses: a launcher (written below, run in the guest) moves one segment of kexec-py's
kexec_load request to address 0, outside the crash region, on its way to the system call. The
kernel frees the loaded crash kernel and then refuses the new one (EADDRNOTAVAIL). kexec-py
must load the recorded one again, say so, and still exit with the refusal's status (255).
Then the recorded initrd is touched: the same refusal must leave nothing loaded and say why.
A clean load follows, and the crash proves the capture kernel works (vmcore-dmesg finds the
token).

Run: pytest -m guest tests/test_guest_last_good.py   (one x86_64 guest boot)
"""

from __future__ import annotations

import pytest

from tests.guest import harness

pytestmark = pytest.mark.guest

# Runs kexec-py's command line with its kexec_load request altered before the call: the
# refusal is the kernel's own, nothing of kexec-py's checks is bypassed.
REFUSE_LAUNCHER = '''\
import sys
from kexec_py.submit import syscalls
real = syscalls.kexec_load

def out_of_the_crash_region(entry, segments, flags):
    segments = list(segments)
    buf, mem, memsz = segments[-1]
    segments[-1] = (buf, 0, memsz)
    print(f"launcher: segment at {mem:#x} moved to 0", file=sys.stderr)
    real(entry, segments, flags)

syscalls.kexec_load = out_of_the_crash_region
from kexec_py.cli import main
main(sys.argv[1:])
'''
LAUNCHER = "/etc/kpy/refuse.py"
GOOD = 'kexec-py -p -c "$KERNEL" --initrd=/tmp/initrd.img --append="$CAPTURE_APPEND"'
REFUSED = f'python3 {LAUNCHER} -p -c "$KERNEL" --initrd=/tmp/initrd.img --append="$CAPTURE_APPEND"'


def test_a_refused_reload_brings_back_the_last_good_crash_kernel(tmp_path):
    launcher = tmp_path / "refuse.py"
    launcher.write_text(REFUSE_LAUNCHER)
    scenario = harness.Scenario("x86_64-last-good", [
        ("good", f'cp "$CAPTURE_INITRD" /tmp/initrd.img && {GOOD} && cat /run/kexec-py/crash-load.json && echo'),
        ("refused", f"PYTHONPATH=/opt/kpy/lib {REFUSED}"),
        ("changed", f"touch /tmp/initrd.img && PYTHONPATH=/opt/kpy/lib {REFUSED}"),
        ("load", GOOD),
    ], crash=True)
    result = harness.run(scenario, "x86_64", extra_files={LAUNCHER: launcher})
    m = result.markers
    assert (m.get("RC-good"), m.get("CRASH-LOADED-good")) == ("0", "1"), result.explain()
    assert '"argv": ["-p", "-c"' in result.step_output("good"), result.explain()

    refused = result.step_output("refused")
    assert "moved to 0" in refused, result.explain()
    # the kernel's refusal, reported as always, and the old crash kernel back in place
    assert (m.get("RC-refused"), m.get("CRASH-LOADED-refused")) == ("255", "1"), result.explain()
    assert "Cannot assign requested address" in refused or "EADDRNOTAVAIL" in refused, result.explain()
    assert "the one before is loaded again" in refused, result.explain()

    changed = result.step_output("changed")
    assert (m.get("RC-changed"), m.get("CRASH-LOADED-changed")) == ("255", "0"), result.explain()
    assert "/tmp/initrd.img changed since it was loaded" in changed, result.explain()
    assert "NO crash kernel is loaded now" in changed, result.explain()

    assert (m.get("RC-load"), m.get("CRASH-LOADED-load")) == ("0", "1"), result.explain()
    harness.assert_kdump_proof(result)
