"""ppc64le kdump in qemu-system-ppc64 (TCG, -M pseries, POWER9) running Debian 12's powerpc64le kernel:
the reference run that a kexec-py ppc64le loader will be held to.

The reference run is Debian's kexec-tools 2.0.25 in the guest: the first kernel writes
a random token to its log, ``kexec -p`` loads the capture kernel (Debian's ELF vmlinux, with
kexec_load: the kernel is built without CONFIG_KEXEC_FILE, so ``kexec -s`` must exit 253 first
and load nothing), sysrq crashes it, and the capture kernel reads the dead kernel's log back from
/proc/vmcore with Debian's vmcore-dmesg and with makedumpfile (``--dump-dmesg``, then a
``-l -d 31`` dump, which walks the page tables). Then the same proof with kexec-py (``-p -c``,
and the default ``-a``, which finds no kexec_file_load in Debian's kernel and goes on with
kexec_load), and a ``-l -c`` / ``-e`` reboot. One guest boot each, 25-50 s under TCG on 2 cores.

``-s`` kdump and reboot run on a kernel built from Debian's linux-source with CONFIG_KEXEC_FILE
(tests/guest/kexec_file_kernel.py, cached), used as both the first and the capture kernel.

Run: pytest -m guest tests/test_guest_ppc64le.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.guest import harness
from tests.guest import kexec_file_kernel as kexec_file_kernel_module

pytestmark = pytest.mark.guest
ARCH = "ppc64le"
# Room for hotplugged memory: QEMU then describes RAM with ibm,dynamic-reconfiguration-memory
# (LMBs), as on PowerVM. The 6.1 kernel's kexec_file_load needs it for a crash load: it sizes the
# capture kernel's device tree by dividing by the LMB size, which is 0 without that node.
HOTPLUG_MAXMEM = 4096
REFERENCE_FILE_LOAD = '/sbin/kexec -p -s "$KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'


@pytest.fixture(scope="module", autouse=True)
def guest_inputs():
    """Install QEMU and fetch the guest inputs once (a failure fails, never skips)."""
    return harness.prepare(ARCH)


def test_the_guest_kernel_is_debians_elf_vmlinux(guest_inputs):
    assert guest_inputs.kernel.name.startswith("vmlinux-")
    assert guest_inputs.kernel.read_bytes()[:6] == b"\x7fELF\x02\x01"       # ELF64, little endian


def test_reference_kexec_tools_kdump():
    """Debian's kexec-tools 2.0.25: -s exits 253 (no kexec_file_load), -p with kexec_load
    loads, and the capture kernel's vmcore-dmesg and makedumpfile find the token."""
    scenario = harness.Scenario("ppc64le-reference-kdump",
                                [("file_load", REFERENCE_FILE_LOAD), ("load", harness.REFERENCE_LOAD)],
                                crash=True)
    result = harness.run(scenario, ARCH)
    print("\n" + harness.summary(result, "kexec-tools 2.0.25 (Debian 12)"))
    m = result.markers
    assert m.get("RC-file_load") == "253", result.explain()
    assert m.get("CRASH-LOADED-file_load") == "0", result.explain()
    assert "kexec_file_load not available" in result.step_output("file_load"), result.explain()
    assert m.get("CRASH-SIZE") == str(384 << 20), result.explain()         # crashkernel=384M
    harness.assert_kdump_proof(result)
    assert "elfcorehdr=" in m.get("CAPTURE-CMDLINE", ""), result.explain()
    harness.assert_makedumpfile_reads(result)


def test_kdump_kexec_py_kexec_load():
    """kexec-py -p -c: our planner (64 KiB pages, the 64 KiB backup, the device tree from
    /proc/device-tree) and purgatory; loaded, unloaded with -p -u, loaded again, crashed:
    vmcore-dmesg and makedumpfile find the token, and kexec_py.vmcore.dmesg prints what
    vmcore-dmesg prints."""
    load = harness.kexec_py_load("c")
    scenario = harness.Scenario("ppc64le-kexec-py-kdump-c", [("first", load), ("unload", harness.KEXEC_PY_UNLOAD),
                                                              ("load", load)], crash=True)
    result = harness.run(scenario, ARCH, append="log_buf_len=1M", dmesg_files=True)  # the log in memblock memory
    m = result.markers
    assert (m.get("RC-first"), m.get("CRASH-LOADED-first")) == ("0", "1"), result.explain()
    assert (m.get("RC-unload"), m.get("CRASH-LOADED-unload")) == ("0", "0"), result.explain()
    print("\n" + harness.summary(result, "kexec-py -p -c"))
    harness.assert_kdump_proof(result)
    harness.assert_makedumpfile_reads(result)
    harness.assert_python_dmesg_matches(result)      # kexec_py.vmcore.dmesg == vmcore-dmesg
    assert b"log_buf_len: 1048576 bytes" in result.files["vmcore-dmesg.txt"], "the log stayed in the image"


def test_kdump_kexec_load_with_hotpluggable_memory():
    """-p -c on a machine with room for hotplugged memory: QEMU describes RAM with
    ibm,dynamic-reconfiguration-memory (LMBs) besides memory@0, so the crash memory and the
    capture kernel's usable memory come from the LMBs too (linux,drconf-usable-memory)."""
    result = harness.run(harness.kdump(harness.kexec_py_load("c"), "ppc64le-kexec-py-kdump-c-hotplug"), ARCH,
                         maxmem=HOTPLUG_MAXMEM)
    assert not any("No dynamic reconfiguration memory" in line for line in result._log_lines()), result.explain()
    harness.assert_kdump_proof(result)
    harness.assert_makedumpfile_reads(result)


def test_kdump_default_syscall_falls_back():
    """On Debian's kernel (no kexec_file_load): -s exits 253 and loads nothing, as kexec-tools
    does; -a (the default) gets ENOSYS from kexec_file_load and goes on with kexec_load."""
    command = 'kexec-py -p "$KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'
    scenario = harness.Scenario("ppc64le-kexec-py-kdump-a", [("file_load", harness.kexec_py_load("s")),
                                                             ("load", command)], crash=True)
    result = harness.run(scenario, ARCH)
    m = result.markers
    assert (m.get("RC-file_load"), m.get("CRASH-LOADED-file_load")) == ("253", "0"), result.explain()
    harness.assert_kdump_proof(result)


# -- kexec_file_load (-s), on a kernel that has it ------------------------------------------

@pytest.fixture(scope="module")
def kexec_file_kernel() -> Path:
    """Debian's 6.1 source built for pseries with CONFIG_KEXEC_FILE (tests/guest/kexec_file_kernel.py)."""
    return kexec_file_kernel_module.kernel(ARCH)


def test_kdump_kexec_file_load(kexec_file_kernel):
    """-p -s with the ELF vmlinux, on a machine with hotpluggable memory: the kernel's own ppc64
    loader places it, with its purgatory, its device tree (usable memory for the LMBs) and its
    copy of the first 64 KiB; vmcore-dmesg and makedumpfile read the dump."""
    result = harness.run(harness.kdump(harness.kexec_py_load("s"), "ppc64le-kdump-s"), ARCH, kernel=kexec_file_kernel,
                         maxmem=HOTPLUG_MAXMEM)
    print("\n" + harness.summary(result, "kexec-py -p -s"))
    harness.assert_kdump_proof(result)
    harness.assert_makedumpfile_reads(result)
    assert "retrying" not in result.step_output("load"), result.explain()


def test_reboot_kexec_file_load(kexec_file_kernel):
    """-l -s, then -e, on the same kernel."""
    command, append = harness.reboot_load(ARCH, '"$KERNEL"', "ppc64le-l-s", "s")
    result = harness.run(harness.reboot(command, "ppc64le-reboot-s"), ARCH, kernel=kexec_file_kernel)
    harness.assert_rebooted(result, append)


def test_reboot_kexec_py_kexec_load():
    """kexec-py -l -c, then -e: the new kernel (loaded above the running one, which refuses
    segments below its end) copies itself to 0 and comes up with the command line it was given."""
    command, append = harness.reboot_load(ARCH, '"$KERNEL"', "ppc64le-l-c", "c")
    harness.assert_rebooted(harness.run(harness.reboot(command, "ppc64le-reboot-c"), ARCH), append)
