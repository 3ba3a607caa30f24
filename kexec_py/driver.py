"""From a Request to syscalls, in kexec-tools' order of steps: status, unload, load,
shutdown / sync / ifdown / exec. It names no architecture: everything that differs
between machines is asked of the ``Arch`` (kexec_py.arch.base).

A load reads its inputs once (the kernel file, parsed; the command line; the device
tree), decides which system calls to try and in what order (``_attempts``, with the
fallbacks in ``_FALLBACKS``), then for each: plan, check (kexec_py.preflight), submit.

The CLI parses argv into a Request and calls ``run``; tests call ``run`` with a
fixture SystemView and a RecordingBackend.
"""

from __future__ import annotations

import errno as E
import os
import sys as _sys

from kexec_py.errors import (FileSyscallUnavailable, ImageError, ImageNotFound, KexecError, NoCrashMemory,
                             NoSpace, NotPermitted, PlacementError, SnapshotError, SubmitError, UsageError)
from kexec_py.paths import path_text
from kexec_py.record import REQUIRED, Record, factory, replace
from kexec_py.request import Request, Syscall
from kexec_py.structs import kexec_uapi as K

FILE, LOAD = Syscall.FILE, Syscall.LOAD

# (failed call, next call): the kernel's errnos after which the next call is made, the
# line said when it is, and whether it is said only with -d (-a's fallback happens on
# every boot of a kernel without kexec_file_load: kexec-tools is silent there, and a
# kdump service's journal should be too)
_FALLBACKS = {
    (FILE, LOAD): ({E.ENOSYS, E.EINVAL, E.ENOEXEC, E.EOPNOTSUPP}, "kexec-py: {message}; retrying with kexec_load",
                   True),
    (LOAD, FILE): ({E.EPERM}, "kexec-py: kexec_load was refused (EPERM), as a locked-down kernel does: loading "
                              "with kexec_file_load instead (the kernel must be signed)", False),
}


class Context(Record):
    _defaults = dict(
        arch=REQUIRED,      # an Arch
        sys=REQUIRED,       # a SystemView
        backend=REQUIRED,
        # looked up when the Context is made, so that a redirected sys.stdout/stderr is used
        out=factory(lambda: _sys.stdout),
        err=factory(lambda: _sys.stderr),
        # where a crash load is recorded, to be loaded again if the kernel refuses a later one
        # (kexec_py.lastgood.Store); None: lastgood.store_for decides (only on the running system)
        last_good=None,
    )
    __slots__ = tuple(_defaults)
    _frozen = False


class Inputs(Record):
    """Everything a load reads from files, read once."""
    _defaults = dict(
        kernel=REQUIRED,            # a KernelFile: the file's bytes, decompressed when it was wrapped
        image=REQUIRED,             # the kernel, parsed by the arch's first format that takes it
        cmdline=REQUIRED,           # composed from --append / --reuse-cmdline
        dtb=REQUIRED,               # bytes | None: --dtb
    )
    __slots__ = tuple(_defaults)


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
                            _no_crash_memory_hint(ctx.sys))
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
        from kexec_py.preflight import check_exec_permitted
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


def _no_crash_memory_hint(sys) -> str:
    """What to do without a crash region; the reason when the kernel's config gives it (a kernel
    built without CONFIG_CRASH_DUMP reserves nothing for crashkernel=; Debian builds one such)."""
    found = None
    release = sys.kernel_release()
    if release and sys.exists(f"/boot/config-{release}"):     # not /proc/config.gz: no gzip on this path
        try:
            found = sys.kernel_config(release)
        except KexecError:
            pass
    if found is not None and found[1].get("CONFIG_CRASH_DUMP") != "y":
        return (f"this kernel is built without CONFIG_CRASH_DUMP ({found[0]}), so crashkernel= reserves "
                "nothing: boot a kernel built with it, with crashkernel=256M (or more)")
    return "boot with crashkernel=256M (or more) on the kernel command line"


def print_crash_region_size(sys) -> int:
    """--print-ckr-size: the size of the (highest) crash region in bytes, or 0."""
    regions = sys.crash_regions()
    print(regions[-1].size if regions else 0)
    return 0


def _status(req: Request, ctx: Context) -> int:
    try:
        loaded = ctx.sys.kexec_loaded() if req.steps.load_given else ctx.sys.kexec_crash_loaded()
    except SnapshotError as e:
        raise e.amended(exit_code=255) from None      # kexec-tools: -S with an unreadable /sys file
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


# -- unload ------------------------------------------------------------------------------

def _unload(req: Request, ctx: Context) -> None:
    from kexec_py.plan.plan import UnloadPlan
    from kexec_py.preflight import check_permitted, lockdown_mode
    from kexec_py.render import render_plan
    from kexec_py.submit import submit
    can_file = ctx.arch.has_file_syscall
    use_file = req.syscall is not LOAD and can_file
    if not use_file and can_file and (mode := lockdown_mode(ctx.sys)):
        print(f"kexec-py: the kernel is locked down ({mode}), which refuses kexec_load: unloading with "
              "kexec_file_load instead", file=ctx.err)
        use_file = True
    plan = UnloadPlan(arch=ctx.arch.name, crash=req.crash, use_file_syscall=use_file,
                      flags=K.KEXEC_FILE_UNLOAD | (K.KEXEC_FILE_ON_CRASH if req.crash else 0),
                      kexec_arch=ctx.arch.kexec_arch)
    if req.dry_run:
        print(render_plan(plan), file=ctx.out)
        return
    check_permitted(ctx.sys, crash=req.crash)
    try:
        submit(plan, ctx.backend)
    except SubmitError as e:
        if e.errno != E.EPERM or use_file or not can_file:
            raise
        # lockdown (securityfs not mounted, so not seen above) or an LSM that wants a file
        print("kexec-py: kexec_load was refused (EPERM), as a locked-down kernel does: unloading with "
              "kexec_file_load instead", file=ctx.err)
        submit(replace(plan, use_file_syscall=True), ctx.backend)
    if req.crash and (store := _last_good(ctx)) is not None:
        store.forget()              # unloaded on purpose: nothing to bring back


# -- load --------------------------------------------------------------------------------

def _load(req: Request, ctx: Context) -> None:
    inputs = _read_inputs(req, ctx)
    file_inputs, refusal = _file_inputs(req, ctx, inputs)
    attempts = _attempts(req, ctx, inputs, file_inputs, refusal)
    submitter = _Submitter(ctx, req.crash)
    store = _last_good(ctx) if req.crash and not req.dry_run else None
    was_loaded = store is not None and _crash_loaded(ctx) is True
    for i, syscall in enumerate(attempts):
        try:
            if syscall is FILE:
                _load_file(req, ctx, inputs, file_inputs, submitter)
            else:
                _load_segments(req, ctx, inputs, submitter)
        except SubmitError as e:
            last = i + 1 == len(attempts)
            fallback = None if last else _FALLBACKS[(syscall, attempts[i + 1])]
            if fallback is None or e.errno not in fallback[0]:
                if not req.crash:
                    raise
                restored = was_loaded and _crash_loaded(ctx) is False and store.restore(ctx.err)
                state = "the crash kernel loaded before is loaded again" if restored else _crash_state(ctx)
                raise e.amended(hint=(e.hint + "; " if e.hint else "") + state) from None
            errnos, said, debug_only = fallback
            if req.debug or not debug_only:
                print(said.format(message=e.message), file=ctx.err)
            continue
        if store is not None:
            try:
                store.record(_sys.argv[1:], [f for f in (req.kernel, req.initrd, req.dtb) if f])
            except OSError as e:
                print(f"kexec-py: could not record the crash kernel loaded in {store.path}: {e.strerror}",
                      file=ctx.err)
        return


def _last_good(ctx: Context):
    if ctx.last_good is not None:
        return ctx.last_good
    from kexec_py.lastgood import store_for
    return store_for(ctx.sys, ctx.backend)


def _crash_loaded(ctx: Context) -> bool | None:
    try:
        return ctx.sys.kexec_crash_loaded()
    except KexecError:
        return None


def _read_inputs(req: Request, ctx: Context) -> Inputs:
    """Check the files, read and parse the kernel, compose the command line, read --dtb."""
    from kexec_py.image.open import parse_kernel, read_kernel_file
    from kexec_py.plan.cmdline import compose_cmdline
    if not req.kernel:
        raise UsageError("No kernel specified", "give the kernel file to load", exit_code=255)
    _check_file(req.kernel, "kernel")
    if req.initrd:
        _check_file(req.initrd, "initrd")
    cmdline = compose_cmdline(append=req.append, reuse=ctx.sys.cmdline if req.reuse_cmdline else None,
                              crash=req.crash)
    if req.dtb:
        if not ctx.arch.device_tree:
            raise UsageError(f"--dtb: {ctx.arch.name} kernels do not take a device tree from kexec-py")
        if req.syscall is FILE:
            raise UsageError("--dtb cannot be passed through kexec_file_load (the kernel builds the device tree)",
                             "add -c to load with kexec_load")
    kernel = read_kernel_file(req.kernel)
    image = parse_kernel(kernel, ctx.arch.formats, force=req.image_type)   # refuse what no loader knows
    return Inputs(kernel=kernel, image=image, cmdline=cmdline, dtb=_read_dtb(req.dtb) if req.dtb else None)


def _file_inputs(req: Request, ctx: Context, inputs: Inputs):
    """(the arch's FileInputs, None) when kexec_file_load can load this request,
    else (None, the FileSyscallUnavailable that says why not)."""
    if not ctx.arch.has_file_syscall:
        return None, FileSyscallUnavailable(f"syscall kexec_file_load not available on {ctx.arch.name}",
                                            "use -c (kexec_load)", errno=E.ENOSYS)
    if req.dtb:
        return None, FileSyscallUnavailable("kexec_file_load takes no --dtb", errno=E.EINVAL)
    try:
        return ctx.arch.file_inputs(inputs.image), None
    except FileSyscallUnavailable as e:
        return None, e


def _attempts(req: Request, ctx: Context, inputs: Inputs, file_inputs, refusal) -> list[Syscall]:
    """The system calls to try, in order: -s kexec_file_load only; -c kexec_load, then
    kexec_file_load if the kernel refuses it with EPERM; -a kexec_file_load, then
    kexec_load if the kernel refuses the first with an errno of _FALLBACKS. A kernel
    that is locked down takes kexec_file_load only (of a signed kernel)."""
    from kexec_py.preflight import lockdown_mode, signature_checked
    if req.syscall is FILE:
        if refusal:
            raise refusal
        return [FILE]
    if mode := lockdown_mode(ctx.sys):
        why = f"the kernel is locked down ({mode}), which refuses kexec_load"
        if not refusal and not ctx.arch.signed(_file_kernel(inputs, file_inputs)) \
                and signature_checked(ctx.arch, ctx.sys):
            refusal = FileSyscallUnavailable("this kernel image carries no signature, which kexec_file_load "
                                             "needs on a locked-down kernel")
        if refusal:
            raise NotPermitted(f"{req.kernel}: {why}, and {refusal.message}",
                               f"load {ctx.arch.signed_kind} with kexec_file_load, or boot without lockdown"
                               if ctx.arch.has_file_syscall else "boot without lockdown")
        if req.syscall is LOAD:
            print(f"kexec-py: {why}: loading with kexec_file_load instead (the kernel must be signed)",
                  file=ctx.err)
        return [FILE]
    if req.syscall is LOAD:
        return [LOAD] if refusal else [LOAD, FILE]
    if refusal:
        if refusal.userspace and req.debug:       # an image kexec_file_load does not take
            print(f"kexec-py: {refusal.message}; loading with kexec_load", file=ctx.err)
        return [LOAD]
    return [FILE, LOAD]


def _file_kernel(inputs: Inputs, file_inputs):
    """The kernel bytes kexec_file_load will read."""
    return file_inputs.kernel if file_inputs.kernel is not None else inputs.kernel.data


def _load_file(req: Request, ctx: Context, inputs: Inputs, fi, submitter: _Submitter) -> None:
    from kexec_py import preflight
    from kexec_py.plan.plan import FilePlan
    from kexec_py.render import render_plan

    initrd_bytes = None if req.initrd else fi.initrd
    cmdline = inputs.cmdline if inputs.cmdline.strip() else (fi.cmdline or inputs.cmdline)
    has_initrd = bool(req.initrd) or initrd_bytes is not None
    flags = (K.KEXEC_FILE_ON_CRASH if req.crash else 0) | (0 if has_initrd else K.KEXEC_FILE_NO_INITRAMFS)
    for wanted, bit in ((req.debug, K.KEXEC_FILE_DEBUG), (req.no_cma, K.KEXEC_FILE_NO_CMA),
                        (req.force_dtb, K.KEXEC_FILE_FORCE_DTB)):
        if wanted:
            flags |= bit
    kernel_bytes = fi.kernel if fi.kernel is not None else inputs.kernel.data if inputs.kernel.compression else None
    plan = FilePlan(arch=ctx.arch.name, kernel=path_text(req.kernel), initrd=path_text(req.initrd) if req.initrd else None,
                    cmdline=cmdline, flags=flags, kernel_bytes=kernel_bytes, initrd_bytes=initrd_bytes)
    preflight.check_file_plan(plan, fi, crash_region=ctx.sys.crash_regions()[-1] if req.crash else None,
                              page_size=ctx.sys.page_size)
    preflight.check_signed(plan, ctx.arch, ctx.sys, _file_kernel(inputs, fi))
    if req.debug or req.dry_run:
        print(render_plan(plan), file=ctx.out if req.dry_run else ctx.err)
    if req.dry_run:
        return
    try:
        submitter.submit(plan)
    except SubmitError as e:
        # Kernels before 6.7 do not know KEXEC_FILE_DEBUG and refuse it with EINVAL
        # before they look at anything else; the load itself may still work.
        if not (e.errno == E.EINVAL and plan.flags & K.KEXEC_FILE_DEBUG):
            raise
        print("kexec-py: this kernel does not take KEXEC_FILE_DEBUG; loading without it", file=ctx.err)
        submitter.submit(replace(plan, flags=plan.flags & ~K.KEXEC_FILE_DEBUG))


def _load_segments(req: Request, ctx: Context, inputs: Inputs, submitter: _Submitter) -> None:
    from kexec_py import preflight
    from kexec_py.plan.purgatory import load_purgatory
    from kexec_py.render import render_plan, render_segments_kexec_tools

    arch = ctx.arch
    load_inputs = _load_inputs(req, ctx, inputs)
    # an arch whose kernel enters the new image itself (arm) says uses_purgatory = False
    purgatory = load_purgatory(arch.name) if getattr(arch, "uses_purgatory", True) else None
    with _naming_inputs(req):
        if req.crash:
            facts = arch.read_crash_facts(ctx.sys)
            preflight.check_crash_facts(ctx.sys)
            plan = arch.plan_crash(inputs.image, load_inputs, facts, purgatory)
        else:
            plan = arch.plan_load(inputs.image, load_inputs, arch.read_load_facts(ctx.sys), purgatory)
        if req.entry is not None:
            plan = replace(plan, entry=req.entry, notes=plan.notes + ("entry overridden by --entry",))
        preflight.check_plan(plan, arch, ram_total=preflight.ram_total(ctx.sys))
    if req.dry_run:
        print(render_plan(plan), file=ctx.out)
    if req.debug:
        print(render_segments_kexec_tools(plan), file=ctx.err)
    if req.dry_run:
        return
    submitter.submit(plan)


def _load_inputs(req: Request, ctx: Context, inputs: Inputs):
    from kexec_py.arch.base import LoadInputs
    from kexec_py.plan.ranges import Range
    try:
        seed = os.getrandom(32, os.GRND_NONBLOCK)
    except OSError:
        seed = None          # no entropy yet: the new kernel gathers its own, as without a seed
    initrd = None
    if req.initrd:
        from kexec_py.image.open import map_file
        from kexec_py.plan.purgatory import start_prehash     # hash the initrd on another CPU meanwhile
        initrd = start_prehash(map_file(req.initrd))
    return LoadInputs(cmdline=inputs.cmdline, initrd=initrd, page_size=ctx.sys.page_size,
                      no_checks=req.no_checks, window=Range(req.mem_min, req.mem_max + 1), dtb=inputs.dtb,
                      options=req.arch_options, rng_seed=seed, hotplug_size=_hotplug_size(req, ctx))


def _hotplug_size(req: Request, ctx: Context) -> int | None:
    """--hotplug: how much room the kernel wants to rewrite the ELF core header in."""
    if not (req.hotplug and req.crash):
        return None
    if not ctx.arch.hotplug_flag:
        raise UsageError(f"--hotplug is not supported by kexec-py on {ctx.arch.name}")
    size = ctx.sys.crash_elfcorehdr_size()
    if not size:
        raise KexecError("--hotplug: /sys/kernel/crash_elfcorehdr_size is missing or 0: this kernel cannot update "
                         "a loaded crash kernel's ELF header", "drop --hotplug and reload on CPU/memory hotplug")
    return size


class _Submitter:
    """Hands plans to the submit module: permissions checked once, before the first call."""

    def __init__(self, ctx: Context, crash: bool):
        self.ctx, self.crash, self.checked = ctx, crash, False

    def submit(self, plan) -> None:
        from kexec_py.preflight import check_permitted
        from kexec_py.submit import submit
        if not self.checked:
            check_permitted(self.ctx.sys, crash=self.crash)
            self.checked = True
        submit(plan, self.ctx.backend)


def _crash_state(ctx: Context) -> str:
    """What a failed crash load says last: whether a crash kernel is loaded now."""
    return {False: "NO crash kernel is loaded now: fix the cause, then load one again",
            True: "the crash kernel loaded before is still loaded",
            None: "whether a crash kernel is still loaded is unknown: check with kexec-py -S"}[_crash_loaded(ctx)]


def _read_dtb(path: str) -> bytes:
    from kexec_py.plan.devicetree import parse_dtb
    _check_file(path, "device tree")
    with open(path, "rb") as f:
        data = f.read()
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
        message = f"{path}: {e.message}" if path and path not in e.message else e.message
        hint = e.hint
        if self.req.crash and "crashkernel=" not in e.hint and isinstance(e, NoSpace):
            hint = "reserve more memory with crashkernel= or use a smaller initrd"
        raise e.amended(message=message, hint=hint) from None


def _check_file(path: str, what: str) -> None:
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ImageNotFound(f"{path}: no such {what} file", f"check the {what} path")
    if not os.path.isfile(p):
        raise ImageError(f"{path} is not a regular file", f"give the {what} file itself")
    if not os.access(p, os.R_OK):
        raise ImageError(f"{path}: permission denied", "run as root or fix the file mode")
