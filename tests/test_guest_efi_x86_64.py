"""UEFI x86_64 guests (OVMF): a kernel started through kexec_load keeps EFI (issue 18).

The first kernel boots from OVMF through its EFI stub; /init reports what it has of EFI
(init.sh's report_efi: fw_platform_size, the number of runtime-map entries, the systab,
and whether the kernel uses the runtime services: it makes /sys/firmware/efi/efivars only
when it can call GetVariable), and so do the
kernel booted by ``kexec-py -c -l`` + ``-e`` and the capture kernel of ``kexec-py -c -p``.
Each must have the first kernel's EFI: the same runtime map size and systab, and runtime services.

OVMF under TCG is slow: two boots here, each with its second kernel.

Run: pytest -m guest tests/test_guest_efi_x86_64.py
"""

from __future__ import annotations

import pytest

from tests.guest import harness

pytestmark = pytest.mark.guest

FIRMWARE = "ovmf"
TIMEOUT = 600.0


def efi_of(result: harness.Result, after: str | None) -> dict[str, str]:
    """The EFI markers a kernel reported: the first kernel's (``after`` None), or those
    that come after the marker ``after`` (STAGE2-UP, CAPTURE-UP)."""
    events = result.events
    if after is not None:
        start = next((i for i, m in enumerate(events) if m.key == after), None)
        assert start is not None, f"no {after}\n{result.explain()}"
        events = events[start:]
    out: dict[str, str] = {}
    for m in events:
        if m.key.startswith("EFI"):
            out.setdefault(m.key, m.value)
    return out


def assert_same_efi(result: harness.Result, after: str) -> None:
    first, second = efi_of(result, None), efi_of(result, after)
    assert first.get("EFI") == "64", f"the first kernel did not boot through 64-bit UEFI\n{result.explain()}"
    assert int(first.get("EFI-RUNTIME-MAP", "0")) > 0 and "SMBIOS=" in first.get("EFI-SYSTAB", ""), \
        f"the first kernel has no runtime map or systab\n{result.explain()}"
    assert second.get("EFI") == "64", f"{after}: no /sys/firmware/efi\n{result.explain()}"
    assert second.get("EFI-RUNTIME-MAP") == first["EFI-RUNTIME-MAP"], f"{after}: {second}\n{result.explain()}"
    assert second.get("EFI-SYSTAB", "").split() == first["EFI-SYSTAB"].split(), f"{after}: {second}"
    assert "ACPI20=" in second["EFI-SYSTAB"]
    assert first.get("EFI-RUNTIME") == "yes", f"the first kernel has no EFI runtime services\n{result.explain()}"
    assert second.get("EFI-RUNTIME") == "yes", f"{after}: no EFI runtime services\n{result.explain()}"
    print(f"\n{result.scenario}: first kernel EFI {first}; {after}: {second}")


def test_reboot_kexec_load_keeps_efi():
    """-c -l then -e: the new kernel has /sys/firmware/efi, its runtime map and systab."""
    load, append = harness.reboot_load("x86_64", "$KERNEL", "efi-reboot", "c")
    result = harness.run(harness.reboot(load, "efi-reboot"), firmware=FIRMWARE, timeout=TIMEOUT)
    harness.assert_rebooted(result, append)
    assert_same_efi(result, "STAGE2-UP")


def test_kdump_kexec_load_keeps_efi():
    """-c -p and a crash: the vmcore proof, and the capture kernel has EFI too (so no
    acpi_rsdp= is needed on its command line)."""
    result = harness.run(harness.kdump(harness.kexec_py_load("c"), "efi-kdump"), firmware=FIRMWARE,
                         timeout=TIMEOUT)
    harness.assert_kdump_proof(result)
    harness.assert_makedumpfile_reads(result)
    assert_same_efi(result, "CAPTURE-UP")
    assert "acpi_rsdp=" not in result.markers.get("CAPTURE-CMDLINE", "")
