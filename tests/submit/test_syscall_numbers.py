"""System call numbers are the host's, whatever architecture a load is planned for;
a load for another architecture is refused before any call unless it is a --dry-run."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from kexec_py.submit import syscalls


def host_header_numbers() -> dict[str, int]:
    """__NR_* of this machine's C library headers: an independent source for the numbers."""
    assert shutil.which("gcc"), "gcc is needed (scripts/test-all installs it)"
    out = subprocess.run(["gcc", "-dM", "-E", "-"], input="#include <sys/syscall.h>\n", capture_output=True,
                         text=True, check=True).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+) (\d+)$", out, re.M)}


@pytest.fixture
def numbers_called(monkeypatch):
    """Run a syscalls function with the real call replaced: the numbers it would use."""
    seen = []

    def fake_call(nr, *args):
        seen.append(int(nr))
    monkeypatch.setattr(syscalls, "_call", fake_call)
    return seen


def test_the_numbers_are_the_hosts(numbers_called):
    expected = host_header_numbers()
    syscalls.kexec_load(0x1000, [], 0)
    syscalls.kexec_file_load(3, -1, b"", 0)
    syscalls.reboot_kexec()
    assert numbers_called == [expected["kexec_load"], expected["kexec_file_load"], expected["reboot"]]


def test_s390x_numbers_are_its_c_librarys():
    """The s390x table against the s390x cross compiler's own headers (scripts/test-all installs it)."""
    from tests.conftest import require_tool
    gcc = require_tool("s390x-linux-gnu-gcc", "gcc-s390x-linux-gnu")
    out = subprocess.run([gcc, "-dM", "-E", "-"], input="#include <sys/syscall.h>\n", capture_output=True,
                         text=True, check=True).stdout
    numbers = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+) (\d+)$", out, re.M)}
    assert (syscalls.NR_KEXEC_LOAD["s390x"], syscalls.NR_KEXEC_FILE_LOAD["s390x"], syscalls.NR_REBOOT["s390x"]) == \
        (numbers["kexec_load"], numbers["kexec_file_load"], numbers["reboot"])


def test_the_host_abi_is_the_interpreters(monkeypatch):
    import sys

    from kexec_py.arch import host_name
    assert syscalls.host_abi() == host_name()          # this (64-bit) Python on its own kernel
    monkeypatch.setattr(sys.implementation, "_multiarch", "i386-linux-gnu", raising=False)
    assert syscalls.host_abi() == "i386"               # a 32-bit Python on a 64-bit kernel makes 32-bit calls


def test_no_kexec_file_load_on_a_host_without_one(monkeypatch, numbers_called):
    monkeypatch.setattr(syscalls, "host_abi", lambda: "i386")
    with pytest.raises(OSError) as info:
        syscalls.kexec_file_load(3, -1, b"", 0)
    assert info.value.errno == 38 and numbers_called == []
    syscalls.kexec_load(0x1000, [], 0)
    assert numbers_called == [283]          # arch/x86/entry/syscalls/syscall_32.tbl


def other_arch() -> str:
    from kexec_py.arch import SUPPORTED, host_name
    return next(a for a in ("arm64", "x86_64") if a != host_name() and a in SUPPORTED)


def test_a_load_for_another_arch_is_refused_before_any_call(tmp_path, monkeypatch, capsys, numbers_called):
    """What once happened: `--arch arm64 -s -l IMAGE` on x86_64 issued syscall 294
    (inotify_init1 there), got a descriptor back and reported success."""
    from kexec_py import cli
    from tests.conftest import SYSTEMS
    from tests.image.test_arm64_image import make_image
    monkeypatch.delenv("KEXEC_PY_RECORD", raising=False)
    image = tmp_path / "Image"
    image.write_bytes(make_image(image_size=24 << 20, size=1 << 20))
    target = other_arch()
    root = SYSTEMS / ("arm64-qemu-2cpu" if target == "arm64" else "x86_64-qemu-2cpu")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--root", str(root), "--arch", target, "-s", "-l", str(image)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and numbers_called == []
    assert err.count("\n") == 1 and f"--arch {target}" in err and "--dry-run" in err
    if target == "arm64":                   # and it plans with --dry-run, calling nothing
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--root", str(root), "--arch", target, "--dry-run", "-s", "-l", str(image)])
        assert exit_info.value.code == 0 and numbers_called == []
        assert "syscall: kexec_file_load  arch: arm64" in capsys.readouterr().out


def test_no_environment_variable_turns_a_real_load_into_a_recorded_one(monkeypatch):
    """A stray KEXEC_PY_RECORD must not make kexec-py report success for a load it never made."""
    from kexec_py.submit import backends
    monkeypatch.setenv("KEXEC_PY_RECORD", "/tmp/kexec-py-stray.jsonl")
    from kexec_py.arch import host_name
    assert isinstance(backends.backend_for(host_name()), backends.SyscallBackend)
