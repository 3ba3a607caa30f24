"""The committed out-of-line cffi module (kexec_py/submit/_ffi.py) must declare what
ffi_build.CDEF declares: the syscall entry and struct kexec_segment, field by field."""

from cffi import FFI

from kexec_py.submit import ffi_build
from kexec_py.submit._ffi import ffi as committed


def inline():
    ffi = FFI()
    ffi.cdef(ffi_build.CDEF)
    return ffi


def test_committed_module_matches_cdef():
    ref = inline()
    seg = "struct kexec_segment"
    assert committed.sizeof(seg) == ref.sizeof(seg) == 4 * ref.sizeof("void *")
    assert [(name, committed.offsetof(seg, name)) for name in ("buf", "bufsz", "mem", "memsz")] == \
           [(name, ref.offsetof(seg, name)) for name in ("buf", "bufsz", "mem", "memsz")]
    assert [(n, f.type.cname) for n, f in committed.typeof(seg).fields] == \
           [(n, f.type.cname) for n, f in ref.typeof(seg).fields]
    libc, ref_libc = committed.dlopen(None), ref.dlopen(None)
    assert committed.typeof(libc.syscall).cname == ref.typeof(ref_libc.syscall).cname == "long(*)(long, ...)"


def test_regenerating_gives_the_committed_file(tmp_path):
    out = tmp_path / "_ffi.py"
    ffi_build.builder().emit_python_code(str(out))
    assert out.read_text() == ffi_build.PATH.read_text(), "run python3 -m kexec_py.submit.ffi_build"


def test_segment_buffers_are_not_copied(tmp_path):
    """kexec_load hands the kernel pointers into the caller's buffers (an mmap'd initrd stays one copy)."""
    import mmap

    from kexec_py.submit import syscalls
    path = tmp_path / "initrd"
    path.write_bytes(b"x" * 8192)
    with open(path, "rb") as f:
        view = memoryview(mmap.mmap(f.fileno(), 8192, prot=mmap.PROT_READ))
    ffi, _ = syscalls._ffi()
    seen = {}

    def fake_call(nr, entry, count, segs, flags):
        seen["buf"] = int(ffi.cast("uintptr_t", segs[0].buf))
        seen["bufsz"] = segs[0].bufsz
    original = syscalls._call
    syscalls._call = fake_call
    try:
        syscalls.kexec_load(0x1000, [(view, 0x100000, 8192)], 0)
    finally:
        syscalls._call = original
    assert seen == {"buf": int(ffi.cast("uintptr_t", ffi.from_buffer(view))), "bufsz": 8192}
