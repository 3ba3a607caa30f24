"""What the user asked for, in kexec-tools' terms. No I/O, no decisions about the machine.

kexec-tools turns its action options into a handful of do-flags, each option
setting several of them as it is met on the command line, so order matters:
``-p -u`` unloads the crash kernel, ``-u -p`` unloads it and then tries to load
one. ``steps_from_options`` reproduces that, option by option.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace


class Syscall(enum.Enum):
    AUTO = "auto"                # -a: kexec_file_load, then kexec_load on ENOSYS/EINVAL/ENOEXEC/ENOTSUP
    FILE = "file"                # -s: kexec_file_load only
    LOAD = "load"                # -c: kexec_load only


@dataclass(frozen=True, slots=True)
class Steps:
    """kexec-tools' do_* flags: what main() does, in this order."""

    status: bool = False         # -S: report and stop
    unload: bool = False
    load: bool = True
    crash: bool = False          # -p seen (anywhere): the crash image, for -u and -S too
    shutdown: bool = True        # run `shutdown -r now` after loading (the default action)
    sync: bool = True
    ifdown: bool = False
    exec: bool = False
    syscall: Syscall = Syscall.AUTO
    load_given: bool = False     # -l seen: -S then reports the normal kexec image


# What each action option does to the steps when it is met (kexec-tools' main()).
_EFFECTS = {
    "force": dict(load=True, shutdown=False, sync=True, ifdown=True, exec=True),
    "load": dict(load=True, exec=False, shutdown=False, load_given=True),
    "load_panic": dict(load=True, exec=False, shutdown=False, sync=False, crash=True),
    "unload": dict(load=False, shutdown=False, sync=False, unload=True),
    "exec": dict(load=False, shutdown=False, sync=True, ifdown=True, exec=True),
    "status": dict(status=True),
    "kexec_file_syscall": dict(syscall=Syscall.FILE),
    "kexec_syscall": dict(syscall=Syscall.LOAD),
    "kexec_syscall_auto": dict(syscall=Syscall.AUTO),
}


def steps_from_options(seen: list[str], *, no_sync: bool = False, no_ifdown: bool = False) -> Steps:
    """Apply the action options in the order they were given."""
    steps = Steps()
    for name in seen:
        steps = replace(steps, **_EFFECTS[name])
    if no_sync:
        steps = replace(steps, sync=False)
    if no_ifdown:
        steps = replace(steps, ifdown=False)
    return steps


@dataclass(frozen=True, slots=True)
class Request:
    steps: Steps = field(default_factory=Steps)
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    reuse_cmdline: bool = False
    debug: bool = False
    dry_run: bool = False
    image_type: str | None = None
    no_checks: bool = False      # -i: purgatory skips the SHA-256 check
    mem_min: int = 0
    mem_max: int = (1 << 64) - 1
    entry: int | None = None     # --entry: override the entry point (kexec_load)
    hotplug: bool = False
    dtb: str | None = None
    no_cma: bool = False
    force_dtb: bool = False
    arch_options: object = None  # the target architecture's own options (e.g. arch.x86_options.X86Options)

    @property
    def crash(self) -> bool:
        return self.steps.crash

    @property
    def syscall(self) -> Syscall:
        return self.steps.syscall


def parse_number(text: str | None, option: str) -> int | None:
    """C strtoul(..., 0) syntax: 0x hex, 0 octal, else decimal."""
    if text is None:
        return None
    t = text.strip().lower()
    try:
        if t.startswith("0x"):
            return int(t, 16)
        if len(t) > 1 and t.startswith("0"):
            return int(t, 8)
        return int(t, 10)
    except ValueError:
        from kexec_py.errors import UsageError
        raise UsageError(f"{option}: bad number {text!r}", "use decimal or 0x hex") from None
