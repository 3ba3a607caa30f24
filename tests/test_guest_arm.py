"""32-bit arm end to end, in qemu-system-arm (TCG, -M virt -cpu cortex-a15) running Debian 12's
armmp-lpae zImage, whose size tag says TEXT_OFFSET 0x208000.

With its default arguments Debian's kexec-tools 2.0.25 loads such a kernel but the new
kernel hangs after "Bye!": it assumes TEXT_OFFSET 0x8000 and puts the initrd and device
tree where the decompressor copies itself (next-arches-facts.md). kexec-py reads the
image's own numbers, so these tests pass no --image-size.

The reboot test loads a kernel with ``-l`` whose command line carries ``kpy_stage=2
kpy_tag=TAG`` and its initrd, and runs ``-e``: the new kernel's /init (from that initrd,
found through the device tree's linux,initrd-start/-end) reports that command line (from
the device tree's /chosen/bootargs), which proves the kernel found both where kexec-py put
them. The kdump test is the usual proof: the capture kernel reads the first kernel's
token from /proc/vmcore with Debian's vmcore-dmesg.

Run: pytest -m guest tests/test_guest_arm.py
"""

from __future__ import annotations

import pytest

from tests.guest import harness

pytestmark = pytest.mark.guest
ARCH = "arm"


@pytest.fixture(scope="module", autouse=True)
def guest_inputs():
    """Install QEMU and fetch the guest inputs once (a failure fails, never skips)."""
    return harness.prepare(ARCH)


def test_reboot_kexec_load_without_image_size():
    command, append = harness.reboot_load(ARCH, '"$KERNEL"', "arm-l", "c")
    result = harness.run(harness.reboot(command, "arm-kexec-py-reboot"), ARCH)
    harness.assert_rebooted(result, append)


def test_kdump_kexec_load_without_image_size():
    result = harness.run(harness.kdump(harness.kexec_py_load("c"), "arm-kexec-py-kdump-c"), ARCH)
    harness.assert_kdump_proof(result)
