"""kexec-py's options as a typer command: what --help shows, what the man page is
generated from, and the parser for every command line the fast one in cli.py leaves
to it (``kexec_py.cli.main`` decides). Importing this module imports typer."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from kexec_py import __version__
from kexec_py.cli import HELP

X86 = "x86 options"
GENERIC = "Options"
LOADER = "Loader options"


def _action(name: str):
    """A callback that records an action option in command-line order."""
    def record(ctx: typer.Context, value: bool) -> bool:
        if value:
            ctx.meta.setdefault("kexec_py_actions", []).append(name)
        return value
    return record


def _flag(*names: str, help: str, action: str | None = None, panel: str = GENERIC, hidden: bool = False):
    return typer.Option(False, *names, help=help, callback=_action(action) if action else None,
                        rich_help_panel=panel, hidden=hidden)


def _version(value: bool):
    if value:
        print(f"kexec-py {__version__} (kexec-tools compatible)")
        raise typer.Exit(0)


def command(
    ctx: typer.Context,
    kernel: Optional[str] = typer.Argument(None, help="The kernel image to load.", show_default=False),
    force: bool = _flag("-f", "--force", action="force",
                        help="Load the kernel and reboot into it at once, without shutdown(8)."),
    no_checks: bool = _flag("-i", "--no-checks",
                            help="Fast reboot: the purgatory skips its SHA-256 check (kexec_load only)."),
    no_ifdown: bool = _flag("-x", "--no-ifdown", help="Do not take network interfaces down before -e/-f."),
    no_sync: bool = _flag("-y", "--no-sync", help="Do not sync filesystems after loading or before -e/-f."),
    load: bool = _flag("-l", "--load", action="load", help="Load the new kernel into the current kernel."),
    load_panic: bool = _flag("-p", "--load-panic", action="load_panic",
                             help="Load the new kernel for use on panic (kdump)."),
    unload: bool = _flag("-u", "--unload", action="unload",
                         help="Unload the loaded kernel; with -p, the loaded crash kernel."),
    exec_: bool = _flag("-e", "--exec", action="exec", help="Reboot into the loaded kernel now."),
    image_type: Optional[str] = typer.Option(None, "-t", "--type", metavar="TYPE",
                                             help="Load the kernel as TYPE (e.g. bzImage64)."),
    mem_min: Optional[str] = typer.Option(None, "--mem-min", metavar="ADDR",
                                          help="Place segments at or above ADDR (kexec_load only)."),
    mem_max: Optional[str] = typer.Option(None, "--mem-max", metavar="ADDR",
                                          help="Place segments at or below ADDR (kexec_load only)."),
    reuseinitrd: bool = _flag("--reuseinitrd", help="Reuse the initrd of the first boot (needs retain_initrd)."),
    print_ckr_size: bool = _flag("--print-ckr-size", help="Print the size of the crash kernel region and exit."),
    load_preserve_context: bool = _flag("--load-preserve-context",
                                        help="Load the kernel, preserving the current context (kexec jump)."),
    load_jump_back_helper: bool = _flag("--load-jump-back-helper",
                                        help="Load a helper to jump back to the original kernel."),
    entry: Optional[str] = typer.Option(None, "--entry", metavar="ADDR",
                                        help="Override the entry point of the loaded kernel."),
    file_syscall: bool = _flag("-s", "--kexec-file-syscall", action="kexec_file_syscall",
                               help="Use kexec_file_load only."),
    load_syscall: bool = _flag("-c", "--kexec-syscall", action="kexec_syscall", help="Use kexec_load only."),
    auto_syscall: bool = _flag("-a", "--kexec-syscall-auto", action="kexec_syscall_auto",
                               help="Use kexec_file_load, then kexec_load if it is refused (the default)."),
    debug: bool = _flag("-d", "--debug", help="Print the segments as they are loaded; ask the kernel for "
                        "debug messages."),
    status: bool = _flag("-S", "--status", action="status",
                         help="Exit 1 if a crash kernel (with -l: a kexec kernel) is loaded, 0 if not."),
    hotplug: bool = _flag("--hotplug", help="Let the kernel update the crash ELF header on CPU/memory hotplug."),
    no_cma: bool = _flag("--no-cma", help="kexec_file_load: do not place segments in CMA."),
    force_dtb: bool = _flag("--force-dtb", help="kexec_file_load: carry the current DTB over (x86)."),
    exec_live_update: bool = _flag("--exec-live-update", help="Xen only: execute a live update."),
    load_live_update: bool = _flag("--load-live-update", help="Xen only: load a live update."),
    dry_run: bool = _flag("--dry-run", help="Build the whole plan and print it; issue no system call "
                          "(kexec-py only)."),
    append: Optional[str] = typer.Option(None, "--append", "--command-line", metavar="STRING",
                                         help="Add STRING to the new kernel's command line.",
                                         rich_help_panel=LOADER),
    reuse_cmdline: bool = _flag("--reuse-cmdline", panel=LOADER, help="Start from the running kernel's "
                                "command line (without BOOT_IMAGE=, and without crashkernel= for -p)."),
    initrd: Optional[str] = typer.Option(None, "--initrd", "--ramdisk", metavar="FILE",
                                         help="Use FILE as the new kernel's initial ramdisk.",
                                         rich_help_panel=LOADER),
    dtb: Optional[str] = typer.Option(None, "--dtb", metavar="FILE", rich_help_panel=LOADER,
                                      help="Pass FILE as the device tree."),
    args_elf: bool = _flag("--args-elf", panel=LOADER, help="ELF kernels: pass ELF boot notes."),
    args_linux: bool = _flag("--args-linux", panel=LOADER, help="ELF kernels: pass Linux boot parameters."),
    args_none: bool = _flag("--args-none", panel=LOADER, help="ELF kernels: jump to the entry, pass nothing."),
    module: Optional[str] = typer.Option(None, "--module", metavar="FILE", rich_help_panel=LOADER,
                                         help="Multiboot: load FILE as a module."),
    real_mode: bool = _flag("--real-mode", panel=LOADER, help="bzImage: enter the kernel in real mode."),
    entry_32bit: bool = _flag("--entry-32bit", panel=LOADER, help="bzImage: use the 32-bit entry point."),
    reset_vga: bool = _flag("--reset-vga", panel=X86, help="Reset the VGA adapter before entering the kernel."),
    serial: Optional[str] = typer.Option(None, "--serial", metavar="PORT", rich_help_panel=X86,
                                         help="Purgatory console on ttyS0, ttyS1 or an I/O port (0x3f8)."),
    serial_baud: Optional[int] = typer.Option(None, "--serial-baud", metavar="BAUD", rich_help_panel=X86,
                                              help="Baud rate of the purgatory's serial console."),
    console_vga: bool = _flag("--console-vga", panel=X86, help="Purgatory messages on the VGA console."),
    console_serial: bool = _flag("--console-serial", panel=X86, help="Purgatory messages on the serial port."),
    elf32_core_headers: bool = _flag("--elf32-core-headers", panel=X86,
                                     help="Build a 32-bit ELF core header (i386)."),
    elf64_core_headers: bool = _flag("--elf64-core-headers", panel=X86, help="Build a 64-bit ELF core header."),
    pass_memmap_cmdline: bool = _flag("--pass-memmap-cmdline", panel=X86,
                                      help="Also give the capture kernel its memory map as memmap= options."),
    noefi: bool = _flag("--noefi", panel=X86, help="Do not pass EFI information to the new kernel."),
    reuse_video_type: bool = _flag("--reuse-video-type", panel=X86, help="Reuse the boot video type."),
    root: str = typer.Option("/", "--root", hidden=True, help="Read /proc and /sys under this directory."),
    arch: Optional[str] = typer.Option(None, "--arch", hidden=True, help="Plan for this architecture."),
    version: bool = typer.Option(False, "-v", "--version", callback=_version, is_eager=True,
                                 help="Print the version of kexec-py."),
) -> None:
    from kexec_py.errors import KexecError
    values = dict(locals())
    try:
        from kexec_py.cli import _run
        code = _run(ctx.meta.get("kexec_py_actions", []), values)
    except KexecError as e:
        print(f"kexec-py: {e.one_line()}", file=sys.stderr)
        raise typer.Exit(e.exit_code)
    raise typer.Exit(code)


def app() -> typer.Typer:
    app = typer.Typer(add_completion=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.command(help=HELP)(command)
    return app


def main(argv: list[str] | None = None) -> None:
    app()(args=argv, prog_name="kexec-py")
