"""arm64 kdump and reboot end to end, in qemu-system-aarch64 (TCG, -M virt) running Debian 12's cloud kernel.

The same proof as on x86_64: the first kernel writes a random token to its log,
loads a capture kernel and crashes; the capture kernel reads the dead kernel's
log from /proc/vmcore with Debian's vmcore-dmesg and must find the token. The
reboot tests load a kernel with ``-l`` whose command line carries
``kpy_stage=2 kpy_tag=TAG`` and run ``-e``: the new kernel's /init reports its
command line, which proves that kernel, with that command line, came up.

The vmlinux is rebuilt around Debian's Image on the host (tests/image/arm64_kernels.py:
Debian ships arm64 vmlinux files only in its 260 MB -dbg packages) and baked into
the first kernel's initrd.

No Debian arm64 kernel is built with CONFIG_KEXEC_FILE (bullseye's 5.10 through
the 7.x kernels of trixie-backports, sid and experimental: their /boot/config
files say "# CONFIG_KEXEC_FILE is not set"), so on Debian's kernel ``-s`` must
say so (exit 253) and the default ``-a`` must fall back to ``kexec_load``. The
``-s`` tests boot a kernel built from Debian's own 6.1 source with
CONFIG_KEXEC_FILE (tests/guest/kexec_file_kernel.py; built once into the cache,
4-7 minutes cold). Debian's kexec-tools 2.0.25 is run once and its outcome
recorded, not asserted: on Debian's kernel it builds a broken ELF core header
(see kexec_py/arch/arm64.py).

Run: pytest -m guest tests/test_guest_arm64.py   (20-40 s a test)
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.guest import harness
from tests.guest import kexec_file_kernel as kexec_file_kernel_module
from tests.image import arm64_kernels

pytestmark = pytest.mark.guest
ARCH = "aarch64"
AUTO_LOAD = 'kexec-py -p "$KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'


@pytest.fixture(scope="module", autouse=True)
def guest_inputs():
    """Install QEMU and fetch the guest inputs once (a failure fails, never skips)."""
    return harness.prepare(ARCH)


@pytest.fixture(scope="module")
def vmlinux_files(guest_inputs):
    """(vmlinux, vmlinux.gz) around the Debian Image the guest boots."""
    return arm64_kernels.debian_vmlinux(guest_inputs.kernel)


def reboot_command(kernel: str, tag: str, flags: str = "") -> tuple[str, str]:
    return harness.reboot_load(ARCH, kernel, tag, flags)


assert_rebooted = harness.assert_rebooted


assert_kdump_proof = harness.assert_kdump_proof


def test_kdump_kexec_load():
    # log_buf_len=1M: the log lives in memblock memory, read through the linear map
    result = harness.run(harness.kdump(harness.kexec_py_load("c"), "arm64-kexec-py-kdump-c"), ARCH,
                         append="log_buf_len=1M", dmesg_files=True)
    assert_kdump_proof(result)
    harness.assert_makedumpfile_reads(result)        # -l -d 31 walks the page tables: the ELF header's map
    harness.assert_python_dmesg_matches(result)      # kexec_py.vmcore.dmesg == vmcore-dmesg
    assert b"log_buf_len: 1048576 bytes" in result.files["vmcore-dmesg.txt"], "the log stayed in the image"


def test_kdump_default_syscall_falls_back_or_uses_the_file_syscall():
    result = harness.run(harness.kdump(AUTO_LOAD, "arm64-kexec-py-kdump-a"), ARCH)
    assert_kdump_proof(result)


def test_kexec_file_load_absent_on_debian_kernels():
    """-s on Debian's kernel (no CONFIG_KEXEC_FILE): exit 253, a message naming the call, nothing loaded."""
    scenario = harness.Scenario("arm64-kexec-py-s-debian", [("load", harness.kexec_py_load("s"))])
    result = harness.run(scenario, ARCH)
    m = result.markers
    assert m.get("RC-load") == "253", result.explain()
    assert m.get("CRASH-LOADED-load") == "0", result.explain()
    assert "kexec_file_load" in result.step_output("load"), result.explain()


# -- kexec_file_load (-s), on a kernel that has it ------------------------------------------

@pytest.fixture(scope="module")
def kexec_file_kernel() -> Path:
    """Debian's 6.1 source built with CONFIG_KEXEC_FILE (tests/guest/kexec_file_kernel.py)."""
    return kexec_file_kernel_module.kernel()


def test_kdump_kexec_file_load(kexec_file_kernel):
    """-p -s with the Image: the kernel's own arm64 loader places it and builds the device tree."""
    result = harness.run(harness.kdump(harness.kexec_py_load("s"), "arm64-kdump-s"), ARCH, kernel=kexec_file_kernel)
    assert_kdump_proof(result)
    assert "retrying" not in result.step_output("load"), result.explain()


def test_kdump_kexec_file_load_from_a_vmlinux_gz(kexec_file_kernel, tmp_path):
    """-p -s with a gzip'd vmlinux: kexec-py lays out the Image and hands it over in a memfd."""
    vmlinux_gz = tmp_path / "vmlinux.gz"
    vmlinux_gz.write_bytes(gzip.compress(arm64_kernels.vmlinux_from_image(kexec_file_kernel.read_bytes()),
                                        compresslevel=1, mtime=0))
    command = 'kexec-py -p -s /boot/vmlinux.gz --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'
    result = harness.run(harness.kdump(command, "arm64-kdump-s-vmlinux-gz"), ARCH, kernel=kexec_file_kernel,
                         extra_files={"/boot/vmlinux.gz": vmlinux_gz})
    assert_kdump_proof(result)


def test_reboot_kexec_file_load(kexec_file_kernel):
    """-l -s, then -e."""
    command, append = reboot_command('"$KERNEL"', "image-s", "s")
    result = harness.run(harness.reboot(command, "arm64-reboot-s"), ARCH, kernel=kexec_file_kernel)
    assert_rebooted(result, append)


def test_unload():
    scenario = harness.load_unload(harness.kexec_py_load("c"), harness.KEXEC_PY_UNLOAD, "arm64-kexec-py-unload")
    result = harness.run(scenario, ARCH)
    m = result.markers
    assert m.get("CRASH-LOADED-load") == "1", result.explain()
    assert m.get("RC-unload") == "0" and m.get("CRASH-LOADED-unload") == "0", result.explain()


def test_reference_kexec_tools_is_recorded():
    """Debian's kexec-tools 2.0.25 on the same guest: what it does is printed, not asserted
    (on Debian 12's 6.1 kernel its vmcore has a size near 2**64 and vmcore-dmesg fails)."""
    result = harness.run(harness.kdump(harness.REFERENCE_LOAD, "arm64-reference-kdump"), ARCH)
    print("\n" + harness.summary(result, "kexec-tools 2.0.25 (Debian 12)"))
    assert "RC-load" in result.markers, f"the guest never ran the load step\n{result.explain()}"


def test_reboot_image_kexec_load():
    """-l -c with Debian's Image, then -e: our purgatory enters the new kernel with x0 = its device tree."""
    command, append = reboot_command('"$KERNEL"', "image-c", "c")
    assert_rebooted(harness.run(harness.reboot(command, "arm64-reboot-image-c"), ARCH), append)


def test_reboot_vmlinux_gz_default_syscall(vmlinux_files):
    """A gzip'd vmlinux with the default -a: kexec_file_load gets the Image laid out from it, the
    kernel has no such call (ENOSYS), and kexec-py goes on with kexec_load by itself."""
    command, append = reboot_command("/boot/vmlinux.gz", "vmlinux-gz", "d")      # -d: say the fallback
    result = harness.run(harness.reboot(command, "arm64-reboot-vmlinux-gz"), ARCH,
                         extra_files={"/boot/vmlinux.gz": vmlinux_files[1]})
    assert_rebooted(result, append)
    assert "retrying with kexec_load" in result.step_output("load"), result.explain()


def test_kdump_vmlinux(vmlinux_files):
    """A vmlinux ELF file as the capture kernel, with kexec_load."""
    command = 'kexec-py -p -c /boot/vmlinux --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'
    result = harness.run(harness.kdump(command, "arm64-kdump-vmlinux"), ARCH,
                         extra_files={"/boot/vmlinux": vmlinux_files[0]})
    assert_kdump_proof(result)
