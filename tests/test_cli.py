"""The CLI as a user runs it: a subprocess, on a fixture snapshot, behind the syscall
guard (tests/guard.py): a recorder or --dry-run stands in for the kernel, and a
kexec syscall that gets past them kills kexec-py, or, where a test means it to reach
the kernel, fails with EPERM under strace's eye."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests import guard
from tests.conftest import SYSTEMS

FIXTURE = SYSTEMS / "x86_64-handmade"
TRACE = ["strace", "-f", "-qq", "-e", "trace=kexec_load,kexec_file_load,reboot"]


def kexec_py(*args, record=None, fail=None, trace=False, root=FIXTURE):
    """Run kexec-py behind the guard; returns (exit code, stdout, stderr, calls).

    Without ``trace`` the guard kills kexec-py at any kexec_load, kexec_file_load or
    reboot (the recorder, or the refusal before a call, must stop them all), and
    ``calls`` says so. With ``trace`` the guard fails them with EPERM and ``calls``
    are strace's lines for them, arguments decoded."""
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    env.pop("KEXEC_PY_RECORD", None)
    if record:
        env["KEXEC_PY_RECORD"] = str(record)
    if fail:
        env["KEXEC_PY_RECORD_FAIL"] = fail
    log = f"/tmp/kexec-py-strace-{os.getpid()}.log"
    cmd = [sys.executable, "-m", "tests.recording" if record else "kexec_py", "--root", str(root),
           *map(str, args)]
    if trace:
        assert shutil.which("strace"), "strace is needed to log the calls (apt-get install strace)"
        cmd = guard.guarded([*TRACE, "-o", log, *cmd])
    else:
        cmd = guard.guarded(cmd, kill=True)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode != guard.GUARD_FAILED, p.stderr
    if trace:
        calls = open(log).read().splitlines()
    else:
        calls = ["killed by the guard at a kexec_load, kexec_file_load or reboot call"] if guard.attempted(
            p.returncode) else []
    return p.returncode, p.stdout, p.stderr, calls


def records(path):
    return [json.loads(line) for line in open(path)] if path.exists() else []


def test_dry_run_prints_the_plan_and_issues_no_syscall(debian_kernel, tmp_path):
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"x" * 5000)
    code, out, err, traced = kexec_py("-p", "-c", "--dry-run", "-d", debian_kernel, "--initrd", initrd,
                                      "--append", "console=ttyS0")
    assert code == 0, err
    assert traced == []
    assert "syscall: kexec_load" in out and "flags:   0x3e0001" in out
    for name in ("kernel", "initrd", "setup", "purgatory", "elfcorehdr", "backup"):
        assert re.search(rf"^  {name} +0x", out, re.M), name
    assert re.search(r"^segment\[5\]\.memsz = 0x", err, re.M)      # kexec-tools' -d dump
    assert "elfcorehdr=" in out


def test_load_panic_kexec_load_is_recorded(debian_kernel, tmp_path):
    rec = tmp_path / "rec.jsonl"
    code, _, err, traced = kexec_py("-p", "-c", debian_kernel, "--append", "console=ttyS0", record=rec)
    assert code == 0, err
    assert traced == []
    (call,) = records(rec)
    assert call["call"] == "kexec_load" and call["flags"] == 0x3E0001
    assert len(call["segments"]) == 5                                 # no initrd
    assert all(0x1D000000 <= s["mem"] and s["mem"] + s["memsz"] <= 0x35000000 for s in call["segments"])


def test_load_panic_file_syscall_is_recorded(debian_kernel, tmp_path):
    rec = tmp_path / "rec.jsonl"
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"y" * 100)
    code, _, err, _ = kexec_py("-p", "-s", debian_kernel, "--initrd", initrd, "--reuse-cmdline",
                               "--append", "irqpoll", record=rec)
    assert code == 0, err
    (call,) = records(rec)
    assert call["call"] == "kexec_file_load" and call["flags"] == 0x2
    assert call["cmdline"] == "console=ttyS0 irqpoll\0"      # BOOT_IMAGE and crashkernel= stripped
    assert call["cmdline_len"] == len("console=ttyS0 irqpoll") + 1
    assert call["initrd_sha256"] is not None


def test_auto_falls_back_to_kexec_load_on_enoexec(debian_kernel, tmp_path):
    rec = tmp_path / "rec.jsonl"
    code, _, err, _ = kexec_py("-p", debian_kernel, record=rec, fail="kexec_file_load=ENOEXEC")
    assert code == 0, err
    assert [c["call"] for c in records(rec)] == ["kexec_file_load", "kexec_load"]
    assert err == "", "silent, as kexec-tools: a kdump service would log this on every boot"
    rec.unlink()
    code, _, err, _ = kexec_py("-p", "-d", debian_kernel, record=rec, fail="kexec_file_load=ENOEXEC")
    assert code == 0 and [c["call"] for c in records(rec)] == ["kexec_file_load", "kexec_load"]
    assert "kexec_file_load failed: Exec format error; retrying with kexec_load" in err


@pytest.mark.parametrize("errno_name,code", [("ENOSYS", 253), ("EPERM", 255)])
def test_file_syscall_only_does_not_fall_back(debian_kernel, tmp_path, errno_name, code):
    rec = tmp_path / "rec.jsonl"
    got, _, err, _ = kexec_py("-p", "-s", debian_kernel, record=rec, fail=f"kexec_file_load={errno_name}")
    assert got == code
    assert [c["call"] for c in records(rec)] == ["kexec_file_load"]
    assert err.startswith("kexec-py: kexec_file_load failed") and err.count("\n") == 1


def test_unload_crash(tmp_path):
    rec = tmp_path / "rec.jsonl"
    code, _, err, _ = kexec_py("-p", "-u", record=rec)
    assert code == 0, err
    assert records(rec) == [{"call": "kexec_file_load", "arch": "x86_64", "kernel_sha256": None,
                             "initrd_sha256": None, "cmdline": "", "cmdline_len": 0, "flags": 3}]
    code, _, err, _ = kexec_py("-p", "-u", "-c", record=rec)
    assert records(rec)[-1] == {"call": "kexec_load", "arch": "x86_64", "entry": 0, "flags": 0x3E0001,
                                "segments": []}


def test_guard_catches_the_real_syscall_and_shows_its_arguments(debian_kernel):
    """No recorder: the real cffi path runs, the guard fails the call with EPERM, and
    strace shows exactly what would have reached the kernel."""
    code, _, err, traced = kexec_py("-p", "-c", debian_kernel, "--append", "console=ttyS0", trace=True)
    assert code == 255
    # EPERM from kexec_load is what lockdown gives: kexec-py says so and tries
    # kexec_file_load, which the guard fails too
    first, last = err.splitlines()
    assert "kexec_load was refused (EPERM)" in first and "kexec_file_load instead" in first
    assert "kexec_file_load failed: Operation not permitted" in last and "locked down" in last
    (line,) = [t for t in traced if "kexec_load(" in t]
    assert re.search(r"kexec_load\(0x[0-9a-f]+, 5, \[\{buf=0x[0-9a-f]+, bufsz=\d+, mem=0x", line), line
    assert "KEXEC_ARCH_X86_64|KEXEC_ON_CRASH)" in line and line.endswith("= -1 EPERM (Operation not permitted)")


def test_guard_catches_the_real_file_syscall(debian_kernel):
    code, _, err, traced = kexec_py("-p", "-s", debian_kernel, "--append", "console=ttyS0", trace=True)
    assert code == 255
    (line,) = [t for t in traced if "kexec_file_load(" in t]
    assert 'KEXEC_FILE_ON_CRASH|KEXEC_FILE_NO_INITRAMFS' in line, line
    assert ', -1, 14, "console=ttyS0\\0", ' in line, line        # no initrd fd; length counts the NUL


def test_no_crash_region_exits_1_before_anything(debian_kernel, tmp_path):
    """Measured on kexec-tools 2.0.25: 'Memory for crashkernel is not reserved', exit 1,
    checked before an unload too (-u -p)."""
    root = tmp_path / "sys"
    shutil.copytree(FIXTURE, root)
    text = (root / "proc/iomem").read_text()
    (root / "proc/iomem").write_text("\n".join(l for l in text.splitlines() if "Crash kernel" not in l) + "\n")
    for args in (["-p", debian_kernel], ["-u", "-p"]):
        code, _, err, traced = kexec_py(*args, root=root)
        assert code == 1 and traced == []
        assert "crashkernel=" in err and err.count("\n") == 1


def test_status(tmp_path):
    root = tmp_path / "sys"
    shutil.copytree(FIXTURE, root)
    assert kexec_py("-S", root=root)[0] == 0
    (root / "sys/kernel/kexec_crash_loaded").write_text("1\n")
    assert kexec_py("-S", root=root)[0] == 1
    assert kexec_py("-S", "-l", root=root)[0] == 0
    (root / "sys/kernel/kexec_crash_loaded").unlink()
    code, _, err, _ = kexec_py("-S", root=root)
    assert code == 255 and "kexec_crash_loaded does not exist" in err


def test_help_and_version():
    p = subprocess.run(guard.guarded([sys.executable, "-m", "kexec_py", "--help"]), capture_output=True, text=True)
    assert p.returncode == 0
    for opt in ("--load-panic", "--unload", "--kexec-file-syscall", "--kexec-syscall", "--initrd", "--ramdisk",
                "--append", "--command-line", "--reuse-cmdline", "--debug", "--status", "--dry-run"):
        assert opt in p.stdout, opt
    for flag in ("-v", "--version"):
        p = subprocess.run(guard.guarded([sys.executable, "-m", "kexec_py", flag]), capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout.count("\n") == 1 and "(kexec-py " in p.stdout
        # what scripts check (microsoft/lisa's kdump tool; a kexec older than 2.0.32 gets replaced)
        m = re.match(r"^kexec\S+\s+(\d+).(\d+).(\d+)", p.stdout)
        assert m and tuple(map(int, m.groups())) >= (2, 0, 32), p.stdout


@pytest.mark.parametrize("option", ["--install-completion", "--show-completion"])
def test_typer_completion_options_are_unknown_options(option, tmp_path):
    """kexec-tools has no such options, and typer's would write into the user's shell start-up
    file: kexec-py refuses them as it refuses any unknown option, and writes nothing."""
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    p = subprocess.run(guard.guarded([sys.executable, "-m", "kexec_py", option]), capture_output=True, text=True,
                       env=env)
    q = subprocess.run(guard.guarded([sys.executable, "-m", "kexec_py", "--no-such-option"]), capture_output=True,
                       text=True, env=env)
    assert (p.returncode, p.stdout) == (q.returncode, "") and q.returncode != 0, p
    assert f"No such option: {option}" in p.stderr, p.stderr
    assert list(tmp_path.iterdir()) == [], "nothing written in $HOME"


def test_debug_flag_dropped_when_the_kernel_does_not_know_it(debian_kernel, tmp_path):
    rec = tmp_path / "rec.jsonl"
    code, _, err, _ = kexec_py("-p", "-s", "-d", debian_kernel, record=rec, fail="kexec_file_load=EINVAL")
    assert code == 0, err
    assert [c["flags"] for c in records(rec)] == [0x2 | 0x4 | 0x8, 0x2 | 0x4]
    assert "KEXEC_FILE_DEBUG" in err
