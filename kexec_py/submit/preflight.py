"""What the kernel checks before it looks at a kexec call at all, checked here first.

The kernel refuses every kexec_load and kexec_file_load, loads and unloads alike,
from a process without CAP_SYS_BOOT or once ``kexec_load_disabled`` is set (a
one-way switch); from Linux 6.7 it also counts loads down in
``kexec_load_limit_panic`` / ``kexec_load_limit_reboot`` (-1: no limit). A kernel
locked down (``/sys/kernel/security/lockdown``: integrity or confidentiality)
refuses kexec_load altogether and kexec_file_load for kernels it cannot verify.

None of these refusals costs the loaded crash kernel (the kernel makes them
before it frees it), but finding them here gives a message that names the cause
instead of a bare EPERM.
"""

from __future__ import annotations

import re

from kexec_py.errors import KexecError, NotPermitted

CAP_SYS_BOOT = 22
DISABLED = "/proc/sys/kernel/kexec_load_disabled"
LIMIT_PANIC = "/proc/sys/kernel/kexec_load_limit_panic"
LIMIT_REBOOT = "/proc/sys/kernel/kexec_load_limit_reboot"
LOCKDOWN = "/sys/kernel/security/lockdown"


def has_cap_sys_boot(status_path: str = "/proc/self/status") -> bool | None:
    """Whether this process may use kexec at all (None: cannot tell). This is the
    process's own state, so it is read from the real /proc, not the SystemView."""
    try:
        with open(status_path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"^CapEff:\s*([0-9a-fA-F]+)\s*$", text, re.M)
    return bool(int(m.group(1), 16) >> CAP_SYS_BOOT & 1) if m else None


def _read(sys, path: str) -> str | None:
    try:
        text = sys.read_optional(path)
    except KexecError:
        return None             # unreadable: the kernel will say, if it matters
    return text.strip() if text is not None else None


def check_permitted(sys, *, crash: bool, caps: bool | None = None) -> None:
    """Raise NotPermitted when the kernel would refuse any kexec load or unload."""
    caps = has_cap_sys_boot() if caps is None else caps
    if caps is False:
        raise NotPermitted("kexec needs the CAP_SYS_BOOT capability, which this process does not have",
                           "run as root")
    if _read(sys, DISABLED) == "1":
        raise NotPermitted(f"kexec is disabled on this system: {DISABLED} is 1",
                           "it cannot be set back to 0: reboot without setting kernel.kexec_load_disabled")
    limit = LIMIT_PANIC if crash else LIMIT_REBOOT
    if _read(sys, limit) == "0":
        raise NotPermitted(f"{limit} is 0: this kernel allows no more {'crash ' if crash else ''}kernel loads "
                           "or unloads", "the limit can only be lowered: reboot to load a kernel")


def check_exec_permitted(caps: bool | None = None) -> None:
    caps = has_cap_sys_boot() if caps is None else caps
    if caps is False:
        raise NotPermitted("rebooting into a kernel needs the CAP_SYS_BOOT capability, which this process "
                           "does not have", "run as root")


def lockdown_mode(sys) -> str | None:
    """"integrity" or "confidentiality" when the kernel is locked down, else None
    (also when securityfs is not mounted: the kernel's EPERM then tells)."""
    m = re.search(r"\[(\w+)\]", _read(sys, LOCKDOWN) or "")
    return m.group(1) if m and m.group(1) != "none" else None
