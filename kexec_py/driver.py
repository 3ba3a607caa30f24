"""From a Request to syscalls: read the system, open the images, plan, submit.

The CLI parses argv into a Request and calls ``run``; tests call ``run`` with a
fixture SystemView and a RecordingBackend.
"""

from __future__ import annotations

import errno as E
import os
import sys as _sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from kexec_py.errors import (FileSyscallUnavailable, ImageError, ImageNotFound, KexecError,
                             NoCrashMemory, NoSpace, NotPermitted, PlacementError, SnapshotError, SubmitError,
                             UsageError)
from kexec_py.plan.cmdline import compose_cmdline
from kexec_py.plan.plan import FilePlan, UnloadPlan
from kexec_py.request import Request, Syscall
from kexec_py.structs import kexec_uapi as K


@dataclass
class Context:
    arch: object            # an Arch
    sys: object             # a SystemView
    backend: object
    # looked up when the Context is made, so that a redirected sys.stdout/stderr is used
    out: object = field(default_factory=lambda: _sys.stdout)
    err: object = field(default_factory=lambda: _sys.stderr)


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
    if steps.exec and not req.dry_run:
        # before sync and ifdown: a process that cannot reboot must not take the network down
        from kexec_py.submit.preflight import check_exec_permitted
        check_exec_permitted()
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
    from kexec_py.submit.preflight import check_permitted, lockdown_mode
    use_file = req.syscall is not Syscall.LOAD and ctx.arch.has_file_syscall
    if not use_file and ctx.arch.has_file_syscall and (mode := lockdown_mode(ctx.sys)):
        print(f"kexec-py: the kernel is locked down ({mode}), which refuses kexec_load: unloading with "
              "kexec_file_load instead", file=ctx.err)
        use_file = True
    flags = K.KEXEC_FILE_UNLOAD | (K.KEXEC_FILE_ON_CRASH if req.crash else 0)
    plan = UnloadPlan(arch=ctx.arch.name, crash=req.crash, use_file_syscall=use_file, flags=flags,
                      kexec_arch=ctx.arch.kexec_arch)
    if req.dry_run:
        print(render_plan(plan), file=ctx.out)
        return 0
    check_permitted(ctx.sys, crash=req.crash)
    try:
        submit(plan, ctx.backend)
    except SubmitError as e:
        if e.errno != E.EPERM or use_file or not ctx.arch.has_file_syscall:
            raise
        # lockdown (securityfs not mounted, so not seen above) or an LSM that wants a file
        print("kexec-py: kexec_load was refused (EPERM), as a locked-down kernel does: unloading with "
              "kexec_file_load instead", file=ctx.err)
        submit(replace(plan, use_file_syscall=True), ctx.backend)
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
            raise FileSyscallUnavailable(f"syscall kexec_file_load not available on {ctx.arch.name}",
                                         "use -c (kexec_load)")
        return _load_segments_or_file(req, ctx, cmdline, crash)
    try:
        return _load_file(req, ctx, cmdline, crash)
    except SubmitError as e:
        if req.syscall is Syscall.AUTO and e.errno in (E.ENOSYS, E.EINVAL, E.ENOEXEC, E.EOPNOTSUPP):
            # a refusal found here (an image kexec_file_load does not take) needs no word;
            # one from the kernel is worth a line, as kexec-tools prints one
            if getattr(e, "userspace", False):
                if req.debug:
                    print(f"kexec-py: {e.message}; loading with kexec_load", file=ctx.err)
                return _load_segments_or_file(req, ctx, cmdline, crash)
            print(f"kexec-py: {e.message}; retrying with kexec_load", file=ctx.err)
            return _load_segments(req, ctx, cmdline, crash)
        raise


def _load_segments_or_file(req: Request, ctx: Context, cmdline: str, crash: bool) -> int:
    """kexec_load, unless the kernel is locked down, which refuses it: then
    kexec_file_load (for a signed kernel), saying so."""
    from kexec_py.submit.preflight import lockdown_mode
    mode = lockdown_mode(ctx.sys)
    if mode is None:
        try:
            return _load_segments(req, ctx, cmdline, crash)
        except SubmitError as e:
            if e.errno != E.EPERM or _why_not_file_syscall(req, ctx):
                raise
            # lockdown with securityfs not mounted, or an LSM (IMA) that wants a file descriptor
            print("kexec-py: kexec_load was refused (EPERM), as a locked-down kernel does: loading with "
                  "kexec_file_load instead (the kernel must be signed)", file=ctx.err)
            return _load_file(req, ctx, cmdline, crash)
    why = f"the kernel is locked down ({mode}), which refuses kexec_load"
    if why_not := _why_not_file_syscall(req, ctx, signed=True):
        raise NotPermitted(f"{req.kernel}: {why}, and {why_not}",
                           "load a signed bzImage (or UKI) with kexec_file_load, or boot without lockdown")
    print(f"kexec-py: {why}: loading with kexec_file_load instead (the kernel must be signed)", file=ctx.err)
    return _load_file(req, ctx, cmdline, crash)


def _why_not_file_syscall(req: Request, ctx: Context, *, signed: bool = False) -> str | None:
    """Why kexec_file_load cannot load this request in kexec_load's place, or None if
    it can. ``signed``: the kernel must also carry a signature (lockdown)."""
    if not ctx.arch.has_file_syscall:
        return f"{ctx.arch.name} has no kexec_file_load"
    if req.dtb:
        return "kexec_file_load takes no --dtb"
    from kexec_py.image.open import parse_kernel, read_kernel_file
    from kexec_py.image.uki import file_syscall_inputs
    from kexec_py.plan.segments import file_limits, has_pe_signature
    kf = read_kernel_file(req.kernel)
    image = parse_kernel(kf, ctx.arch.formats, force=req.image_type)
    try:
        inner, _, _ = file_syscall_inputs(image, arch=ctx.arch.name)
    except FileSyscallUnavailable as e:
        return e.message
    if refusal := file_limits(image, arch=ctx.arch.name).refusal:
        return refusal
    if signed and not has_pe_signature(kf.data if inner is None else inner):
        return "this kernel image carries no signature, which kexec_file_load needs on a locked-down kernel"
    return None


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
    try:
        inner_kernel, inner_initrd, inner_cmdline = file_syscall_inputs(image, arch=ctx.arch.name)
    except FileSyscallUnavailable as e:
        e.userspace = True
        raise
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
    from kexec_py.plan.segments import check_file_plan, file_limits
    check_file_plan(plan, file_limits(image, arch=ctx.arch.name),
                    crash_region=ctx.sys.crash_regions()[-1] if crash else None)
    _check_signed_under_lockdown(plan, ctx, kf.data if plan.kernel_bytes is None else plan.kernel_bytes)
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


def _check_signed_under_lockdown(plan, ctx: Context, kernel_data) -> None:
    """A locked-down kernel's kexec_file_load refuses a kernel it cannot verify, and
    only after it has freed the loaded crash kernel: refuse one with no signature
    at all (no Authenticode signature, no IMA security.ima attribute) here."""
    from kexec_py.plan.segments import has_pe_signature
    from kexec_py.submit.preflight import lockdown_mode
    mode = lockdown_mode(ctx.sys)
    if mode is None or has_pe_signature(kernel_data):
        return
    if plan.kernel_bytes is None:
        try:
            os.getxattr(plan.kernel, "security.ima")
            return                      # IMA may appraise it: let the kernel decide
        except OSError:
            pass
    raise NotPermitted(f"{plan.kernel}: the kernel is locked down ({mode}) and this kernel image carries no "
                       "signature, so kexec_file_load would refuse it" +
                       (", after discarding the loaded crash kernel" if plan.flags & K.KEXEC_FILE_ON_CRASH else ""),
                       "load a kernel signed for this machine (the distribution's signed kernel package)")


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
        if ctx.sys.vmcoreinfo() is None:
            raise SnapshotError("/sys/kernel/vmcoreinfo does not exist: the dump would have no VMCOREINFO "
                                "note, which makedumpfile, crash and vmcore-dmesg need",
                                "the kernel needs CONFIG_CRASH_DUMP, and /sys must be mounted")
        if req.x86.core_header_class and hasattr(facts, "core_class"):
            facts = replace(facts, core_class=req.x86.core_header_class)   # i386; x86_64 is always ELF64
        with _naming_inputs(req):
            plan = ctx.arch.plan_crash(image, inputs, facts, purgatory)
    else:
        facts = ctx.arch.read_load_facts(ctx.sys)
        with _naming_inputs(req):
            plan = ctx.arch.plan_load(image, inputs, facts, purgatory)
    if req.entry is not None:
        plan = replace(plan, entry=req.entry, notes=plan.notes + ("entry overridden by --entry",))
    from kexec_py.plan.segments import check_plan
    with _naming_inputs(req):
        check_plan(plan, ram_total=_ram_total(ctx.sys))
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
    from kexec_py.plan.purgatory import start_prehash     # hash the initrd on another CPU meanwhile
    return LoadInputs(cmdline=cmdline, initrd=start_prehash(_map_file(req.initrd)) if req.initrd else None,
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
    from kexec_py.plan.devicetree import parse_dtb
    _check_file(path, "device tree")
    data = Path(path).read_bytes()
    parse_dtb(data, what=path)          # a damaged --dtb is refused naming the file
    return data


class _naming_inputs:
    """Planning errors name the user's file they are about: "no room for the initrd"
    becomes "INITRD: no room for the initrd"; other placement errors name the kernel,
    whose layout they come from."""

    def __init__(self, req: Request):
        self.req = req

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if not isinstance(e, PlacementError):
            return False
        paths = {"initrd": self.req.initrd, "kernel": self.req.kernel, "dtb": self.req.dtb}
        path = paths.get(e.what) if isinstance(e, NoSpace) else self.req.kernel
        if path and path not in e.message:
            e.message = f"{path}: {e.message}"
        if self.req.crash and "crashkernel=" not in e.hint and isinstance(e, NoSpace):
            e.hint = "reserve more memory with crashkernel= or use a smaller initrd"
        return False


def _ram_total(sys) -> int | None:
    """RAM the kernel counts as its own (System RAM less the crash regions), or None."""
    from kexec_py.plan.ranges import merge, subtract
    try:
        ram = merge(sys.iomem.containing_name("System RAM"))
        return sum(r.size for r in subtract(ram, sys.crash_regions())) or None
    except KexecError:
        return None


def _submit_reporting_loss(plan, ctx: Context, crash: bool, do) -> None:
    """Submit; if a crash load fails, say whether a crash kernel is still loaded."""
    from kexec_py.submit.preflight import check_permitted
    check_permitted(ctx.sys, crash=crash)
    try:
        do()
    except SubmitError as e:
        if crash:
            try:
                loaded = ctx.sys.kexec_crash_loaded()
            except KexecError:
                loaded = None
            state = {False: "NO crash kernel is loaded now: fix the cause, then load one again",
                     True: "the crash kernel loaded before is still loaded",
                     None: "whether a crash kernel is still loaded is unknown: check with kexec-py -S"}[loaded]
            e.hint = (e.hint + "; " if e.hint else "") + state
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
    from kexec_py.image.open import map_file
    return map_file(path)
