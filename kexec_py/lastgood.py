"""Keep the last good crash kernel: a reload that the kernel refuses must not leave the
machine without kdump.

The kernel frees the loaded crash kernel before it looks at a new one (kexec_load and
kexec_file_load both do for a crash load: the new kernel goes where the old one is), so when
it then refuses the new one, no crash kernel is left. kdump-tools reloads on every CPU or
memory hotplug event, so a refusal there is not rare.

After each successful ``-p`` load on the running system, kexec-py writes down what it
loaded: its command line, the working directory, and the identity of each file (path,
device, inode, size, modification time) in ``/run/kexec-py/crash-load.json`` (``/run`` is
a tmpfs: the record goes at reboot, with the kernel it describes). When the kernel refuses a
later ``-p`` and no crash kernel is loaded any more although one was before, kexec-py runs
the recorded command line again, if every file is unchanged, says so on stderr, and still
exits with the refusal's status. ``-p -u`` forgets the record.
"""

from __future__ import annotations

import os
import sys

from kexec_py.record import REQUIRED, Record

# Imported on every crash load on the running system, so kept light (kexec_py.record; json,
# subprocess and time only where a record is written or a reload runs).
STATE_DIR = "/run/kexec-py"
RECORD = "crash-load.json"
# Set in the environment of the reload kexec-py runs: that run neither restores nor records.
RESTORING = "KEXEC_PY_RESTORING"


class FileId(Record):
    """What says a file is still the one that was loaded."""
    _defaults = dict(path=REQUIRED, dev=REQUIRED, ino=REQUIRED, size=REQUIRED, mtime_ns=REQUIRED)
    __slots__ = tuple(_defaults)

    @classmethod
    def of(cls, path: str) -> FileId:
        st = os.stat(path)
        return cls(os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> str | None:
        """None when the file is as recorded, else why not."""
        try:
            now = FileId.of(self.path)
        except OSError as e:
            return f"{self.path}: {e.strerror}"
        return None if now == self else f"{self.path} changed since it was loaded"


class Store:
    """The record of the last crash kernel loaded, in one directory only root can write."""

    def __init__(self, directory: str = STATE_DIR, command: tuple[str, ...] | None = None):
        self._directory = directory
        # what runs a recorded command line: this kexec-py (tests give a recording launcher)
        self.command = list(command) if command else [sys.executable, "-m", "kexec_py"]

    @property
    def path(self):
        """The record's file, a pathlib.Path: made when used (after the load's call, or to
        forget), for speed: pathlib costs a crash load ~3 ms before its call (issue 13)."""
        from pathlib import Path
        return Path(self._directory) / RECORD

    def record(self, argv: list[str], files: list[str]) -> None:
        """Write down a successful load (atomically: a reader sees the old or the new record)."""
        import json
        import time
        ids = [FileId.of(f) for f in files]
        entry = {"argv": list(argv), "cwd": os.getcwd(), "loaded": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "files": [{name: getattr(i, name) for name in FileId._fields} for i in ids]}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{RECORD}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, self.path)

    def forget(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def read(self) -> dict | None:
        """The record, if there is one that this user wrote and nobody else can have changed."""
        import json
        import stat
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd) as f:
            for st in (os.fstat(f.fileno()), os.stat(self.path.parent)):
                if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    return None
            try:
                entry = json.load(f)
                entry["files"] = [FileId(**x) for x in entry["files"]]
                return entry if isinstance(entry["argv"], list) and isinstance(entry["cwd"], str) else None
            except (ValueError, KeyError, TypeError):
                return None

    def restore(self, err) -> bool:
        """Load the recorded crash kernel again; say on ``err`` what happened."""
        import subprocess
        entry = self.read()
        lead = "kexec-py: the kernel unloaded the crash kernel loaded before and then refused the new one"
        if entry is None:
            print(f"{lead}; there is no record of the one before ({self.path}), so none is loaded now", file=err)
            return False
        changed = [why for why in (f.changed() for f in entry["files"]) if why]
        if changed:
            print(f"{lead}; the one before cannot be loaded again: {changed[0]}", file=err)
            return False
        proc = subprocess.run([*self.command, *entry["argv"]], cwd=entry["cwd"],
                              env={**os.environ, RESTORING: "1"}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        command = " ".join(["kexec", *entry["argv"]])
        if proc.returncode != 0:
            print(f"{lead}; loading the one before again failed too ({command}): "
                  f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}", file=err)
            return False
        print(f"{lead}; the one before is loaded again (loaded {entry['loaded']} by: {command})", file=err)
        return True


def store_for(sys, backend) -> Store | None:
    """The store a load on the running system (a live SystemView) keeps: none for a snapshot
    root, a test backend, --dry-run, or the reload that a restore runs."""
    from kexec_py.submit.backends import SyscallBackend
    if not sys.is_live() or not isinstance(backend, SyscallBackend) or os.environ.get(RESTORING):
        return None
    return Store()
