"""The one exception hierarchy of kexec_py.

Every error a user can cause or meet carries a message (what went wrong, naming the
file or setting involved), a hint (what to do about it) and the exit code the CLI
returns. The exit codes follow kexec-tools so that scripts keep working:

    1    a fatal error found before any syscall (bad image, bad option, bad /proc or
         /sys file, no space, ...): nothing was changed, a loaded crash kernel stays
    253  --kexec-file-syscall asked for, but kexec_file_load is not available (or does
         not take this kind of image)
    254  the crash region cannot be described to the capture kernel
    255  the kernel refused the load, unload or exec (a syscall failed), or would
         refuse any kexec call from us (no CAP_SYS_BOOT, kexec_load_disabled, load
         limit used up, lockdown), which kexec-py finds out before the call

Anything that is not a KexecError reaching the CLI is a bug in kexec_py.
"""

from __future__ import annotations

EXIT_FATAL = 1
EXIT_NO_FILE_SYSCALL = 253
EXIT_NO_CRASH_KERNEL = 254
EXIT_SYSCALL_FAILED = 255


class KexecError(Exception):
    """Base class: a problem to report to the user in one line."""

    exit_code = EXIT_FATAL
    default_hint = ""       # the fix to give when the raiser gave none

    def __init__(self, message: str, hint: str = "", *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.one_line()

    def amended(self, *, message: str | None = None, hint: str | None = None,
                exit_code: int | None = None) -> "KexecError":
        """A new error of the same kind with more said (raise it ``from None``): the path
        of the file it is about, what it cost. The original is left as it was raised."""
        # copy.copy's way for an exception (made from its args, then its __dict__), without
        # importing copy (and weakref with it) on the way to every error message
        new = type(self).__new__(type(self), *self.args)
        new.__dict__.update(self.__dict__)
        new.args = (message if message is not None else self.message,)
        new.message = new.args[0]
        new.hint = hint if hint is not None else self.hint
        new.exit_code = exit_code if exit_code is not None else self.exit_code
        return new

    def one_line(self) -> str:
        text = self.message
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split())


class UsageError(KexecError):
    """The command line asks for something inconsistent or incomplete."""


class ImageError(KexecError):
    """A kernel or initrd file cannot be used."""


class ImageNotFound(ImageError, FileNotFoundError):
    pass


class UnknownFormat(ImageError):
    """The file is none of the formats this architecture loads."""


class CorruptImage(ImageError):
    """The file looks like a known format but its contents are inconsistent."""

    default_hint = "the file is damaged or truncated: re-copy it"


class UnsupportedImage(ImageError):
    """A valid image that this loader cannot boot (too old protocol, wrong arch...)."""


class SystemStateError(KexecError):
    """The running system is not in a state that allows the load."""


class NoCrashMemory(SystemStateError):
    """No "Crash kernel" region: kexec-tools dies (exit 1) before doing anything else.
    (Its 254 comes only from a crash region too fragmented to hold a memory map.)"""


class SnapshotError(SystemStateError):
    """A file of the system snapshot (/proc, /sys) is missing or unreadable."""

    default_hint = "check that /proc and /sys are mounted, and run as root"


class NotPermitted(SystemStateError):
    """The kernel would refuse any kexec call from us: no CAP_SYS_BOOT,
    kexec_load_disabled set, the load limit used up, or (for kexec_load) lockdown.
    Found before the call; the exit code is the one kexec-tools gets when the
    kernel refuses."""

    exit_code = EXIT_SYSCALL_FAILED


class PlacementError(KexecError):
    """The segments do not fit where they must go."""

    default_hint = "see the segments with --dry-run -d"


class NoSpace(PlacementError):
    def __init__(self, message: str, hint: str = "", *, what: str = ""):
        super().__init__(message, hint)
        self.what = what    # the segment that found no room ("kernel", "initrd", ...)


class SubmitError(KexecError):
    """The kernel refused a kexec syscall."""

    exit_code = EXIT_SYSCALL_FAILED

    def __init__(self, message: str, hint: str = "", *, errno: int = 0, exit_code: int | None = None):
        super().__init__(message, hint, exit_code=exit_code)
        self.errno = errno


class FileSyscallUnavailable(SubmitError):
    """kexec_file_load does not exist here (ENOSYS) or refuses this kind of image.
    ``userspace`` is True when kexec-py knew that without asking the kernel."""

    exit_code = EXIT_NO_FILE_SYSCALL

    def __init__(self, message: str, hint: str = "", *, errno: int = 0, userspace: bool = False):
        super().__init__(message, hint, errno=errno)
        self.userspace = userspace
