"""Hand a finished plan to a backend, and turn the kernel's errno into advice.

Plans reach ``submit`` only after kexec_py.preflight has checked them (the driver
sees to that): this module does nothing but make the call.
"""

from __future__ import annotations

import errno as E
import os

from kexec_py.errors import FileSyscallUnavailable, SubmitError
from kexec_py.plan.plan import FilePlan, SegmentPlan, UnloadPlan

def submit(plan, backend) -> None:
    if isinstance(plan, SegmentPlan):
        _submit_segments(plan, backend)
    elif isinstance(plan, FilePlan):
        _submit_file(plan, backend)
    elif isinstance(plan, UnloadPlan):
        _submit_unload(plan, backend)
    else:
        raise TypeError(plan)


def _submit_segments(plan: SegmentPlan, backend) -> None:
    segs = sorted(plan.segments, key=lambda s: s.mem)
    try:
        backend.kexec_load(plan.entry, [(s.buf, s.mem, s.memsz) for s in segs], plan.flags)
    except OSError as e:
        raise errno_error("kexec_load", e.errno, crash=bool(plan.flags & 1)) from None


def _submit_file(plan: FilePlan, backend) -> None:
    kernel_fd = initrd_fd = -1
    try:
        if plan.kernel_bytes is not None:
            kernel_fd = _memfd("kernel", plan.kernel_bytes)
        else:
            kernel_fd = os.open(plan.kernel, os.O_RDONLY | os.O_CLOEXEC)
        if plan.initrd is not None:
            initrd_fd = os.open(plan.initrd, os.O_RDONLY | os.O_CLOEXEC)
        elif plan.initrd_bytes is not None:
            initrd_fd = _memfd("initrd", plan.initrd_bytes)
        backend.kexec_file_load(kernel_fd, initrd_fd, plan.cmdline.encode() + b"\0", plan.flags)
    except OSError as e:
        if e.filename:
            raise SubmitError(f"cannot open {e.filename}: {e.strerror}", exit_code=1) from None
        raise errno_error("kexec_file_load", e.errno, crash=bool(plan.flags & 2)) from None
    finally:
        for fd in (kernel_fd, initrd_fd):
            if fd >= 0:
                os.close(fd)


def _memfd(name: str, data) -> int:
    """An anonymous file holding ``data`` (os.write may write less than asked: loop)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        os.close(fd)
        raise
    return fd


def _submit_unload(plan: UnloadPlan, backend) -> None:
    from kexec_py.structs import kexec_uapi as K
    if plan.use_file_syscall:
        try:
            backend.kexec_file_load(-1, -1, b"", plan.flags)
            return
        except OSError as e:
            if e.errno != E.ENOSYS:
                raise errno_error("kexec_file_load (unload)", e.errno, crash=plan.crash) from None
    try:
        backend.kexec_load(0, [], (K.KEXEC_ON_CRASH if plan.crash else 0) | plan.kexec_arch)
    except OSError as e:
        raise errno_error("kexec_load (unload)", e.errno, crash=plan.crash) from None


def errno_error(call: str, err: int, *, crash: bool) -> SubmitError:
    what = f"{call} failed: {os.strerror(err)}"
    region = "the crash region (crashkernel=)" if crash else "memory"
    hints = {
        E.EPERM: "kexec-py found no lack of privilege, so the kernel is locked down (Secure Boot) or a "
                 "security module (IMA, SELinux) refused it: load a signed kernel with -s",
        E.EACCES: "run as root",
        E.EBUSY: "another kexec load or unload is running; try again when it has finished",
        E.ENOMEM: f"the kernel could not find room: {region} is too small for kernel + initrd",
        E.EINVAL: f"the kernel rejected the request: a segment outside {region}, or flags this kernel "
                  "does not know",
        E.EADDRNOTAVAIL: f"a segment lies outside {region}; is crashkernel= reserved?",
        E.ENOSYS: "this kernel was built without this system call (CONFIG_KEXEC / CONFIG_KEXEC_FILE)",
        E.ENOEXEC: "the kernel does not recognise this image format for kexec_file_load; try -c",
        E.EKEYREJECTED: "the kernel requires a signed image and this one's signature was rejected",
        E.EBADMSG: "the kernel requires a signed image and this one has no valid signature",
        E.ENOKEY: "the kernel requires a signed image and has no key to check this one",
    }
    cls = FileSyscallUnavailable if (err == E.ENOSYS and "file" in call) else SubmitError
    return cls(what, hints.get(err, ""), errno=err)
