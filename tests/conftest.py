"""Shared fixtures: system snapshots and the real Debian kernel the guest tests boot."""

from __future__ import annotations

from pathlib import Path

import pytest

SYSTEMS = Path(__file__).parent / "fixtures" / "systems"


def system_dirs(prefix: str) -> list[Path]:
    found = sorted(p for p in SYSTEMS.glob(f"{prefix}*") if (p / "proc" / "iomem").exists())
    assert found, f"no system fixtures named {prefix}* under {SYSTEMS}"
    return found


def check_acpi_rsdp(system: Path, rsdp: int) -> None:
    """``rsdp`` (what a plan passes as acpi_rsdp=) is the snapshot's ACPI RSDP, by sources that
    are not kexec-py's: the guest kernel's own log line ``ACPI: RSDP 0x...`` where the snapshot
    kept its dmesg (captured in the same boot), else the ACPI specification's rule for BIOS
    systems (section 5.2.5.1: on a 16-byte boundary in the BIOS read-only area 0xE0000-0xFFFFF),
    which is where SeaBIOS puts it."""
    import re
    dmesg = system / "dmesg.txt"
    if dmesg.exists():
        m = re.search(r"ACPI: RSDP 0x([0-9A-Fa-f]+)", dmesg.read_text(errors="replace"))
        assert m, f"{dmesg} names no ACPI RSDP"
        assert rsdp == int(m.group(1), 16), f"acpi_rsdp={rsdp:#x}, the guest's log says {m.group(0)}"
    else:
        assert 0xE0000 <= rsdp < 0x100000 and rsdp % 16 == 0, f"acpi_rsdp={rsdp:#x} is not a BIOS RSDP"


def require_tool(name: str, package: str) -> str:
    """A tool a test needs: missing, the test fails (CI must not pass by skipping it)."""
    import shutil
    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install {package} (scripts/test-all installs it)"
    return path


@pytest.fixture(scope="session")
def debian_kernel() -> Path:
    """The Debian cloud amd64 kernel (fetched into the cache on first use; fails if it cannot be)."""
    from tests.guest.fetch import fetch
    return fetch("x86_64").kernel


def pytest_configure(config):
    """Every test runs under the syscall guard (tests/guard.py): kexec_load,
    kexec_file_load and reboot fail with EPERM in pytest and in all it starts, however
    pytest was started. scripts/test-all also starts pytest under it; filters stack."""
    from tests import guard
    guard.install()


def pytest_report_header(config):
    from tests import guard
    st = guard.status()
    return (f"syscall guard: Seccomp {st.get('Seccomp')}, {st.get('Seccomp_filters', '?')} filter(s), "
            f"NoNewPrivs {st.get('NoNewPrivs')} (tests/guard.py)")


@pytest.fixture(scope="session")
def built_deb(tmp_path_factory) -> Path:
    """kexec-py's .deb, built once per test session from the tracked files (tests/debpkg.py)."""
    from tests import debpkg
    return debpkg.build(tmp_path_factory.mktemp("deb"))
