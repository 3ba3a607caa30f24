"""Build kexec_py/submit/_ffi.py: cffi's out-of-line ABI module for syscalls.py.

In-line ``FFI.cdef`` parses the declarations with pycparser on every run, which
costs a kdump load some 40 ms; the out-of-line module holds them already parsed
(struct layouts are still computed at run time, so the one file serves every
architecture). Regenerate after changing CDEF:

    python3 -m kexec_py.submit.ffi_build

tests/submit/test_ffi.py checks the committed module declares what CDEF does.
"""

from __future__ import annotations

from pathlib import Path

CDEF = """
long syscall(long number, ...);
struct kexec_segment { const void *buf; size_t bufsz; const void *mem; size_t memsz; };
"""
MODULE = "kexec_py.submit._ffi"
PATH = Path(__file__).with_name("_ffi.py")


def builder():
    from cffi import FFI
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(MODULE, None)
    return ffi


if __name__ == "__main__":
    builder().emit_python_code(str(PATH))
