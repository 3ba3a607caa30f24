"""Debian's own kdump-config (kdump-tools, unchanged) driving kexec-py as /sbin/kexec, installed
from the .deb that debian/ builds (with Debian's python3-* packages of its dependencies), not
from the working tree.

The guest gets what kdump-config needs and no more: busybox, the script, a stub
/lib/lsb/init-functions, /etc/default/kdump-tools with USE_KDUMP=1 (and the capture
command line the harness's capture kernel expects), /etc/kdump/sysctl.conf, the running
kernel as /boot/vmlinuz-$(uname -r) with its Debian /boot/config-*,
and the harness's capture initrd as /boot/initrd.img-$(uname -r) and kdump-tools' own
/var/lib/kdump/initrd.img-$(uname -r). Then: load, status, unload, status, load, crash:
the capture kernel's vmcore-dmesg and makedumpfile must find the first kernel's token.
kdump-config checks only exit statuses and /sys/kernel/kexec_crash_loaded.

``kdump-py doctor`` runs twice on the way: with kdump-tools set up but no capture kernel
loaded it must say "not ready" (exit 1), and after the load whose crash then dumps it
must say "ready" (exit 0, or 2 with warnings).

All of this happens inside the guest's initramfs; nothing is written on the host.

Run: pytest -m guest tests/test_guest_kdump_config.py   (one guest boot per arch: x86_64, arm64, ppc64le, 32-bit arm,
s390x on the kernel built with CONFIG_CRASH_DUMP)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests import debpkg
from tests.guest import fetch, harness

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
    '[ -e "/boot/config-$KVER" ] || echo CONFIG_RELOCATABLE=y >"/boot/config-$KVER"',
    'cp "$CAPTURE_INITRD" "/boot/initrd.img-$KVER"',
    'cp "$CAPTURE_INITRD" "/var/lib/kdump/initrd.img-$KVER"',
    # the package's /usr/sbin/kexec is /sbin/kexec on a merged-/usr system (it replaces kexec-tools')
    "ln -sf /usr/sbin/kexec /sbin/kexec",
    "/sbin/kexec --version",
    "python3 -c 'import kexec_py, typer; print(\"modules:\", kexec_py.__file__, typer.__file__)'",
    "[ -e /opt/kpy ] || [ -e /usr/bin/kexec-py ] || echo 'no working-tree copy'",
))


@pytest.fixture(scope="module", params=["x86_64", "aarch64", "ppc64le", "armmp"])
def inputs(request):
    """Install QEMU and fetch the guest inputs once (a failure fails, never skips)."""
    return harness.prepare(request.param)


@pytest.fixture(scope="module")
def installed(built_deb, tmp_path_factory) -> Path:
    """The .deb built from debian/ (tests/debpkg.py), unpacked as dpkg installs it."""
    return debpkg.unpack(built_deb, tmp_path_factory.mktemp("kexec-py-deb"))


def _names(deb: Path) -> set[str]:
    """The package's name and what it provides."""
    provides = debpkg.field(deb, "Provides")
    return {debpkg.field(deb, "Package"), *(re.split(r"[\s(]", p.strip())[0] for p in provides.split(",") if p.strip())}


def _depends(deb: Path) -> list[list[str]]:
    """Depends as alternative groups of bare names (no versions, no :any)."""
    groups = [g.strip() for g in debpkg.field(deb, "Depends").split(",") if g.strip()]
    return [[re.split(r"[\s(:]", alt.strip())[0] for alt in g.split("|")] for g in groups]


def test_guest_packages_close_the_debs_depends(inputs, built_deb):
    """What the guest gets for the installed package is the .deb's Depends, closed over Debian's
    packages (fetch.KEXEC_PY_DEB_DEPENDS): every dependency of the .deb, and of each of those
    packages, is met by a fetched package (the interpreter by the guest's Python 3.11, shared
    libraries by the fetched lib* packages)."""
    _close_the_debs_depends(inputs, built_deb)


def test_guest_packages_close_the_debs_depends_s390x(built_deb):
    """The same for the s390x guest, whose kdump-config test boots a kernel of its own."""
    _close_the_debs_depends(harness.prepare("s390x"), built_deb)


def _close_the_debs_depends(inputs, built_deb):
    adir = fetch.arch_dir(inputs.arch)
    files = json.loads((adir / "manifest.json").read_text())["debs"]
    debs = {pkg: adir / "debs" / name for pkg, name in files.items()}
    provided = set().union(*(_names(d) for d in debs.values()))
    todo = [built_deb, *(debs[p] for p in fetch.KEXEC_PY_DEB_DEPENDS)]
    for deb in todo:
        for group in _depends(deb):
            if any(name == "python3" or name.startswith(("python3.11", "libpython3.11")) for name in group):
                continue            # the guest's interpreter (/usr/bin/python3 -> python3.11)
            assert set(group) & provided, f"{deb.name} depends on {' | '.join(group)}, which the guest lacks: " \
                                          "add it to fetch.KEXEC_PY_DEB_DEPENDS"


def test_kdump_config_drives_kexec_py(inputs, installed, tmp_path):
    _kdump_config_drives_kexec_py(inputs, installed, tmp_path)


def test_kdump_config_drives_kexec_py_s390x(installed, tmp_path):
    """s390x on the kernel built from Debian's 6.1 source with CONFIG_CRASH_DUMP (Debian's own
    s390x kernel reserves no crash memory; tests/guest/kexec_file_kernel.py), which is the
    running and the capture kernel."""
    from kexec_py.image.s390_image import parse_s390_image
    from tests.guest import kexec_file_kernel
    kernel = kexec_file_kernel.kernel("s390x")
    config = kernel.with_name("config-" + kernel.name.split("-", 1)[1])
    release = parse_s390_image(kernel.read_bytes(), path=str(kernel)).version.split()[0]
    _kdump_config_drives_kexec_py(harness.prepare("s390x"), installed, tmp_path, kernel=kernel, config=config,
                                  release=release, timeout=600.0)


def _kdump_config_drives_kexec_py(inputs, installed, tmp_path, *, kernel: Path | None = None,
                                  config: Path | None = None, release: str | None = None,
                                  timeout: float = harness.DEFAULT_TIMEOUT):
    """The scenario and its checks; ``kernel`` (with its ``config`` file and ``release``)
    replaces the Debian kernel package's."""
    script = inputs.root / KDUMP_CONFIG.lstrip("/")
    assert script.is_file(), f"kdump-tools' {KDUMP_CONFIG} was not fetched"
    scenario = harness.Scenario(f"kdump-config-{inputs.arch.name}", [
        ("setup", GUEST_SETUP),
        ("kdc_load", f"{KDUMP_CONFIG} load"),
        ("kdc_status", f"{KDUMP_CONFIG} status"),
        ("kdc_unload", f"{KDUMP_CONFIG} unload"),
        ("kdc_status_unloaded", f"{KDUMP_CONFIG} status"),
        ("doctor_unloaded", "kdump-py doctor"),
        ("load", f"{KDUMP_CONFIG} load && cat /var/crash/kexec_cmd"),
        ("doctor", "kdump-py doctor"),
    ], crash=True)
    release = release or inputs.kernel_version
    config = config or inputs.root / "boot" / f"config-{release}"
    assert config.is_file(), f"the kernel has no {config.name}"
    text = config.read_text()
    if "\nCONFIG_AUTO_ZRELADDR=y\n" in text and "\nCONFIG_RELOCATABLE=y\n" not in text:
        # 32-bit arm has no CONFIG_RELOCATABLE (its zImage runs where it is loaded: AUTO_ZRELADDR),
        # but kdump-config 1.8.1 wants it to use the running kernel as the capture kernel
        config = tmp_path / config.name
        config.write_text(text + "CONFIG_RELOCATABLE=y\n")
    result = harness.run(scenario, inputs.arch.name, installed=installed, kernel=kernel, timeout=timeout,
                         extra_files={KDUMP_CONFIG: script, f"/boot/config-{release}": config})
    m = result.markers
    assert m.get("RC-setup") == "0", result.explain()
    setup = result.step_output("setup")
    assert "kexec-tools-compatible" in setup, result.explain()
    # the package's modules and Debian's typer, and no copy of the working tree in the guest
    assert f"modules: /{fetch.DIST_PACKAGES}/kexec_py/__init__.py /{fetch.DIST_PACKAGES}/typer/__init__.py" \
        in setup, result.explain()
    assert "no working-tree copy" in setup, result.explain()
    assert (m.get("RC-kdc_load"), m.get("CRASH-LOADED-kdc_load")) == ("0", "1"), result.explain()
    assert "ready to kdump" in result.step_output("kdc_status"), result.explain()
    assert (m.get("RC-kdc_unload"), m.get("CRASH-LOADED-kdc_unload")) == ("0", "0"), result.explain()
    assert "Not ready to kdump" in result.step_output("kdc_status_unloaded"), result.explain()
    assert "/sbin/kexec -p" in result.step_output("load"), result.explain()     # what kdump-config ran
    assert m.get("RC-doctor_unloaded") == "1", result.explain()
    assert "FAIL  crash-loaded" in result.step_output("doctor_unloaded"), result.explain()
    assert m.get("RC-doctor") in ("0", "2"), result.explain()
    assert "\nready" in result.step_output("doctor"), result.explain()
    harness.assert_kdump_proof(result)
    harness.assert_makedumpfile_reads(result)
