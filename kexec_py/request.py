"""What the user asked for, in kexec-tools' terms. No I/O, no decisions about the machine."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    LOAD = "load"                # -l, and the default when a kernel is given
    LOAD_PANIC = "load-panic"    # -p
    UNLOAD = "unload"            # -u
    EXEC = "exec"                # -e
    STATUS = "status"            # -S


class Syscall(enum.Enum):
    AUTO = "auto"                # -a: kexec_file_load, then kexec_load on ENOSYS/EINVAL/ENOEXEC/ENOTSUP
    FILE = "file"                # -s: kexec_file_load only
    LOAD = "load"                # -c: kexec_load only


@dataclass(frozen=True, slots=True)
class Request:
    action: Action
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    reuse_cmdline: bool = False
    syscall: Syscall = Syscall.AUTO
    crash: bool = False          # -p given (also with -u / -S: the crash image)
    debug: bool = False
    dry_run: bool = False
    image_type: str | None = None
    no_checks: bool = False      # -i: purgatory skips the SHA-256 check
