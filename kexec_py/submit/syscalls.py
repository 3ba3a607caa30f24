"""The only code in kexec_py that issues kexec system calls.

It goes through libc's syscall(2) with cffi in ABI mode (no compiler needed).
Nothing else imports this module: callers use a Backend (see backends.py), and
tests replace that backend with a recorder.
"""

from __future__ import annotations

import os
from functools import lru_cache

# Syscall numbers per host ABI (arch/*/include/uapi/asm/unistd*.h, the generic table for arm64).
# They belong to the process making the call, never to the kernel being loaded.
NR_KEXEC_LOAD = {"x86_64": 246, "i386": 283, "arm64": 104, "arm": 347, "ppc64le": 268, "s390x": 277}
NR_KEXEC_FILE_LOAD = {"x86_64": 320, "arm64": 294, "arm": 401, "ppc64le": 382, "s390x": 381}  # none on i386
NR_REBOOT = {"x86_64": 169, "i386": 88, "arm64": 142, "arm": 88, "ppc64le": 88, "s390x": 88}

# CPython's multiarch triplet (the ABI this interpreter was built for) -> our ABI names
_TRIPLETS = {"x86_64-linux-gnu": "x86_64", "i386-linux-gnu": "i386", "aarch64-linux-gnu": "arm64",
             "arm-linux-gnueabihf": "arm", "arm-linux-gnueabi": "arm", "powerpc64le-linux-gnu": "ppc64le",
             "s390x-linux-gnu": "s390x"}
# `uname -m` of a 64-bit kernel -> the ABI of a 32-bit process on it
_COMPAT = {"x86_64": "i386", "arm64": "arm"}


def host_abi() -> str:
    """The ABI whose syscall numbers this process uses: the interpreter's own build
    (a 32-bit Python on a 64-bit kernel makes 32-bit calls)."""
    import sys
    triplet = getattr(sys.implementation, "_multiarch", "")
    if triplet in _TRIPLETS:
        return _TRIPLETS[triplet]
    import struct

    from kexec_py.arch import name_of_machine
    machine = name_of_machine(os.uname().machine)
    return _COMPAT.get(machine, machine) if struct.calcsize("P") == 4 else machine


def _number(table: dict[str, int], call: str) -> int:
    abi = host_abi()
    if abi not in table:
        raise OSError(38, f"{os.strerror(38)}: no {call} system call for {abi}")   # ENOSYS
    return table[abi]


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


def kexec_load(entry: int, segments, flags: int) -> None:
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
    _call(_number(NR_KEXEC_LOAD, "kexec_load"), ffi.cast("unsigned long", entry), ffi.cast("unsigned long", len(segments)),
          segs if segments else ffi.NULL, ffi.cast("unsigned long", flags))


def kexec_file_load(kernel_fd: int, initrd_fd: int, cmdline: bytes, flags: int) -> None:
    nr = _number(NR_KEXEC_FILE_LOAD, "kexec_file_load")
    ffi, _ = _ffi()
    cbuf = ffi.from_buffer(cmdline) if cmdline else ffi.NULL
    _call(nr, ffi.cast("int", kernel_fd), ffi.cast("int", initrd_fd),
          ffi.cast("unsigned long", len(cmdline)), cbuf, ffi.cast("unsigned long", flags))


def reboot_kexec() -> None:
    from kexec_py.structs.kexec_uapi import (LINUX_REBOOT_CMD_KEXEC, LINUX_REBOOT_MAGIC1,
                                             LINUX_REBOOT_MAGIC2)
    ffi, _ = _ffi()
    _call(_number(NR_REBOOT, "reboot"), ffi.cast("int", LINUX_REBOOT_MAGIC1), ffi.cast("int", LINUX_REBOOT_MAGIC2),
          ffi.cast("unsigned int", LINUX_REBOOT_CMD_KEXEC), ffi.NULL)
