"""The kexec-py command line: kexec-tools' options and meanings, parsed with typer.

Only typer is imported to parse argv; the loader's modules are imported when an
action needs them, so ``kexec-py --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from kexec_py import __version__

HELP = """Load a new kernel for a later reboot (-l) or a crash-capture kernel (-p).

kexec-py is a drop-in for kexec-tools' kexec: same options, same meanings, same
exit codes. The default syscall mode is kexec-tools' upstream default (-a):
kexec_file_load first, kexec_load if the kernel refuses that with ENOSYS,
EINVAL, ENOEXEC or EOPNOTSUPP.
"""


def _version(value: bool):
    if value:
        print(f"kexec-py {__version__} (kexec-tools compatible)")
        raise typer.Exit(0)


def command(
    kernel: Optional[str] = typer.Argument(None, help="The kernel image to load.", show_default=False),
    load: bool = typer.Option(False, "-l", "--load", help="Load the new kernel into the current kernel."),
    load_panic: bool = typer.Option(False, "-p", "--load-panic", help="Load the new kernel for use on panic."),
    unload: bool = typer.Option(False, "-u", "--unload", help="Unload the current kexec target kernel. "
                                "With -p, unload the current crash kernel."),
    exec_: bool = typer.Option(False, "-e", "--exec", help="Execute a currently loaded kernel."),
    status: bool = typer.Option(False, "-S", "--status", help="Exit 1 if a crash kernel (with -l: a kexec "
                                "kernel) is loaded, 0 if not."),
    file_syscall: bool = typer.Option(False, "-s", "--kexec-file-syscall", help="Use kexec_file_load only."),
    load_syscall: bool = typer.Option(False, "-c", "--kexec-syscall", help="Use kexec_load only."),
    auto_syscall: bool = typer.Option(False, "-a", "--kexec-syscall-auto", help="Use kexec_file_load, falling "
                                      "back to kexec_load if it is refused (the default)."),
    initrd: Optional[str] = typer.Option(None, "--initrd", "--ramdisk", metavar="FILE",
                                         help="Use FILE as the kernel's initial ramdisk."),
    append: Optional[str] = typer.Option(None, "--append", "--command-line", metavar="STRING",
                                         help="Append STRING to the kernel command line."),
    reuse_cmdline: bool = typer.Option(False, "--reuse-cmdline", help="Use the command line of the running "
                                       "kernel (without BOOT_IMAGE=, and without crashkernel= for -p)."),
    image_type: Optional[str] = typer.Option(None, "-t", "--type", metavar="TYPE",
                                             help="Load the kernel as TYPE (e.g. bzImage64)."),
    no_checks: bool = typer.Option(False, "-i", "--no-checks", help="Fast reboot: the purgatory skips "
                                   "checking the loaded segments' SHA-256 (kexec_load only)."),
    debug: bool = typer.Option(False, "-d", "--debug", help="Print the segments as they are loaded, and "
                               "ask the kernel for its debug messages."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Build the whole load plan and print it; "
                                 "issue no system call."),
    root: str = typer.Option("/", "--root", hidden=True, help="Read /proc and /sys under this directory."),
    arch: Optional[str] = typer.Option(None, "--arch", hidden=True, help="Plan for this architecture."),
    version: bool = typer.Option(False, "-v", "--version", callback=_version, is_eager=True,
                                 help="Print the version of kexec-py."),
) -> None:
    from kexec_py.errors import KexecError
    from kexec_py.request import Action, Request, Syscall

    if status:
        action = Action.STATUS
    elif unload:
        action = Action.UNLOAD
    elif load_panic:
        action = Action.LOAD_PANIC
    elif exec_ and not (load or kernel):
        action = Action.EXEC
    else:
        action = Action.LOAD
    syscall = Syscall.LOAD if load_syscall else Syscall.FILE if file_syscall else Syscall.AUTO
    req = Request(action=action, kernel=kernel, initrd=initrd, append=append, reuse_cmdline=reuse_cmdline,
                  syscall=syscall, crash=load_panic or (status and not load), debug=debug, dry_run=dry_run,
                  image_type=image_type, no_checks=no_checks)
    try:
        code = _run(req, root=root, arch_name=arch)
    except KexecError as e:
        print(f"kexec-py: {e.one_line()}", file=sys.stderr)
        raise typer.Exit(e.exit_code)
    raise typer.Exit(code)


def _run(req, *, root: str, arch_name: str | None) -> int:
    from kexec_py import arch as arches
    from kexec_py.driver import Context, run
    from kexec_py.submit.backends import backend_for
    from kexec_py.system.view import SystemView

    the_arch = arches.get(arch_name) if arch_name else arches.host()
    return run(req, Context(arch=the_arch, sys=SystemView(root), backend=backend_for(the_arch.name)))


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.command(help=HELP)(command)
    app(args=argv, prog_name="kexec-py")
