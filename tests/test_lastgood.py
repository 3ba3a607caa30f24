"""kexec_py.lastgood on the host: the record, its guards, and the driver's use of it.

The real thing, with refusals from a real kernel, is tests/test_guest_last_good.py. Here the
kernel is the recording backend; a backend stands in for the kernel's "free the old crash
kernel, then refuse the new one" by writing 0 into the snapshot's kexec_crash_loaded when it
fails the call, and the reload runs through the recording launcher (tests/recording.py).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import sys

import pytest

from kexec_py import arch as arches
from kexec_py.cli import fast_parse
from kexec_py.cli_request import build_request
from kexec_py.driver import Context, run
from kexec_py.errors import SubmitError
from kexec_py.lastgood import RECORD, FileId, Store, store_for
from kexec_py.submit.backends import RecordingBackend, SyscallBackend
from kexec_py.system.view import SystemView
from tests.conftest import SYSTEMS


def test_record_read_forget(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k" * 100)
    store = Store(tmp_path / "state")
    store.record(["-p", "-c", str(kernel)], [str(kernel)])
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "state" / RECORD).stat().st_mode & 0o777) == "0o600"
    entry = store.read()
    assert entry["argv"] == ["-p", "-c", str(kernel)] and entry["cwd"] == os.getcwd()
    assert entry["files"] == [FileId.of(str(kernel))]
    store.forget()
    assert store.read() is None
    store.forget()                                  # nothing to forget: fine


def test_a_file_is_changed_by_content_time_or_replacement(tmp_path):
    f = tmp_path / "initrd"
    f.write_bytes(b"1234")
    ident = FileId.of(str(f))
    assert ident.changed() is None
    os.utime(f, ns=(0, ident.mtime_ns + 1))
    assert ident.changed() == f"{f} changed since it was loaded"
    f.unlink()
    assert "No such file" in ident.changed()


def test_a_record_others_could_write_is_not_trusted(tmp_path):
    kernel = tmp_path / "k"
    kernel.write_bytes(b"k")
    store = Store(tmp_path / "state")
    store.record(["-p", str(kernel)], [str(kernel)])
    os.chmod(tmp_path / "state", 0o777)
    assert store.read() is None                     # the directory: anyone could have replaced it
    os.chmod(tmp_path / "state", 0o700)
    os.chmod(store.path, 0o666)
    assert store.read() is None
    os.chmod(store.path, 0o600)
    assert store.read() is not None
    target = tmp_path / "elsewhere.json"
    store.path.rename(target)
    store.path.symlink_to(target)
    assert store.read() is None                     # not followed


def test_only_a_load_on_the_running_system_keeps_a_record(monkeypatch):
    monkeypatch.delenv("KEXEC_PY_RESTORING", raising=False)
    assert isinstance(store_for(SystemView("/"), SyscallBackend()), Store)
    assert store_for(SystemView(SYSTEMS / "x86_64-qemu-2cpu"), SyscallBackend()) is None
    assert store_for(SystemView("/"), RecordingBackend("x86_64")) is None
    assert store_for(SystemView("/"), None) is None             # --dry-run
    monkeypatch.setenv("KEXEC_PY_RESTORING", "1")
    assert store_for(SystemView("/"), SyscallBackend()) is None  # the reload a restore runs


class FreeingThenRefusing(RecordingBackend):
    """Refuses kexec_load with ``refusal`` after marking the crash kernel unloaded, as the kernel
    does for a crash load it refuses after freeing the old one."""
    _defaults = dict(loaded_flag="", refusal=errno.EADDRNOTAVAIL)
    __slots__ = tuple(_defaults)

    def kexec_load(self, entry, segments, flags):
        with open(self.loaded_flag, "w") as f:
            f.write("0\n")
        super().kexec_load(entry, segments, flags)
        raise OSError(self.refusal, os.strerror(self.refusal))


@pytest.fixture
def machine(tmp_path, debian_kernel):
    root = tmp_path / "root"
    shutil.copytree(SYSTEMS / "x86_64-qemu-2cpu", root, symlinks=True)
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(os.urandom(4096))
    return root, initrd, debian_kernel


def _load(argv, root, backend, store, monkeypatch, err):
    monkeypatch.setattr(sys, "argv", ["kexec-py", *argv])
    actions, values = fast_parse(argv)
    req = build_request(actions, values, arch="x86_64")
    return run(req, Context(arch=arches.get("x86_64"), sys=SystemView(root), backend=backend, err=err,
                            last_good=store))


def test_a_refused_reload_loads_the_recorded_one_again(machine, tmp_path, monkeypatch):
    root, initrd, kernel = machine
    flag = root / "sys/kernel/kexec_crash_loaded"
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("KEXEC_PY_RECORD", str(record))
    store = Store(tmp_path / "state", command=(sys.executable, "-m", "tests.recording"))
    argv = ["-p", "-c", str(kernel), f"--initrd={initrd}", "--append=console=ttyS0", "--root", str(root),
            "--arch", "x86_64"]
    err = io.StringIO()
    assert _load(argv, root, RecordingBackend("x86_64"), store, monkeypatch, err) == 0
    assert store.read()["argv"] == argv
    flag.write_text("1\n")                          # what the kernel says after that load

    refusing = FreeingThenRefusing("x86_64", loaded_flag=str(flag))
    with pytest.raises(SubmitError) as e:
        _load(["-p", "-c", str(kernel), "--root", str(root), "--arch", "x86_64"], root, refusing, store,
              monkeypatch, err)
    assert e.value.errno == errno.EADDRNOTAVAIL
    assert e.value.hint.endswith("the crash kernel loaded before is loaded again")
    assert "the one before is loaded again" in err.getvalue()
    # the reload ran the recorded command line: the recorded kernel, initrd and command line
    (call,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert call["call"] == "kexec_load" and call["flags"] & 1
    assert any(s["sha256"] == hashlib.sha256(initrd.read_bytes()).hexdigest()
               for s in call["segments"])

    # the initrd changed: no reload, and the error says nothing is loaded
    record.unlink()
    initrd.write_bytes(os.urandom(4096))
    flag.write_text("1\n")
    err = io.StringIO()
    with pytest.raises(SubmitError) as e:
        _load(["-p", "-c", str(kernel), "--root", str(root), "--arch", "x86_64"], root, refusing, store,
              monkeypatch, err)
    assert f"{initrd} changed since it was loaded" in err.getvalue()
    assert "NO crash kernel is loaded now" in e.value.hint
    assert not record.exists()


def test_no_reload_when_nothing_was_loaded_before_or_the_kernel_kept_it(machine, tmp_path, monkeypatch):
    root, initrd, kernel = machine
    flag = root / "sys/kernel/kexec_crash_loaded"
    store = Store(tmp_path / "state", command=(sys.executable, "-c", "raise SystemExit('must not run')"))
    store.record(["-p", str(kernel)], [str(kernel)])
    argv = ["-p", "-c", str(kernel), "--root", str(root), "--arch", "x86_64"]
    flag.write_text("0\n")                          # nothing loaded before this load
    err = io.StringIO()
    with pytest.raises(SubmitError):
        _load(argv, root, FreeingThenRefusing("x86_64", loaded_flag=str(flag)), store, monkeypatch, err)
    assert "loaded again" not in err.getvalue() and "must not run" not in err.getvalue()
    # refused before the kernel freed anything (EBUSY: another load under way): still loaded
    flag.write_text("1\n")
    busy = RecordingBackend("x86_64", fail={"kexec_load": [errno.EBUSY]})
    with pytest.raises(SubmitError) as e:
        _load(argv, root, busy, store, monkeypatch, err)
    assert "loaded again" not in err.getvalue()
    assert e.value.hint.endswith("the crash kernel loaded before is still loaded")


def test_unload_forgets(machine, tmp_path, monkeypatch):
    root, _, kernel = machine
    store = Store(tmp_path / "state")
    store.record(["-p", str(kernel)], [str(kernel)])
    _load(["-p", "-u", "--root", str(root), "--arch", "x86_64"], root, RecordingBackend("x86_64"), store,
          monkeypatch, io.StringIO())
    assert store.read() is None
