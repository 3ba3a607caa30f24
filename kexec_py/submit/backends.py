"""Backends: who actually receives the kexec calls.

``SyscallBackend`` issues them (through syscalls.py). ``RecordingBackend`` writes
down the exact arguments instead, and can be told to fail with given errnos; the
host tests install it (in-process, or through tests/recording.py for a subprocess:
the installed command honours no environment variable that would swap it in).
"""

from __future__ import annotations

import os

from kexec_py.record import REQUIRED, Record, factory


class SyscallBackend(Record):
    """The running kernel. Its calls use this process's own syscall numbers; loading a
    kernel of another architecture than the running one's is refused before it is made."""

    __slots__ = ()

    def kexec_load(self, entry, segments, flags):
        from kexec_py.submit import syscalls
        syscalls.kexec_load(entry, segments, flags)

    def kexec_file_load(self, kernel_fd, initrd_fd, cmdline, flags):
        from kexec_py.submit import syscalls
        syscalls.kexec_file_load(kernel_fd, initrd_fd, cmdline, flags)

    def reboot_kexec(self):
        from kexec_py.submit import syscalls
        syscalls.reboot_kexec()

    def sync(self):
        os.sync()

    def ifdown(self):
        from kexec_py.submit.system import ifdown
        ifdown()

    def shutdown(self):
        from kexec_py.submit.system import shutdown
        shutdown()


class RecordingBackend(Record):
    _defaults = dict(
        arch=REQUIRED,
        calls=factory(list),            # list[dict]
        fail=factory(dict),             # call name -> errnos to raise, in turn
        log_path=None,
    )
    __slots__ = tuple(_defaults)
    _frozen = False

    def _record(self, call: dict) -> None:
        self.calls.append(call)
        if self.log_path:
            import json
            with open(self.log_path, "a") as f:
                f.write(json.dumps(call) + "\n")
        pending = self.fail.get(call["call"])
        if pending:
            err = pending.pop(0)
            raise OSError(err, os.strerror(err))

    def kexec_load(self, entry, segments, flags):
        import hashlib
        self._record({"call": "kexec_load", "arch": self.arch, "entry": entry, "flags": flags,
                      "segments": [{"bufsz": len(buf), "mem": mem, "memsz": memsz,
                                    "sha256": hashlib.sha256(buf).hexdigest()}
                                   for buf, mem, memsz in segments]})

    def kexec_file_load(self, kernel_fd, initrd_fd, cmdline, flags):
        import hashlib

        def digest(fd):
            if fd < 0:
                return None
            os.lseek(fd, 0, os.SEEK_SET)
            h = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
            return h.hexdigest()
        self._record({"call": "kexec_file_load", "arch": self.arch, "kernel_sha256": digest(kernel_fd),
                      "initrd_sha256": digest(initrd_fd), "cmdline": cmdline.decode("utf-8", "replace"),
                      "cmdline_len": len(cmdline), "flags": flags})

    def reboot_kexec(self):
        self._record({"call": "reboot", "arch": self.arch})

    def sync(self):
        self._record({"call": "sync"})

    def ifdown(self):
        self._record({"call": "ifdown"})

    def shutdown(self):
        self._record({"call": "shutdown"})


def backend_for(arch: str, *, dry_run: bool = False):
    """Who receives the calls of a command planning for ``arch``: nobody for --dry-run
    (None: a call would be a bug, and fails), else the running kernel, which can only
    take a kernel of its own architecture. (No environment variable turns this into a
    recorder: tests install one, see tests/recording.py.)"""
    if dry_run:
        return None
    from kexec_py.arch import host_name
    if arch != host_name():
        from kexec_py.errors import UsageError
        raise UsageError(f"--arch {arch}: the running kernel is {host_name()}, and a kernel loads only kernels of "
                         "its own architecture", "add --dry-run to plan a load for another architecture")
    return SyscallBackend()
