"""The command lines real callers run (../shared/reference/callers.md), exactly as they
run them, each compared with the plain form of the same request: the recorded system
calls must be the same, and what the plain form calls is checked against kexec-tools'
meaning of the options (the kexec_file_load flags of include/uapi/linux/kexec.h)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.conftest import SYSTEMS
from tests.test_bad_inputs import no_real_syscalls, run_cli  # noqa: F401  (a fixture)

KEXEC_FILE_UNLOAD, KEXEC_FILE_ON_CRASH, KEXEC_FILE_NO_INITRAMFS = 1, 2, 4
CMDLINE = "root=/dev/vda1 console=ttyS0 irqpoll nr_cpus=1 reset_devices"


@pytest.fixture
def files(tmp_path, debian_kernel):
    root = tmp_path / "root"
    shutil.copytree(SYSTEMS / "x86_64-qemu-2cpu", root)
    (root / "sys/kernel/kexec_loaded").write_text("1\n")          # for -e after a -l
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"initrd" * 5000)
    link = tmp_path / "vmlinuz"
    link.symlink_to(debian_kernel)                                  # /boot/vmlinuz -> vmlinuz-VERSION
    return dict(root=str(root), kernel=str(debian_kernel), link=str(link), initrd=str(initrd))


def calls(argv: list[str], files: dict, monkeypatch, capsys) -> list[dict]:
    argv = [a.format(**files) for a in argv]
    code, out, err, recorded = run_cli(["--root", files["root"], *argv], monkeypatch, capsys)
    assert code == 0, f"{argv}: exit {code}: {err}"
    assert err == "", f"{argv} said something on stderr (services log it): {err}"
    return recorded


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# (who, the caller's own shape, the plain shape of the same request)
SHAPES = [
    ("kdump-config load", ["-p", "-s", f"--command-line={CMDLINE}", "--initrd={initrd}", "{link}"],
     ["-s", "-p", "{kernel}", "--initrd", "{initrd}", "--append", CMDLINE]),
    ("kdump-config unload", ["-p", "-u"], ["--load-panic", "--unload"]),
    ("kdumpctl load", ["-s", "-p", f"--command-line={CMDLINE}", "--initrd={initrd}", "{kernel}"],
     ["-s", "-p", "{kernel}", "--initrd", "{initrd}", "--append", CMDLINE]),
    ("kdumpctl under Secure Boot (-s twice)",
     ["-s", "-s", "-p", f"--command-line={CMDLINE}", "--initrd={initrd}", "{kernel}"],
     ["-s", "-p", "{kernel}", "--initrd", "{initrd}", "--append", CMDLINE]),
    ("kdumpctl unload", ["-s", "-p", "-u"], ["-p", "-u", "-s"]),
    ("openSUSE load (options after the kernel, -a last)",
     ["-p", "{kernel}", f"--append={CMDLINE}", "--initrd={initrd}", "-a"],
     ["-a", "-p", "{kernel}", "--initrd", "{initrd}", "--append", CMDLINE]),
    ("openSUSE unload", ["-a", "-p", "-u"], ["-p", "-u"]),
    ("systemctl kexec (separate-argument long options)",
     ["--load", "{kernel}", "--append", CMDLINE, "--initrd", "{initrd}"],
     ["-l", "{kernel}", f"--append={CMDLINE}", "--initrd={initrd}"]),
    ("Debian's kexec-load init script", ["-l", "{link}", "--initrd={initrd}", f"--append={CMDLINE}"],
     ["-l", "{kernel}", f"--append={CMDLINE}", "--initrd={initrd}"]),
    ("LTP's bundled -su", ["-su"], ["-s", "-u"]),
    ("systemd-shutdown", ["-e"], ["--exec"]),
]
# (`-u -p` is not `-p -u`: kexec-tools applies action options in order, and -p after -u
# asks for a load again; and older systemd's `-e -f -x` asks for a load through -f,
# which without a kernel is "No kernel specified" in kexec-tools and kexec-py alike.)


@pytest.mark.parametrize("who,theirs,plain", SHAPES, ids=[s[0] for s in SHAPES])
def test_each_callers_shape_does_what_the_plain_form_does(who, theirs, plain, files, monkeypatch, capsys,
                                                          no_real_syscalls):  # noqa: F811
    assert calls(theirs, files, monkeypatch, capsys) == calls(plain, files, monkeypatch, capsys)


def test_what_a_crash_load_with_the_file_syscall_calls(files, monkeypatch, capsys, no_real_syscalls):  # noqa: F811
    (call,) = calls(SHAPES[0][2], files, monkeypatch, capsys)
    assert call["call"] == "kexec_file_load" and call["flags"] == KEXEC_FILE_ON_CRASH
    assert call["kernel_sha256"] == sha256(files["kernel"]) and call["initrd_sha256"] == sha256(files["initrd"])
    assert call["cmdline"] == CMDLINE + "\0"


def test_what_the_unloads_call(files, monkeypatch, capsys, no_real_syscalls):  # noqa: F811
    assert [(c["call"], c["flags"]) for c in calls(["-p", "-u"], files, monkeypatch, capsys)] == \
        [("kexec_file_load", KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH)]
    assert [(c["call"], c["flags"]) for c in calls(["-s", "-u"], files, monkeypatch, capsys)] == \
        [("kexec_file_load", KEXEC_FILE_UNLOAD)]


def test_what_load_and_exec_call(files, monkeypatch, capsys, no_real_syscalls):  # noqa: F811
    load, sync = calls(SHAPES[7][2], files, monkeypatch, capsys)        # -l also syncs, as kexec-tools' -l
    assert load["call"] == "kexec_file_load" and load["flags"] == 0 and load["cmdline"] == CMDLINE + "\0"
    assert sync["call"] == "sync"
    assert [c["call"] for c in calls(["-e"], files, monkeypatch, capsys)] == ["sync", "ifdown", "reboot"]
    assert [c["call"] for c in calls(["-e", "-x"], files, monkeypatch, capsys)] == ["sync", "reboot"]
