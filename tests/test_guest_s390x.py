"""s390x end to end, in qemu-system-s390x (TCG, -M s390-ccw-virtio -cpu max) running Debian 12's
s390x kernel, all in ONE guest boot (an s390x kexec costs minutes under TCG: the second
kernel's decompressor writes over pages that held the first kernel's translated code, and
every store takes QEMU's self-modifying-code path; next-arches-facts.md measured 65-104 s).

Debian's s390x kernel is built without CONFIG_CRASH_DUMP and CONFIG_KEXEC_FILE, so in that
one guest:

* ``-p`` is refused by kexec-py as by Debian's kexec-tools 2.0.25: exit 1, "Memory for
  crashkernel is not reserved" (there is no "Crash kernel" range); kexec-py also says why,
  from the kernel's own config file (installed at /boot/config-RELEASE as the package does);
* ``-s -l`` exits 253 for both (kexec_file_load returns ENOSYS);
* ``-p -u`` unloads (nothing is loaded: exit 0);
* ``-l`` (the default ``-a``: kexec_file_load's ENOSYS, then kexec_load), then ``-e``, reboots:
  the new kernel's /init (from the initrd kexec-py placed) reports the command line kexec-py
  wrote into the image's parameter area, which proves the kernel found both.

kdump runs on a kernel built from Debian's 6.1 linux-source with CONFIG_CRASH_DUMP and
CONFIG_KEXEC_FILE, uncompressed (tests/guest/kexec_file_kernel.py, cached), the first and
the capture kernel, crashkernel=384M: one boot each for ``-p -s`` and ``-p -c`` (load,
``-p -u``, load again, sysrq crash; Debian's vmcore-dmesg and makedumpfile ``--dump-dmesg``
and ``-l -d 31`` and kexec_py.vmcore.dmesg read the dump), about 40 s each on 2 shared cores.

Run: pytest -m guest tests/test_guest_s390x.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.guest import harness
from tests.guest import kexec_file_kernel as kexec_file_kernel_module

pytestmark = pytest.mark.guest
ARCH = "s390x"
TIMEOUT = 900.0         # boot ~4 s, the Python steps ~1 min, the second kernel 65-104 s (up to 2x on a busy host)
KDUMP_TIMEOUT = 600.0   # the built kernel: boot ~3 s, loads ~3 s each, the capture kernel seconds, dumps ~1 min
NOT_RESERVED = "Memory for crashkernel is not reserved"


@pytest.fixture(scope="module")
def guest_inputs():
    """Install QEMU and fetch the guest inputs once (a failure fails, never skips)."""
    return harness.prepare(ARCH)


def test_p_refused_s_253_unload_then_reboot(guest_inputs):
    config = sorted((guest_inputs.root / "boot").glob("config-*"))
    assert len(config) == 1, f"expected the kernel package's config file, found {config}"
    load, append = harness.reboot_load(ARCH, '"$KERNEL"', "s390x-l")     # -a: kexec_file_load, then kexec_load
    file_load = 'kexec -s -l "$KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'
    scenario = harness.Scenario("s390x-kexec-py-one-boot", [
        ("tools_p", harness.REFERENCE_LOAD),
        ("p", harness.kexec_py_load("c")),
        ("tools_s", f"/sbin/{file_load}"),
        ("s", file_load.replace("kexec", "kexec-py", 1)),
        ("unload", harness.KEXEC_PY_UNLOAD),
        ("load", load),
        ("exec", "kexec-py -e"),
    ])
    result = harness.run(scenario, ARCH, timeout=TIMEOUT,
                         extra_files={f"/boot/{config[0].name}": config[0]})
    m = result.markers
    # -p: kexec-tools' exit status and words, and the reason
    assert m.get("RC-tools_p") == "1" and NOT_RESERVED in result.step_output("tools_p"), result.explain()
    assert m.get("RC-p") == "1", result.explain()
    said = result.step_output("p")
    assert NOT_RESERVED in said and "CONFIG_CRASH_DUMP" in said and "Please reserve" not in said, result.explain()
    # -s: no kexec_file_load in this kernel
    assert m.get("RC-tools_s") == "253", result.explain()
    assert "kexec_file_load not available" in result.step_output("tools_s"), result.explain()
    assert m.get("RC-s") == "253", result.explain()
    said = result.step_output("s")
    assert "kexec_file_load failed: Function not implemented" in said and "tools" not in said, result.explain()
    # -p -u: nothing loaded, nothing to fail
    assert m.get("RC-unload") == "0" and m.get("CRASH-LOADED-unload") == "0", result.explain()
    # -l, -e: the new kernel runs the initrd's /init with the command line kexec-py wrote
    assert "kexec-py:" not in result.step_output("load"), result.explain()      # the fallback is silent
    harness.assert_rebooted(result, append)
    exec_at = next(e.t for e in result.events if e.key == "STEP-BEGIN" and e.value == "exec")
    print(f"s390x: load {m.get('MS-load')} ms in the guest; the second kernel's /init "
          f"{round(result.when('STAGE2-UP') - exec_at, 1)} s after -e")


# -- kdump, on a kernel built with CONFIG_CRASH_DUMP and CONFIG_KEXEC_FILE -------------------

@pytest.fixture(scope="module")
def built_kernel() -> Path:
    """Debian's 6.1 source built for s390-ccw-virtio with CRASH_DUMP and KEXEC_FILE, uncompressed
    (tests/guest/kexec_file_kernel.py, cached); the first and the capture kernel."""
    return kexec_file_kernel_module.kernel(ARCH)


def test_kdump_kexec_file_load(guest_inputs, built_kernel):
    """-p -s, -p -u, -p -s again, then a sysrq crash, in one boot: the kernel's own s390
    kexec_file_load places the capture kernel in the crash region with its purgatory;
    the capture kernel builds /proc/vmcore from OLDMEM_BASE/OLDMEM_SIZE; Debian's vmcore-dmesg
    and makedumpfile (--dump-dmesg, -l -d 31) find the token, and kexec_py.vmcore.dmesg prints
    what vmcore-dmesg prints."""
    load = harness.kexec_py_load("s")
    scenario = harness.Scenario("s390x-kdump-s", [("first", load), ("unload", harness.KEXEC_PY_UNLOAD),
                                                  ("load", load)], crash=True)
    result = harness.run(scenario, ARCH, kernel=built_kernel, timeout=KDUMP_TIMEOUT, dmesg_files=True)
    m = result.markers
    assert m.get("CRASH-SIZE") == str(384 << 20), result.explain()         # crashkernel=384M
    assert (m.get("RC-first"), m.get("CRASH-LOADED-first")) == ("0", "1"), result.explain()
    assert (m.get("RC-unload"), m.get("CRASH-LOADED-unload")) == ("0", "0"), result.explain()
    print("\n" + harness.summary(result, "kexec-py -p -s"))
    harness.assert_kdump_proof(result)
    assert "elfcorehdr=" not in m.get("CAPTURE-CMDLINE", ""), result.explain()  # s390: OLDMEM_BASE instead
    harness.assert_makedumpfile_reads(result)
    harness.assert_python_dmesg_matches(result)


def test_kdump_kexec_load(guest_inputs, built_kernel):
    """-p -c, -p -u, -p -c again, then a sysrq crash, in one boot: kexec-py's plan (the
    capture kernel in the crash region, OLDMEM_BASE/OLDMEM_SIZE in its parameter area, no
    ELF core header) and our purgatory (the kernel asks it to check the segments, then at
    the crash it swaps the crash region with the memory from 0 and enters the capture
    kernel's kdump entry at 0x10010); the same readers find the token."""
    load = harness.kexec_py_load("c")
    scenario = harness.Scenario("s390x-kdump-c", [("first", load), ("unload", harness.KEXEC_PY_UNLOAD),
                                                  ("load", load)], crash=True)
    result = harness.run(scenario, ARCH, kernel=built_kernel, timeout=KDUMP_TIMEOUT, dmesg_files=True)
    m = result.markers
    assert (m.get("RC-first"), m.get("CRASH-LOADED-first")) == ("0", "1"), result.explain()
    assert (m.get("RC-unload"), m.get("CRASH-LOADED-unload")) == ("0", "0"), result.explain()
    print("\n" + harness.summary(result, "kexec-py -p -c"))
    harness.assert_kdump_proof(result)
    assert "elfcorehdr=" not in m.get("CAPTURE-CMDLINE", ""), result.explain()
    harness.assert_makedumpfile_reads(result)
    harness.assert_python_dmesg_matches(result)
