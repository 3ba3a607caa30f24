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
from kexec_py.request import Request, Syscall
from kexec_py.structs import kexec_uapi as K


@dataclass
class Context:
    arch: object            # an Arch
    sys: object             # a SystemView
    backend: object
    out: object = _sys.stdout
    err: object = _sys.stderr


def run(req: Request, ctx: Context) -> int:
    """Carry out ``req`` in kexec-tools' order; returns the exit status.
    Raises KexecError for the CLI to report."""
    steps = req.steps
    if steps.status:
        return _status(req, ctx)
    if not steps.load:
        _refuse_loader_options(req)
    if steps.load and req.crash and not ctx.sys.crash_regions():
        # kexec-tools checks this before anything else, unload included, and exits 1
        raise NoCrashMemory("Memory for crashkernel is not reserved: /proc/iomem has no 'Crash kernel' range",
                            "boot with crashkernel=256M (or more) on the kernel command line")
    if steps.unload:
        _unload(req, ctx)
    loaded_now = False
    if steps.load:
        _load(req, ctx)
        loaded_now = not req.crash
    if (steps.shutdown or steps.exec) and not (loaded_now or req.dry_run or ctx.sys.kexec_loaded()):
        raise KexecError("Nothing has been loaded!", "load a kernel with -l first")
    for wanted, action, what in ((steps.shutdown, "shutdown", "run shutdown -r now"),
                                 (steps.sync, "sync", "sync the filesystems"),
                                 (steps.ifdown, "ifdown", "take the network interfaces down"),
                                 (steps.exec, "reboot_kexec", "reboot into the loaded kernel")):
        if not wanted:
            continue
        if req.dry_run:
            print(f"would {what}", file=ctx.out)
            continue
        try:
            getattr(ctx.backend, action)()
        except OSError as e:
            raise SubmitError(f"could not {what}: {e.strerror}", errno=e.errno or 0) from None
    return 0


def print_crash_region_size(sys) -> int:
    """--print-ckr-size: the size of the (highest) crash region in bytes, or 0."""
    regions = sys.crash_regions()
    print(regions[-1].size if regions else 0)
    return 0


def _status(req: Request, ctx: Context) -> int:
    try:
        loaded = ctx.sys.kexec_loaded() if req.steps.load_given else ctx.sys.kexec_crash_loaded()
    except SnapshotError as e:
        e.exit_code = 255          # kexec-tools: -S with an unreadable /sys file
        raise
    if req.debug:
        print(f"{'crash' if req.crash else 'kexec'} kernel {'loaded' if loaded else 'not loaded'}",
              file=ctx.err)
    return 1 if loaded else 0


def _refuse_loader_options(req: Request) -> None:
    """kexec-tools refuses loader options (--initrd, --append, ...) when nothing is loaded."""
    given = [name for name, value in (("--initrd", req.initrd), ("--append/--command-line", req.append),
                                      ("--reuse-cmdline", req.reuse_cmdline), ("--dtb", req.dtb))
             if value]
    if given:
        raise UsageError(f"{given[0]} only makes sense when loading a kernel", "add -l or -p, or drop it")


def _unload(req: Request, ctx: Context) -> int:
    from kexec_py.render import render_plan
    from kexec_py.submit import submit
    use_file = req.syscall is not Syscall.LOAD and ctx.arch.has_file_syscall
    flags = K.KEXEC_FILE_UNLOAD | (K.KEXEC_FILE_ON_CRASH if req.crash else 0)
    plan = UnloadPlan(arch=ctx.arch.name, crash=req.crash, use_file_syscall=use_file, flags=flags,
                      kexec_arch=ctx.arch.kexec_arch)
    if req.dry_run:
        print(render_plan(plan), file=ctx.out)
        return 0
    submit(plan, ctx.backend)
    return 0


def _load(req: Request, ctx: Context) -> int:
    if not req.kernel:
        raise UsageError("No kernel specified", "give the kernel file to load", exit_code=255)
    crash = req.crash
    _check_file(req.kernel, "kernel")
    if req.initrd:
        _check_file(req.initrd, "initrd")
    cmdline = compose_cmdline(append=req.append, reuse=ctx.sys.cmdline if req.reuse_cmdline else None,
                              crash=crash)
    _check_dtb(req, ctx, file_syscall=req.syscall is Syscall.FILE)
    if req.syscall is Syscall.LOAD or not ctx.arch.has_file_syscall or req.dtb:   # only kexec_load takes a DTB
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


def _check_dtb(req: Request, ctx: Context, *, file_syscall: bool) -> None:
    if not req.dtb:
        return
    if not ctx.arch.device_tree:
        raise UsageError(f"--dtb: {ctx.arch.name} kernels do not take a device tree from kexec-py")
    if file_syscall:
        raise UsageError("--dtb cannot be passed through kexec_file_load (the kernel builds the device tree)",
                         "add -c to load with kexec_load")


def _load_file(req: Request, ctx: Context, cmdline: str, crash: bool) -> int:
    from kexec_py.image.open import parse_kernel, read_kernel_file
    from kexec_py.render import render_plan
    from kexec_py.submit import submit

    kf = read_kernel_file(req.kernel)
    image = parse_kernel(kf, ctx.arch.formats, force=req.image_type)   # refuse what no loader knows
    # A UKI gives its .linux as the kernel and its .initrd / .cmdline when the user gave none;
    # an image kexec_file_load cannot take (an ELF vmlinux) is refused here, with ENOEXEC for -a.
    from kexec_py.image.uki import file_syscall_inputs
    inner_kernel, inner_initrd, inner_cmdline = file_syscall_inputs(image, arch=ctx.arch.name)
    initrd_bytes = None if req.initrd else inner_initrd
    cmdline = cmdline if cmdline.strip() else (inner_cmdline or cmdline)
    has_initrd = bool(req.initrd) or initrd_bytes is not None
    flags = (K.KEXEC_FILE_ON_CRASH if crash else 0) | (0 if has_initrd else K.KEXEC_FILE_NO_INITRAMFS)
    for wanted, bit in ((req.debug, K.KEXEC_FILE_DEBUG), (req.no_cma, K.KEXEC_FILE_NO_CMA),
                        (req.force_dtb, K.KEXEC_FILE_FORCE_DTB)):
        if wanted:
            flags |= bit
    plan = FilePlan(arch=ctx.arch.name, kernel=Path(req.kernel), initrd=Path(req.initrd) if req.initrd else None,
                    cmdline=cmdline, flags=flags,
                    kernel_bytes=inner_kernel if inner_kernel is not None else kf.data if kf.compression else None,
                    initrd_bytes=initrd_bytes)
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
    from kexec_py.image.open import open_kernel
    from kexec_py.plan.purgatory import load_purgatory
    from kexec_py.render import render_plan, render_segments_kexec_tools
    from kexec_py.submit import submit

    image = open_kernel(req.kernel, ctx.arch.formats, force=req.image_type)
    inputs = replace(_load_inputs(req, cmdline), hotplug_size=_hotplug_size(req, ctx))
    purgatory = load_purgatory(ctx.arch.name)
    if crash:
        facts = ctx.arch.read_crash_facts(ctx.sys)
        if req.x86.core_header_class and hasattr(facts, "core_class"):
            facts = replace(facts, core_class=req.x86.core_header_class)   # i386; x86_64 is always ELF64
        plan = ctx.arch.plan_crash(image, inputs, facts, purgatory)
    else:
        plan = ctx.arch.plan_load(image, inputs, ctx.arch.read_load_facts(ctx.sys), purgatory)
    if req.entry is not None:
        plan = replace(plan, entry=req.entry, notes=plan.notes + ("entry overridden by --entry",))
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


def _load_inputs(req: Request, cmdline: str):
    from kexec_py.arch.base import LoadInputs
    from kexec_py.plan.ranges import Range
    x86 = req.x86
    port = x86.serial if x86.serial is not None else 0x3F8
    try:
        seed = os.getrandom(32, os.GRND_NONBLOCK)
    except OSError:
        seed = None          # no entropy yet: the new kernel gathers its own, as without a seed
    return LoadInputs(cmdline=cmdline, initrd=_map_file(req.initrd) if req.initrd else None,
                      no_checks=req.no_checks, elf_args=x86.args, window=Range(req.mem_min, req.mem_max + 1),
                      dtb=_read_dtb(req.dtb) if req.dtb else None,
                      console_port=port if x86.console_serial else None,
                      pass_memmap=x86.pass_memmap_cmdline, rng_seed=seed)


def _hotplug_size(req: Request, ctx: Context) -> int | None:
    """--hotplug: how much room the kernel wants to rewrite the ELF core header in."""
    if not (req.hotplug and req.crash):
        return None
    if not ctx.arch.hotplug_flag:
        raise UsageError(f"--hotplug is not supported by kexec-py on {ctx.arch.name}")
    path = "/sys/kernel/crash_elfcorehdr_size"
    text = ctx.sys.read_optional(path)
    size = int(text.strip() or 0) if text and text.strip().isdigit() else 0
    if not size:
        raise KexecError(f"--hotplug: {path} is missing or 0: this kernel cannot update a loaded "
                         "crash kernel's ELF header", "drop --hotplug and reload on CPU/memory hotplug")
    return size


def _read_dtb(path: str) -> bytes:
    _check_file(path, "device tree")
    return Path(path).read_bytes()


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
