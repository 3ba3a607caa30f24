"""From a Request to syscalls: read the system, open the images, plan, submit.

The CLI parses argv into a Request and calls ``run``; tests call ``run`` with a
fixture SystemView and a RecordingBackend.
"""

from __future__ import annotations

import errno as E
import mmap
import os
import sys as _sys
from dataclasses import dataclass, replace
from pathlib import Path

from kexec_py.errors import (FileSyscallUnavailable, ImageError, ImageNotFound, KexecError,
                             NoCrashMemory, SnapshotError, SubmitError, UsageError)
from kexec_py.plan.cmdline import compose_cmdline
from kexec_py.plan.plan import FilePlan, UnloadPlan
from kexec_py.request import Action, Request, Syscall
from kexec_py.structs import kexec_uapi as K


@dataclass
class Context:
    arch: object            # an Arch
    sys: object             # a SystemView
    backend: object
    out: object = _sys.stdout
    err: object = _sys.stderr


def run(req: Request, ctx: Context) -> int:
    """Carry out ``req``; returns the exit status. Raises KexecError for the CLI to report."""
    if req.action is Action.STATUS:
        try:
            loaded = ctx.sys.kexec_loaded() if not req.crash else ctx.sys.kexec_crash_loaded()
        except SnapshotError as e:
            e.exit_code = 255          # kexec-tools: -S with an unreadable /sys file
            raise
        if req.debug:
            print(f"{'crash' if req.crash else 'kexec'} kernel {'loaded' if loaded else 'not loaded'}",
                  file=ctx.err)
        return 1 if loaded else 0
    if req.action is Action.UNLOAD:
        return _unload(req, ctx)
    if req.action is Action.EXEC:
        return _exec(req, ctx)
    return _load(req, ctx)


def _unload(req: Request, ctx: Context) -> int:
    from kexec_py.render import render_plan
    from kexec_py.submit import submit
    use_file = req.syscall is not Syscall.LOAD and ctx.arch.has_file_syscall
    flags = K.KEXEC_FILE_UNLOAD | (K.KEXEC_FILE_ON_CRASH if req.crash else 0)
    plan = UnloadPlan(arch=ctx.arch.name, crash=req.crash, use_file_syscall=use_file, flags=flags)
    if req.dry_run:
        print(render_plan(plan), file=ctx.out)
        return 0
    submit(plan, ctx.backend)
    return 0


def _exec(req: Request, ctx: Context) -> int:
    if not ctx.sys.kexec_loaded():
        raise KexecError("Nothing has been loaded!", "load a kernel with -l first", exit_code=255)
    if req.dry_run:
        print("would reboot into the loaded kernel (reboot LINUX_REBOOT_CMD_KEXEC)", file=ctx.out)
        return 0
    os.sync()
    try:
        ctx.backend.reboot_kexec()
    except OSError as e:
        raise SubmitError(f"reboot into the new kernel failed: {os.strerror(e.errno)}", errno=e.errno) from None
    return 0


def _load(req: Request, ctx: Context) -> int:
    if not req.kernel:
        raise UsageError("No kernel specified", "give the kernel file to load", exit_code=255)
    crash = req.action is Action.LOAD_PANIC
    if crash and not ctx.sys.crash_regions():
        raise NoCrashMemory("Memory for crashkernel is not reserved: /proc/iomem has no 'Crash kernel' range",
                            "boot with crashkernel=256M (or more) on the kernel command line")
    _check_file(req.kernel, "kernel")
    if req.initrd:
        _check_file(req.initrd, "initrd")
    cmdline = compose_cmdline(append=req.append, reuse=ctx.sys.cmdline if req.reuse_cmdline else None,
                              crash=crash)
    if req.syscall is Syscall.LOAD or not ctx.arch.has_file_syscall:
        if req.syscall is Syscall.FILE:
            raise FileSyscallUnavailable(f"syscall kexec_file_load not available on {ctx.arch.name}")
        return _load_segments(req, ctx, cmdline, crash)
    try:
        return _load_file(req, ctx, cmdline, crash)
    except SubmitError as e:
        if req.syscall is Syscall.AUTO and e.errno in (E.ENOSYS, E.EINVAL, E.ENOEXEC, E.EOPNOTSUPP):
            print(f"kexec-py: {e.message}; retrying with kexec_load", file=ctx.err)
            return _load_segments(req, ctx, cmdline, crash)
        raise


def _load_file(req: Request, ctx: Context, cmdline: str, crash: bool) -> int:
    from kexec_py.image.open import parse_kernel, read_kernel_file
    from kexec_py.render import render_plan
    from kexec_py.submit import submit

    kf = read_kernel_file(req.kernel)
    parse_kernel(kf, ctx.arch.formats, force=req.image_type)   # refuse what no loader knows
    flags = (K.KEXEC_FILE_ON_CRASH if crash else 0) | (0 if req.initrd else K.KEXEC_FILE_NO_INITRAMFS)
    if req.debug:
        flags |= K.KEXEC_FILE_DEBUG
    plan = FilePlan(arch=ctx.arch.name, kernel=Path(req.kernel), initrd=Path(req.initrd) if req.initrd else None,
                    cmdline=cmdline, flags=flags,
                    kernel_bytes=kf.data if kf.compression else None)
    if req.debug or req.dry_run:
        print(render_plan(plan), file=ctx.out if req.dry_run else ctx.err)
    if req.dry_run:
        return 0
    try:
        _submit_reporting_loss(plan, ctx, crash, lambda: submit(plan, ctx.backend))
    except SubmitError as e:
        # Kernels before 6.7 do not know KEXEC_FILE_DEBUG and refuse it with EINVAL
        # before they look at anything else; the load itself may still work.
        if not (e.errno == E.EINVAL and plan.flags & K.KEXEC_FILE_DEBUG):
            raise
        print("kexec-py: this kernel does not take KEXEC_FILE_DEBUG; loading without it", file=ctx.err)
        plan = replace(plan, flags=plan.flags & ~K.KEXEC_FILE_DEBUG)
        _submit_reporting_loss(plan, ctx, crash, lambda: submit(plan, ctx.backend))
    return 0


def _load_segments(req: Request, ctx: Context, cmdline: str, crash: bool) -> int:
    from kexec_py.arch.base import LoadInputs
    from kexec_py.image.open import open_kernel
    from kexec_py.plan.purgatory import load_purgatory
    from kexec_py.render import render_plan, render_segments_kexec_tools
    from kexec_py.submit import submit

    image = open_kernel(req.kernel, ctx.arch.formats, force=req.image_type)
    initrd = _map_file(req.initrd) if req.initrd else None
    inputs = LoadInputs(cmdline=cmdline, initrd=initrd, no_checks=req.no_checks)
    purgatory = load_purgatory(ctx.arch.name)
    if crash:
        plan = ctx.arch.plan_crash(image, inputs, ctx.arch.read_crash_facts(ctx.sys), purgatory)
    else:
        plan = ctx.arch.plan_load(image, inputs, ctx.arch.read_load_facts(ctx.sys), purgatory)
    from kexec_py.plan.segments import check_plan
    check_plan(plan)
    if req.dry_run:
        print(render_plan(plan), file=ctx.out)
    if req.debug:
        print(render_segments_kexec_tools(plan), file=ctx.err)
    if req.dry_run:
        return 0
    _submit_reporting_loss(plan, ctx, crash, lambda: submit(plan, ctx.backend))
    return 0


def _submit_reporting_loss(plan, ctx: Context, crash: bool, do) -> None:
    """Submit; if a crash load fails, say whether a crash kernel is still loaded."""
    try:
        do()
    except SubmitError as e:
        if crash:
            try:
                lost = not ctx.sys.kexec_crash_loaded()
            except KexecError:
                lost = False
            if lost:
                e.hint = (e.hint + "; " if e.hint else "") + "NO crash kernel is loaded now"
        raise


def _check_file(path: str, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise ImageNotFound(f"{path}: no such {what} file", f"check the {what} path")
    if not p.is_file():
        raise ImageError(f"{path} is not a regular file", f"give the {what} file itself")
    if not os.access(p, os.R_OK):
        raise ImageError(f"{path}: permission denied", "run as root or fix the file mode")


def _map_file(path: str):
    """The file's bytes without copying them: a read-only memory map (empty files: b"")."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b""
        return memoryview(mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ))
