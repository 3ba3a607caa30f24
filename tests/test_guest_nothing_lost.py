"""Nothing lost, proved in an x86_64 guest: with a good capture kernel loaded, reloads
that must fail are refused in userspace, the loaded capture kernel stays loaded, and
a crash still gives a readable vmcore.

Both kexec syscalls free the loaded crash image before they look at a new one, so
every refusal below must come from kexec-py before it calls: each step exits
non-zero, and /sys/kernel/kexec_crash_loaded (the harness's CRASH-LOADED-<step>
marker, read right after the step) stays 1. A control step shows what the kernel
does with such a reload when userspace lets it through (kexec-tools 2.0.25): the
crash kernel is gone. One guest boot does it all, reloads, then crashes: the
capture kernel must find the first kernel's token in /proc/vmcore.

Run: flock /tmp/kexec-guest.lock python3 -m pytest -q -m guest tests/test_guest_nothing_lost.py
"""

from __future__ import annotations

import pytest

from tests.guest import harness

pytestmark = pytest.mark.guest

LOAD = 'kexec-py -p {syscall} "{kernel}" --initrd="{initrd}" --append="$CAPTURE_APPEND{extra}"'


def load(syscall: str = "", kernel: str = "$KERNEL", initrd: str = "$CAPTURE_INITRD", extra: str = "") -> str:
    return LOAD.format(syscall=syscall, kernel=kernel, initrd=initrd, extra=extra)


# (step name, shell, the file or words the one-line error must name)
BAD_RELOADS = [
    ("truncated_kernel_c", 'head -c 4000000 "$KERNEL" >/tmp/half.img\n' + load("-c", kernel="/tmp/half.img"),
     "/tmp/half.img"),
    ("truncated_kernel_s", load("-s", kernel="/tmp/half.img"), "/tmp/half.img"),
    ("garbage_kernel", 'head -c 65536 /dev/urandom >/tmp/junk.img\n' + load(kernel="/tmp/junk.img"),
     "/tmp/junk.img"),
    ("initrd_too_big_c", "dd if=/dev/zero of=/tmp/big.img bs=1M count=0 seek=1024 2>/dev/null\n"
     + load("-c", initrd="/tmp/big.img"), "/tmp/big.img"),
    ("initrd_too_big_s", load("-s", initrd="/tmp/big.img"), "/tmp/big.img"),
    ("initrd_almost_fits_s", "dd if=/dev/zero of=/tmp/near.img bs=1M count=0 seek=360 2>/dev/null\n"
     + load("-s", initrd="/tmp/near.img"), "/tmp/near.img"),
    ("cmdline_too_long_c", load("-c", extra=" $(head -c 2100 /dev/zero | tr '\\000' x)"), "--append"),
    ("cmdline_too_long_s", load("-s", extra=" $(head -c 2020 /dev/zero | tr '\\000' y)"), "--append"),
    ("empty_initrd_s", ": >/tmp/empty.img\n" + load("-s", initrd="/tmp/empty.img"), "/tmp/empty.img"),
]


# The control: the same empty initrd handed to the kernel by Debian's kexec-tools
# 2.0.25, which does not check it. The kernel frees the loaded crash kernel, then
# refuses the initrd: this is what each refusal above saves the user from.
CONTROL = '/sbin/kexec -p -s "$KERNEL" --initrd=/tmp/empty.img --append="$CAPTURE_APPEND"'


def test_failed_reloads_keep_the_crash_kernel():
    steps = ([("load", load("-c"))] + [(name, shell) for name, shell, _ in BAD_RELOADS]
             + [("control_kexec_tools", CONTROL), ("reload", load("-c"))])
    result = harness.run(harness.Scenario("nothing-lost", steps, crash=True))
    m = result.markers
    assert m.get("RC-load") == "0", f"the good load failed\n{result.explain()}"
    assert m.get("CRASH-LOADED-load") == "1", f"no crash kernel after the good load\n{result.explain()}"
    for name, _, names in BAD_RELOADS:
        out = result.step_output(name)
        assert m.get(f"RC-{name}") not in (None, "0"), f"{name}: the bad reload did not fail\n{out}"
        assert m.get(f"CRASH-LOADED-{name}") == "1", f"{name}: the crash kernel was lost\n{result.explain()}"
        errors = [line for line in out.splitlines() if line.startswith("kexec-py: ")]
        assert len(errors) == 1 and names in errors[0], f"{name}: one line naming {names!r} expected\n{out}"
        assert "Traceback" not in out, out
    assert m.get("RC-control_kexec_tools") not in (None, "0"), result.step_output("control_kexec_tools")
    assert m.get("CRASH-LOADED-control_kexec_tools") == "0", \
        f"the kernel kept the crash kernel after a refused kexec_file_load\n{result.explain()}"
    assert m.get("RC-reload") == "0" and m.get("CRASH-LOADED-reload") == "1", result.explain()
    assert "CAPTURE-UP" in m, f"the capture kernel never ran\n{result.explain()}"
    assert m.get("VMCORE-DMESG-RC") == "0", f"vmcore-dmesg failed\n{result.explain()}"
    assert result.token_found, f"token not in the vmcore's log\n{result.explain()}"
    print(f"\nnothing-lost: {len(BAD_RELOADS)} refused reloads; phases {result.phases()}")
