"""Debian's own kdump-config (kdump-tools, unchanged) driving kexec-py as /sbin/kexec.

The guest gets what kdump-config needs and no more: busybox, the script, a stub
/lib/lsb/init-functions, /etc/default/kdump-tools with USE_KDUMP=1 (and the capture
command line the harness's capture kernel expects), /etc/kdump/sysctl.conf, the running
kernel as /boot/vmlinuz-$(uname -r) with a /boot/config-* that says CONFIG_RELOCATABLE=y,
and the harness's capture initrd as /boot/initrd.img-$(uname -r) and kdump-tools' own
/var/lib/kdump/initrd.img-$(uname -r). Then: load, status, unload, status, load, crash:
the capture kernel's vmcore-dmesg and makedumpfile must find the first kernel's token.
kdump-config checks only exit statuses and /sys/kernel/kexec_crash_loaded.

All of this happens inside the guest's initramfs; nothing is written on the host.

Run: pytest -m guest tests/test_guest_kdump_config.py   (one guest boot per arch: x86_64, arm64, ppc64le, 32-bit arm)
"""

from __future__ import annotations

import pytest

from tests.guest import harness

pytestmark = pytest.mark.guest
KDUMP_CONFIG = "/usr/sbin/kdump-config"

# The guest's setup step (run by the guest's /init, never on the host).
LSB_STUB = "\n".join((
    'log_success_msg() { echo "ok: $*"; }',
    'log_failure_msg() { echo "failed: $*"; }',
    'log_warning_msg() { echo "warning: $*"; }',
    'log_action_msg() { echo "doing: $*"; }',
))
GUEST_SETUP = "\n".join((
    "KVER=$(uname -r)",
    "mkdir -p /lib/lsb /etc/default /etc/kdump /var/lib/kdump /var/crash /boot",
    f"printf '%s\\n' '{LSB_STUB}' >/lib/lsb/init-functions",
    "printf 'USE_KDUMP=1\\nKDUMP_CMDLINE=\"%s\"\\nKDUMP_CMDLINE_APPEND=\"\"\\n' \"$CAPTURE_APPEND\""
    " >/etc/default/kdump-tools",
    ": >/etc/kdump/sysctl.conf",
    '[ -e "/boot/vmlinuz-$KVER" ] || ln -s "$KERNEL" "/boot/vmlinuz-$KVER"',
    'echo CONFIG_RELOCATABLE=y >"/boot/config-$KVER"',
    'cp "$CAPTURE_INITRD" "/boot/initrd.img-$KVER"',
    'cp "$CAPTURE_INITRD" "/var/lib/kdump/initrd.img-$KVER"',
    "ln -sf /usr/bin/kexec-py /sbin/kexec",
    "/sbin/kexec --version",
))


@pytest.fixture(scope="module", params=["x86_64", "aarch64", "ppc64le", "armmp"])
def inputs(request):
    """Install QEMU and fetch the guest inputs once (a failure fails, never skips)."""
    return harness.prepare(request.param)


def test_kdump_config_drives_kexec_py(inputs):
    script = inputs.root / KDUMP_CONFIG.lstrip("/")
    assert script.is_file(), f"kdump-tools' {KDUMP_CONFIG} was not fetched"
    scenario = harness.Scenario(f"kdump-config-{inputs.arch.name}", [
        ("setup", GUEST_SETUP),
        ("kdc_load", f"{KDUMP_CONFIG} load"),
        ("kdc_status", f"{KDUMP_CONFIG} status"),
        ("kdc_unload", f"{KDUMP_CONFIG} unload"),
        ("kdc_status_unloaded", f"{KDUMP_CONFIG} status"),
        ("load", f"{KDUMP_CONFIG} load && cat /var/crash/kexec_cmd"),
    ], crash=True)
    result = harness.run(scenario, inputs.arch.name, extra_files={KDUMP_CONFIG: script})
    m = result.markers
    assert m.get("RC-setup") == "0", result.explain()
    assert "kexec-tools-compatible" in result.step_output("setup"), result.explain()
    assert (m.get("RC-kdc_load"), m.get("CRASH-LOADED-kdc_load")) == ("0", "1"), result.explain()
    assert "ready to kdump" in result.step_output("kdc_status"), result.explain()
    assert (m.get("RC-kdc_unload"), m.get("CRASH-LOADED-kdc_unload")) == ("0", "0"), result.explain()
    assert "Not ready to kdump" in result.step_output("kdc_status_unloaded"), result.explain()
    assert "/sbin/kexec -p" in result.step_output("load"), result.explain()     # what kdump-config ran
    harness.assert_kdump_proof(result)
    harness.assert_makedumpfile_reads(result)
