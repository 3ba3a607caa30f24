"""The only code in kexec_py that issues kexec system calls.

It goes through libc's syscall(2) with cffi in ABI mode (no compiler needed).
Nothing else imports this module: callers use a Backend (see backends.py), and
tests replace that backend with a recorder.
"""

from __future__ import annotations

import os
from functools import lru_cache

# Syscall numbers per architecture (arch/*/include/uapi/asm/unistd*.h, the generic table for arm64).
NR_KEXEC_LOAD = {"x86_64": 246, "i386": 283, "arm64": 104, "arm": 347, "ppc64le": 268, "s390x": 277}
NR_KEXEC_FILE_LOAD = {"x86_64": 320, "arm64": 294, "ppc64le": 382, "s390x": 381}  # none on i386, arm
NR_REBOOT = {"x86_64": 169, "i386": 88, "arm64": 142, "arm": 88, "ppc64le": 88, "s390x": 88}


@lru_cache(maxsize=1)
def _ffi():
    """cffi's view of libc: the declarations come parsed in _ffi.py (see ffi_build.py)."""
    from kexec_py.submit._ffi import ffi
    return ffi, ffi.dlopen(None)


def _call(nr: int, *args) -> None:
    ffi, libc = _ffi()
    ffi.errno = 0
    ret = libc.syscall(ffi.cast("long", nr), *args)
    if ret < 0:
        err = ffi.errno
        raise OSError(err, os.strerror(err))


def kexec_load(arch: str, entry: int, segments, flags: int) -> None:
    """segments: a sequence of (buf, mem, memsz); buf is any buffer object."""
    ffi, _ = _ffi()
    keep = []
    segs = ffi.new("struct kexec_segment[]", max(len(segments), 1))
    for i, (buf, mem, memsz) in enumerate(segments):
        if len(buf):
            cbuf = ffi.from_buffer(buf)
            keep.append(cbuf)
            segs[i].buf = cbuf
        else:
            segs[i].buf = ffi.NULL
        segs[i].bufsz = len(buf)
        segs[i].mem = ffi.cast("void *", mem)
        segs[i].memsz = memsz
    _call(NR_KEXEC_LOAD[arch], ffi.cast("unsigned long", entry), ffi.cast("unsigned long", len(segments)),
          segs if segments else ffi.NULL, ffi.cast("unsigned long", flags))


def kexec_file_load(arch: str, kernel_fd: int, initrd_fd: int, cmdline: bytes, flags: int) -> None:
    ffi, _ = _ffi()
    if arch not in NR_KEXEC_FILE_LOAD:
        raise OSError(38, os.strerror(38))   # ENOSYS: this architecture has no kexec_file_load
    cbuf = ffi.from_buffer(cmdline) if cmdline else ffi.NULL
    _call(NR_KEXEC_FILE_LOAD[arch], ffi.cast("int", kernel_fd), ffi.cast("int", initrd_fd),
          ffi.cast("unsigned long", len(cmdline)), cbuf, ffi.cast("unsigned long", flags))


def reboot_kexec(arch: str) -> None:
    from kexec_py.structs.kexec_uapi import (LINUX_REBOOT_CMD_KEXEC, LINUX_REBOOT_MAGIC1,
                                             LINUX_REBOOT_MAGIC2)
    ffi, _ = _ffi()
    _call(NR_REBOOT[arch], ffi.cast("int", LINUX_REBOOT_MAGIC1), ffi.cast("int", LINUX_REBOOT_MAGIC2),
          ffi.cast("unsigned int", LINUX_REBOOT_CMD_KEXEC), ffi.NULL)
