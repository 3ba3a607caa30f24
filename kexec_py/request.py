"""What the user asked for, in kexec-tools' terms. No I/O, no decisions about the machine.

kexec-tools turns its action options into a handful of do-flags, each option
setting several of them as it is met on the command line, so order matters:
``-p -u`` unloads the crash kernel, ``-u -p`` unloads it and then tries to load
one. ``steps_from_options`` reproduces that, option by option.
"""

from __future__ import annotations

import enum

from kexec_py.record import Record, factory


class Syscall(enum.Enum):
    AUTO = "auto"                # -a: kexec_file_load, then kexec_load on ENOSYS/EINVAL/ENOEXEC/ENOTSUP
    FILE = "file"                # -s: kexec_file_load only
    LOAD = "load"                # -c: kexec_load only


class Steps(Record):
    """kexec-tools' do_* flags: what main() does, in this order."""

    _defaults = dict(
        status=False,            # -S: report and stop
        unload=False,
        load=True,
        crash=False,             # -p seen (anywhere): the crash image, for -u and -S too
        shutdown=True,           # run `shutdown -r now` after loading (the default action)
        sync=True,
        ifdown=False,
        exec=False,
        syscall=Syscall.AUTO,
        load_given=False,        # -l seen: -S then reports the normal kexec image
    )
    __slots__ = tuple(_defaults)


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
    steps = dict(Steps._defaults)
    for name in seen:
        steps.update(_EFFECTS[name])
    if no_sync:
        steps["sync"] = False
    if no_ifdown:
        steps["ifdown"] = False
    return Steps(**steps)


class Request(Record):
    _defaults = dict(
        steps=factory(Steps),
        kernel=None,
        initrd=None,
        append=None,
        reuse_cmdline=False,
        debug=False,
        dry_run=False,
        image_type=None,
        no_checks=False,         # -i: purgatory skips the SHA-256 check
        mem_min=0,
        mem_max=(1 << 64) - 1,
        entry=None,              # --entry: override the entry point (kexec_load)
        hotplug=False,
        dtb=None,
        no_cma=False,
        force_dtb=False,
        arch_options=None,       # the target architecture's own options (e.g. arch.x86_options.X86Options)
    )
    __slots__ = tuple(_defaults)

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
