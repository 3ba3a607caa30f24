"""``kdump-py doctor``: will a crash on this machine produce a readable dump?

Each check says pass, warn or fail, what it found, and (unless it passed) one line on
what to do. The machine is ready when nothing fails (exit 0, or 2 with warnings), not
ready otherwise (exit 1). Everything is read through the SystemView given, so a
snapshot root answers as the machine it was taken from would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kexec_py.errors import KexecError
from kexec_py.kdump.crashkernel import CrashkernelError, describe, evaluate_cmdline, human
from kexec_py.kdump.estimate import estimate
from kexec_py.kdump.setup import first_file, read_setup

PASS, WARN, FAIL = "pass", "warn", "fail"
READY, READY_WITH_WARNINGS, NOT_READY = 0, 2, 1
LOAD_HINT = "load one: kdump-config load (Debian), kdumpctl start (Fedora), or kexec-py -p KERNEL --initrd=..."


@dataclass
class Check:
    check: str
    status: str
    message: str
    hint: str = ""


def verdict(checks: list[Check]) -> tuple[int, str]:
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    if fails:
        return NOT_READY, f"not ready: {fails} check{'s' * (fails != 1)} failed" + (
            f", {warns} warning{'s' * (warns != 1)}" if warns else "")
    if warns:
        return READY_WITH_WARNINGS, f"ready, with {warns} warning{'s' * (warns != 1)}"
    return READY, "ready"


def run(sys) -> list[Check]:
    """Every check, in the order a reader would fix them."""
    out: list[Check] = []
    release = sys.kernel_release()
    arch = sys.machine() or "x86_64"
    setup = read_setup(sys, release)
    config = _config(sys, release, out, arch)
    options = config[1] if config else None
    reservation = _crashkernel(sys, arch, out)
    regions = _regions(sys, reservation, out)
    kernel, initrd = _capture_files(sys, release, setup, out)
    _size(sys, regions, kernel, initrd, setup, out)
    _loaded(sys, out)
    _permitted(sys, setup, options, out)
    _sysctls(sys, out)
    _capture_cmdline(setup, out)
    _service(setup, out)
    _vmcoreinfo(sys, out)
    return out


def _config(sys, release, out, arch="x86_64"):
    try:
        found = sys.kernel_config(release)
    except KexecError as e:
        out.append(Check("kernel-config", WARN, e.message, e.hint or "check the file, or boot a kernel whose config is "
                                                                "installed"))
        return None
    if found is None:
        out.append(Check("kernel-config", WARN, f"no /boot/config-{release or '$(uname -r)'} and no "
                         "/proc/config.gz: the kernel's options are not checked",
                         "install the kernel package's config file, or build with CONFIG_IKCONFIG_PROC"))
        return None
    path, opts = found

    def on(name):
        return opts.get(name) in ("y", "m")

    if not on("CONFIG_KEXEC") and not on("CONFIG_KEXEC_FILE"):
        out.append(Check("config-kexec", FAIL, f"{path}: neither CONFIG_KEXEC nor CONFIG_KEXEC_FILE: this kernel "
                         "cannot load a capture kernel", "boot a kernel built with CONFIG_KEXEC=y or CONFIG_KEXEC_FILE=y"))
    else:
        out.append(Check("config-kexec", PASS, f"{path}: CONFIG_KEXEC={opts.get('CONFIG_KEXEC', 'n')}, "
                         f"CONFIG_KEXEC_FILE={opts.get('CONFIG_KEXEC_FILE', 'n')}"))
        if not on("CONFIG_KEXEC_FILE"):
            out.append(Check("config-kexec-file", WARN, "no CONFIG_KEXEC_FILE: kexec -s exits 253, and a locked-down "
                             "kernel or a LUKS dump target (which need kexec_file_load) cannot kdump",
                             "fine with kexec_load (-c, or the default -a); else boot a kernel with CONFIG_KEXEC_FILE=y"))
    for name, why in (("CONFIG_CRASH_DUMP", "the capture kernel cannot offer /proc/vmcore and the kernel keeps no "
                                            "crash notes"),
                      ("CONFIG_PROC_VMCORE", "the capture kernel (this same kernel) has no /proc/vmcore to read the "
                                             "dump from")):
        if on(name):
            out.append(Check(name.lower().replace("_", "-")[7:], PASS, f"{name}={opts[name]}"))
        else:
            out.append(Check(name.lower().replace("_", "-")[7:], FAIL, f"{name} is not set: {why}",
                             f"boot (and capture with) a kernel built with {name}=y"))
    # 32-bit arm has no CONFIG_RELOCATABLE: a zImage runs where it is loaded when its
    # decompressor finds the RAM base itself (AUTO_ZRELADDR)
    movable = "CONFIG_AUTO_ZRELADDR" if arch.startswith("arm") and not arch.startswith("arm64") else \
        "CONFIG_RELOCATABLE"
    for check, name, why, hint in (
            ("relocatable", movable, "this kernel cannot run from the crash reservation as the capture kernel",
             f"build a separate capture kernel linked at the reservation's address, or one with {movable}=y"),
            ("kallsyms", "CONFIG_KALLSYMS", "crash and makedumpfile's symbol lookups have no kernel symbol table",
             "build with CONFIG_KALLSYMS=y")):
        if on(name):
            out.append(Check(check, PASS, f"{name}={opts[name]}"))
        else:
            out.append(Check(check, WARN, f"{name} is not set: {why}", hint))
    if on("CONFIG_KEXEC_SIG_FORCE"):
        out.append(Check("config-signatures", WARN, "CONFIG_KEXEC_SIG_FORCE=y: kexec_file_load takes only signed "
                         "kernels", "load the distribution's signed kernel, or use kexec_load (-c)"))
    else:
        out.append(Check("config-signatures", PASS, f"CONFIG_KEXEC_SIG={opts.get('CONFIG_KEXEC_SIG', 'n')}, "
                         "CONFIG_KEXEC_SIG_FORCE not set: unsigned kernels load unless the kernel is locked down"))
    forced = next((m for m in ("INTEGRITY", "CONFIDENTIALITY") if on(f"CONFIG_LOCK_DOWN_KERNEL_FORCE_{m}")), None)
    out.append(Check("config-lockdown", WARN if forced else PASS,
                     f"CONFIG_LOCK_DOWN_KERNEL_FORCE_{forced}=y: the kernel is always locked down: kexec_load is "
                     "refused, kexec_file_load needs a signed kernel" if forced else
                     f"lockdown not forced (CONFIG_SECURITY_LOCKDOWN_LSM={opts.get('CONFIG_SECURITY_LOCKDOWN_LSM', 'n')}"
                     f", CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT={opts.get('CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT', 'n')})",
                     "load with -s and a signed kernel" if forced else ""))
    return found


def _crashkernel(sys, arch, out):
    try:
        cmdline = sys.cmdline
        ram = sys.ram_size()
    except KexecError as e:
        out.append(Check("crashkernel", FAIL, e.message, e.hint or "is /proc mounted?"))
        return None
    if not ram:
        out.append(Check("crashkernel", FAIL, "no System RAM in /proc/iomem: cannot tell what crashkernel= reserves",
                         "is /proc mounted, and read as root?"))
        return None
    try:
        found = evaluate_cmdline(cmdline, ram, arch)
    except CrashkernelError as e:
        out.append(Check("crashkernel", FAIL, e.message, e.hint or "boot with crashkernel=SIZE "
                                                                   "(kdump-py crashkernel --estimate says how much)"))
        return None
    out.append(Check("crashkernel", PASS, " ".join(" ".join(describe(found, ram, arch)).split())))
    return found


def _regions(sys, reservation, out):
    try:
        regions = sys.crash_regions()
    except KexecError as e:
        out.append(Check("crash-region", FAIL, e.message, e.hint or "is /proc mounted?"))
        return []
    if not regions:
        out.append(Check("crash-region", FAIL, "no \"Crash kernel\" range in /proc/iomem (nor in the device tree's "
                         "/chosen): the kernel reserved no memory", "look for \"crashkernel\" in dmesg: the reservation "
                         "failed, or crashkernel= is missing or wrong"))
        return []
    shown = ", ".join(f"{r.start:#x}-{r.last:#x} ({human(r.size)})" for r in regions)
    total = sum(r.size for r in regions)
    if reservation and reservation.high and reservation.low:
        below = [r for r in regions if r.last < 1 << 32]
        above = [r for r in regions if r.last >= 1 << 32]
        if not below or not above:
            out.append(Check("crash-region", FAIL if not below else WARN,
                             f"crashkernel=,high wants {human(reservation.size)} above 4G and {human(reservation.low)} "
                             f"below, but the crash ranges are {shown}",
                             "the capture kernel needs low memory for DMA: check dmesg for \"crashkernel low memory\""
                             if not below else "fine where all RAM is below 4G"))
            return regions
    if reservation and total != reservation.total and not (reservation.high and total == reservation.size):
        out.append(Check("crash-region", WARN, f"crash ranges {shown} total {human(total)}, but crashkernel= asks "
                         f"for {human(reservation.total)}", "look for \"crashkernel\" in dmesg"))
        return regions
    out.append(Check("crash-region", PASS, f"Crash kernel: {shown}"))
    return regions


def _capture_files(sys, release, setup, out):
    kernel = first_file(sys, setup.kernels)
    if kernel:
        out.append(Check("capture-kernel", PASS, f"{kernel} ({human(sys.file_size(kernel))})"))
    else:
        out.append(Check("capture-kernel", FAIL, f"no capture kernel for {release or 'this kernel'}: none of "
                         f"{', '.join(setup.kernels)}", "install the kernel image for uname -r"))
    initrd = first_file(sys, setup.initrds)
    if initrd:
        out.append(Check("capture-initrd", PASS, f"{initrd} ({human(sys.file_size(initrd))})"))
    elif (initrd := first_file(sys, setup.generic_initrds)):
        out.append(Check("capture-initrd", WARN, f"no kdump initrd ({', '.join(setup.initrds) or 'no kdump service'}); "
                         f"the first kernel's {initrd} would be used: it works where the real root saves the dump "
                         "(kdump-tools), but carries every module and needs more memory",
                         "build the kdump initrd: kdump-config load (Debian) or kdumpctl rebuild (Fedora)"))
    else:
        out.append(Check("capture-initrd", FAIL, f"no initrd for {release or 'this kernel'}: none of "
                         f"{', '.join(setup.initrds + setup.generic_initrds)}",
                         "build one: kdump-config load (Debian) or kdumpctl rebuild (Fedora)"))
    return kernel, initrd


def _size(sys, regions, kernel, initrd, setup, out):
    if not regions:
        return
    reserved = sum(r.size for r in regions)
    try:
        crash_size = sys.kexec_crash_size()
    except KexecError:
        crash_size = None
    if crash_size is not None and crash_size < max(r.size for r in regions):
        reserved -= max(r.size for r in regions) - crash_size
        if crash_size == 0:
            out.append(Check("crash-size", FAIL, "/sys/kernel/kexec_crash_size is 0: the reservation was given back "
                             "to the system", "reboot (a reservation cannot be grown back)"))
            return
    try:
        est = estimate(sys, kernel=kernel, initrd=initrd, append=setup.cmdline, reservation=reserved)
    except KexecError as e:
        out.append(Check("crash-size", WARN, f"cannot estimate the need: {e.message}", e.hint or "check the capture kernel"))
        return
    bare = sum(t.size for t in est.terms if t.name in ("kernel", "initrd"))
    said = (f"{human(reserved)} reserved" + (f" (kexec_crash_size {human(crash_size)})" if crash_size is not None else "")
            + f", estimated need {human(est.total)}")
    if reserved < bare:
        out.append(Check("crash-size", FAIL, f"{said}: not even the capture kernel and initrd fit",
                         f"boot with crashkernel={human(est.total)} or more"))
    elif reserved < est.total:
        out.append(Check("crash-size", WARN, f"{said}: the capture kernel may run out of memory",
                         f"boot with crashkernel={human(est.total)} (kdump-py crashkernel --estimate shows the terms)"))
    elif kernel is None:
        out.append(Check("crash-size", WARN, f"{said}, without the kernel's own size (no capture kernel found)",
                         "install the capture kernel, then run doctor again"))
    else:
        out.append(Check("crash-size", PASS, said))


def _loaded(sys, out):
    try:
        loaded = sys.kexec_crash_loaded()
    except KexecError as e:
        out.append(Check("crash-loaded", FAIL, e.message, e.hint or LOAD_HINT))
        return
    out.append(Check("crash-loaded", PASS, "a capture kernel is loaded (/sys/kernel/kexec_crash_loaded is 1)")
               if loaded else
               Check("crash-loaded", FAIL, "no capture kernel is loaded (/sys/kernel/kexec_crash_loaded is 0): "
                     "a crash now reboots without a dump", LOAD_HINT))


def _permitted(sys, setup, options, out):
    from kexec_py.preflight import lockdown_mode
    mode = {"s": "kexec_file_load (-s)", "c": "kexec_load (-c)",
            "a": "kexec_file_load, then kexec_load (-a, kexec-py's default)"}[setup.syscall]
    variable = "KDUMP_KEXEC_ARGS" if setup.service == "kdump-tools" else "KEXEC_ARGS"
    source = ("" if not setup.service else f" ({setup.service}'s {variable}={setup.kexec_args!r})"
              if setup.kexec_args else f" ({setup.service} sets no {variable})")
    disabled = sys.sysctl("kernel/kexec_load_disabled")
    lockdown = lockdown_mode(sys)
    try:
        loaded = sys.kexec_crash_loaded()
    except KexecError:
        loaded = False
    if disabled == "1":
        out.append(Check("kexec-permitted", WARN if loaded else FAIL,
                         "kernel.kexec_load_disabled is 1: every kexec load and unload is refused until reboot" +
                         (" (the loaded capture kernel stays, but cannot be reloaded on hotplug or update)"
                          if loaded else ""), "reboot without setting kernel.kexec_load_disabled before kdump loads"))
        return
    has_file = options is None or options.get("CONFIG_KEXEC_FILE") in ("y", "m")
    if lockdown:
        if setup.syscall == "c":
            out.append(Check("kexec-permitted", FAIL, f"locked down ({lockdown}): {mode} is refused{source}",
                             "load with -s and a signed kernel (KDUMP_KEXEC_ARGS=-s or KEXEC_ARGS=-s)"))
        elif not has_file:
            out.append(Check("kexec-permitted", FAIL, f"locked down ({lockdown}) and no CONFIG_KEXEC_FILE: no "
                             "syscall is left to load a capture kernel", "boot a kernel with CONFIG_KEXEC_FILE=y"))
        else:
            out.append(Check("kexec-permitted", PASS, f"locked down ({lockdown}): {mode}{source} works for a signed "
                             "kernel only"))
        return
    out.append(Check("kexec-permitted", PASS, f"not locked down, kexec_load_disabled {disabled or 'absent'}: "
                     f"{mode}{source} is allowed"))


def _sysctls(sys, out):
    sysrq = sys.sysctl("kernel/sysrq")
    if sysrq is None:
        out.append(Check("sysrq", WARN, "no /proc/sys/kernel/sysrq: the SysRq crash key (Alt-SysRq-c) cannot be "
                         "checked", "build with CONFIG_MAGIC_SYSRQ=y to test kdump with a keyboard crash"))
    elif sysrq == "0":
        out.append(Check("sysrq", WARN, "kernel.sysrq is 0: Alt-SysRq-c cannot trigger a test crash from the keyboard "
                         "(echo c > /proc/sysrq-trigger still works as root)", "sysctl kernel.sysrq=1 to test kdump "
                                                                               "from a console"))
    else:
        out.append(Check("sysrq", PASS, f"kernel.sysrq is {sysrq}"))
    oops = sys.sysctl("kernel/panic_on_oops")
    if oops == "1":
        out.append(Check("panic-on-oops", PASS, "kernel.panic_on_oops is 1: an oops panics and dumps"))
    else:
        out.append(Check("panic-on-oops", WARN, ("no /proc/sys/kernel/panic_on_oops" if oops is None else
                                                 "kernel.panic_on_oops is 0") +
                         ": an oops is logged, not dumped; only a panic starts the capture kernel",
                         "sysctl kernel.panic_on_oops=1 (kdump-config sets it when it loads)"))


def _capture_cmdline(setup, out):
    if setup.cmdline is None:
        out.append(Check("capture-cmdline", WARN, "the capture command line is unknown: no kdump service config "
                         "says what it is", "append irqpoll nr_cpus=1 reset_devices to the capture kernel's "
                                            "command line"))
        return
    words = setup.cmdline.split()
    missing = [p for p in ("irqpoll", "reset_devices") if p not in words]
    if not any(w in words for w in ("nr_cpus=1", "maxcpus=1")):
        missing.append("nr_cpus=1")
    if missing:
        out.append(Check("capture-cmdline", WARN, f"the capture command line ({setup.append_source}) lacks "
                         f"{' '.join(missing)}: {setup.cmdline!r}",
                         f"add {' '.join(missing)} (kdump.rst: the capture kernel should not bring up every CPU "
                         "or trust devices the crashed kernel left running)"))
    else:
        out.append(Check("capture-cmdline", PASS, f"{setup.append_source}: {setup.cmdline}"))


def _service(setup, out):
    if setup.service is None:
        out.append(Check("kdump-service", WARN, f"no kdump service: {setup.why_not}; a capture kernel loaded by hand "
                         "is gone after a reboot", "apt install kdump-tools, or dnf install kdump-utils"))
    elif not setup.enabled:
        out.append(Check("kdump-service", WARN, f"{setup.service} is installed but not enabled: {setup.why_not}",
                         "set USE_KDUMP=1 in /etc/default/kdump-tools" if setup.service == "kdump-tools"
                         else "systemctl enable --now kdump"))
    else:
        out.append(Check("kdump-service", PASS, f"{setup.service} is configured ({setup.config_path})"))


def _vmcoreinfo(sys, out):
    try:
        info = sys.vmcoreinfo()
    except KexecError as e:
        out.append(Check("vmcoreinfo", FAIL, e.message, e.hint or "check /sys/kernel/vmcoreinfo"))
        return
    out.append(Check("vmcoreinfo", PASS, f"/sys/kernel/vmcoreinfo at {info[0]:#x}") if info else
               Check("vmcoreinfo", FAIL, "no /sys/kernel/vmcoreinfo: the dump would have no VMCOREINFO, which "
                     "makedumpfile, crash and vmcore-dmesg need", "boot a kernel with CONFIG_CRASH_DUMP=y"))


def to_json(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
