"""-l then -e, and kdump, with every x86_64 image format, in QEMU (TCG) guests.

Each reboot test loads a kernel with ``kexec-py -l`` whose command line carries
``kpy_stage=2 kpy_tag=TAG``, then runs ``kexec-py -e``; the new kernel's /init
sees kpy_stage=2 and reports its command line, which must be the one this test
chose: that proves the load worked and that this kernel, not the first one
rebooting by itself, came up. The vmlinux files are extracted from the Debian
bzImage on the host (tests/image/kernels.py), the UKI is built here, and both
are baked into the first kernel's initrd.

Run: pytest -m guest tests/test_guest_reboot_x86_64.py   (30-60 s a test)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.guest import fetch, harness, image
from tests.image import kernels

pytestmark = pytest.mark.guest

ARCH = fetch.ARCHES["x86_64"]


@pytest.fixture(scope="module")
def inputs():
    """Install QEMU and fetch the guest inputs once (a failure fails, never skips)."""
    return harness.prepare("x86_64")


@pytest.fixture(scope="module")
def vmlinux_files(inputs) -> tuple[Path, Path]:
    return kernels.debian_vmlinux(inputs.kernel)


@pytest.fixture(scope="module")
def uki_file(inputs, tmp_path_factory) -> tuple[Path, str]:
    """A UKI of the Debian kernel with the stage-2 initrd and its own command line."""
    tmp = tmp_path_factory.mktemp("uki")
    initrd = image.build_capture(inputs, tmp / "capture.img")
    cmdline = harness.stage2_append(ARCH, "uki-embedded-cmdline")
    uki = kernels.build_uki([(".osrel", b"ID=kexec-py-test\n"), (".cmdline", cmdline.encode()),
                             (".linux", inputs.kernel.read_bytes()), (".initrd", initrd.read_bytes())])
    path = tmp / "test.efi"
    path.write_bytes(uki)
    return path, cmdline


def load_command(kernel: str, tag: str, flags: str = "") -> tuple[str, str]:
    return harness.reboot_load("x86_64", kernel, tag, flags)


assert_rebooted = harness.assert_rebooted


@pytest.mark.parametrize("syscall", ["c", "s"])
def test_reboot_bzimage(syscall):
    command, append = load_command('"$KERNEL"', f"bzimage-{syscall}", syscall)
    assert_rebooted(harness.run(harness.reboot(command, f"reboot-bzimage-{syscall}")), append)


def test_reboot_vmlinux(vmlinux_files):
    """The default -a: kexec_file_load takes no ELF, so kexec-py goes to kexec_load by itself,
    without asking the kernel first (-d makes it say so)."""
    command, append = load_command("/boot/vmlinux", "vmlinux", "d")
    result = harness.run(harness.reboot(command, "reboot-vmlinux"),
                         extra_files={"/boot/vmlinux": vmlinux_files[0]})
    assert_rebooted(result, append)
    output = result.step_output("load")
    assert "loading with kexec_load" in output, output
    assert "retrying" not in output, output


def test_reboot_vmlinux_gz(vmlinux_files):
    command, append = load_command("/boot/vmlinux.gz", "vmlinux-gz", "c")
    result = harness.run(harness.reboot(command, "reboot-vmlinux-gz"),
                         extra_files={"/boot/vmlinux.gz": vmlinux_files[1]})
    assert_rebooted(result, append)


@pytest.mark.parametrize("syscall", ["s", "c"])
def test_reboot_uki(uki_file, syscall):
    """No --initrd, no --append: the UKI's own .initrd and .cmdline boot."""
    path, cmdline = uki_file
    result = harness.run(harness.reboot(f"kexec-py -l -{syscall} /boot/test.efi", f"reboot-uki-{syscall}"),
                         extra_files={"/boot/test.efi": path})
    assert_rebooted(result, cmdline)


def test_kdump_vmlinux(vmlinux_files):
    """A vmlinux as the capture kernel, moved into the crash region (kexec-tools cannot)."""
    command = 'kexec-py -p /boot/vmlinux --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"'
    result = harness.run(harness.kdump(command, "kdump-vmlinux"),
                         extra_files={"/boot/vmlinux": vmlinux_files[0]})
    harness.assert_kdump_proof(result)
