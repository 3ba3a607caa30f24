"""kexec-py's command line, defined once: the command's description, its one
argument and every option.

Everything else is derived from ``OPTIONS``: the fast parser (``kexec_py.cli``),
the typer command (``kexec_py.cli_typer``), ``--help`` (typer's rendering, stored
in ``kexec_py/help_text.py`` by ``scripts/gen-manpage``) and the OPTIONS section
of ``man/kexec-py.8`` (``kexec_py.manpage``). ``tests/test_cli_fast.py`` holds the
two parsers to the same result, ``tests/test_manpage.py`` the table, ``--help``
and the man page to the same text.

This module is imported on every run, ``-S`` and a kdump service's load included:
it imports nothing.

An option's fields:

name     the parameter's name: its key in the ``values`` dict the command runs with
names    its spellings on the command line, in the order --help shows them
kind     FLAG (takes no value), TEXT (a string), NUMBER (a decimal integer), or
         one typer handles itself: VERSION (a flag that prints and exits at once,
         whose value is None) and TYPER (typer's own --help: not a parameter of
         the command, listed for the man page; typer's completion options are
         turned off: kexec has none, and they would edit the user's shell start-up file)
help     the line --help and the man page show
metavar  what --help calls a TEXT or NUMBER option's value
panel    GENERIC, LOADER or X86: the group kexec-tools puts it in (typer's
         rich_help_panel)
action   for the options whose order matters (-l -p -u -e -f -S -s -c -a): the
         name recorded, in command-line order, in the actions list
hidden   kept out of --help and the man page (kexec-py's test options)
default  the value when the option is not given (FLAG: False; TEXT, NUMBER: None
         unless set)
note     what the option means to kexec-tools and to kexec-py, where that is not
         plain from the help line
"""

from __future__ import annotations

PROG = "kexec-py"

FLAG, TEXT, NUMBER, VERSION, TYPER = "flag", "text", "number", "version", "typer"
PARAMETER_KINDS = (FLAG, TEXT, NUMBER, VERSION)     # the kinds that are parameters of the command

GENERIC, LOADER, X86 = "Generic options", "Loader options", "x86 options"
PANELS = (GENERIC, LOADER, X86)             # the man page's subsections, in this order

DESCRIPTION = """Load a new kernel for a later reboot (-l), or a crash-capture kernel (-p).

kexec-py is a drop-in for kexec-tools' kexec: the same options with the same
meanings and exit codes. With a kernel and no action option it loads the kernel
and then runs `shutdown -r now`, like kexec. The default syscall mode is
upstream kexec-tools' -a: kexec_file_load first, kexec_load if the kernel
refuses that with ENOSYS, EINVAL, ENOEXEC or EOPNOTSUPP.

Exit status: 0 success; 1 a fatal error before any system call (no crash
memory reserved, a bad image, ...) and -S when a kernel is loaded; 253 -s
without kexec_file_load; 255 the kernel refused the call, or no kernel was
given.
"""


class Option:
    """One command-line option (see the module's docstring for the fields)."""

    __slots__ = ("name", "names", "kind", "help", "metavar", "panel", "action", "hidden", "default", "note",
                 "group")

    def __init__(self, name: str, names: tuple[str, ...], kind: str, help: str, *, metavar: str | None = None,
                 panel: str = GENERIC, action: str | None = None, hidden: bool = False,
                 default: object = None, note: str = "", group: str | None = None) -> None:
        self.name, self.names, self.kind, self.help = name, names, kind, help
        self.metavar, self.panel, self.action, self.hidden, self.note = metavar, panel, action, hidden, note
        # the architecture option group that reads it (kexec_py.arch.OPTION_GROUPS); None: generic
        self.group = "x86" if panel == X86 else group
        self.default = False if kind == FLAG else default

    def __repr__(self) -> str:
        return f"Option({self.name!r}, {self.names!r}, {self.kind!r})"


class Argument:
    """The command's positional argument."""

    __slots__ = ("name", "help")

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help


KERNEL = Argument("kernel", "The kernel image to load.")

OPTIONS: tuple[Option, ...] = (
    # -- generic options, as kexec-tools lists them ---------------------------------------------
    Option("force", ("-f", "--force"), FLAG, action="force",
           help="Load the kernel and reboot into it at once, without shutdown(8).",
           note="load, then -e: sync and interfaces down unless -y/-x, but no shutdown(8)"),
    Option("no_checks", ("-i", "--no-checks"), FLAG,
           help="Fast reboot: the purgatory skips its SHA-256 check (kexec_load only)."),
    Option("no_ifdown", ("-x", "--no-ifdown"), FLAG,
           help="Do not take network interfaces down before -e/-f."),
    Option("no_sync", ("-y", "--no-sync"), FLAG,
           help="Do not sync filesystems after loading or before -e/-f."),
    Option("load", ("-l", "--load"), FLAG, action="load",
           help="Load the new kernel into the current kernel."),
    Option("load_panic", ("-p", "--load-panic"), FLAG, action="load_panic",
           help="Load the new kernel for use on panic (kdump).",
           note="KEXEC_ON_CRASH, KEXEC_FILE_ON_CRASH; it also points -u and -S at the crash kernel"),
    Option("unload", ("-u", "--unload"), FLAG, action="unload",
           help="Unload the loaded kernel; with -p, the loaded crash kernel.",
           note="kexec_load with no segments, or kexec_file_load with KEXEC_FILE_UNLOAD"),
    Option("exec_", ("-e", "--exec"), FLAG, action="exec",
           help="Reboot into the loaded kernel now.",
           note="reboot(LINUX_REBOOT_CMD_KEXEC), after sync and ifdown unless -y/-x"),
    Option("image_type", ("-t", "--type"), TEXT, metavar="TYPE",
           help="Load the kernel as TYPE (e.g. bzImage64).",
           note="kexec-tools tries its loaders in turn; this names the one to use"),
    Option("mem_min", ("--mem-min",), TEXT, metavar="ADDR",
           help="Place segments at or above ADDR (kexec_load only).",
           note="a C number (0x hex, 0 octal); kexec_file_load lets the kernel place everything"),
    Option("mem_max", ("--mem-max",), TEXT, metavar="ADDR",
           help="Place segments at or below ADDR (kexec_load only).",
           note="a C number (0x hex, 0 octal)"),
    Option("reuseinitrd", ("--reuseinitrd",), FLAG,
           help="Reuse the initrd of the first boot (needs retain_initrd).",
           note="refused by kexec-py"),
    Option("print_ckr_size", ("--print-ckr-size",), FLAG,
           help="Print the size of the crash kernel region and exit.",
           note="in bytes: the highest Crash kernel range of /proc/iomem, 0 if none"),
    Option("load_preserve_context", ("--load-preserve-context",), FLAG,
           help="Load the kernel, preserving the current context (kexec jump).",
           note="KEXEC_PRESERVE_CONTEXT; refused by kexec-py"),
    Option("load_jump_back_helper", ("--load-jump-back-helper",), FLAG,
           help="Load a helper to jump back to the original kernel.",
           note="kexec jump; refused by kexec-py"),
    Option("entry", ("--entry",), TEXT, metavar="ADDR",
           help="Override the entry point of the loaded kernel.",
           note="a C number (0x hex, 0 octal)"),
    Option("file_syscall", ("-s", "--kexec-file-syscall"), FLAG, action="kexec_file_syscall",
           help="Use kexec_file_load only.",
           note="-s, -c and -a choose the system call: the last one given wins"),
    Option("load_syscall", ("-c", "--kexec-syscall"), FLAG, action="kexec_syscall",
           help="Use kexec_load only."),
    Option("auto_syscall", ("-a", "--kexec-syscall-auto"), FLAG, action="kexec_syscall_auto",
           help="Use kexec_file_load, then kexec_load if it is refused (the default).",
           note="upstream's default since 2.0.27; Debian 12's 2.0.25 defaults to -c"),
    Option("debug", ("-d", "--debug"), FLAG,
           help="Print the segments as they are loaded; ask the kernel for debug messages.",
           note="the kernel's messages: KEXEC_FILE_DEBUG, dropped on kernels that refuse it"),
    Option("status", ("-S", "--status"), FLAG, action="status",
           help="Exit 1 if a crash kernel (with -l: a kexec kernel) is loaded, 0 if not.",
           note="reads /sys/kernel/kexec_crash_loaded (-l: kexec_loaded)"),
    Option("hotplug", ("--hotplug",), FLAG,
           help="Let the kernel update the crash ELF header on CPU/memory hotplug.",
           note="x86: KEXEC_UPDATE_ELFCOREHDR, and room for the kernel to rewrite the header"),
    Option("no_cma", ("--no-cma",), FLAG,
           help="kexec_file_load: do not place segments in CMA.",
           note="KEXEC_FILE_NO_CMA"),
    Option("force_dtb", ("--force-dtb",), FLAG,
           help="kexec_file_load: carry the current DTB over (x86).",
           note="KEXEC_FILE_FORCE_DTB"),
    Option("exec_live_update", ("--exec-live-update",), FLAG,
           help="Xen only: execute a live update.",
           note="refused by kexec-py"),
    Option("load_live_update", ("--load-live-update",), FLAG,
           help="Xen only: load a live update.",
           note="refused by kexec-py"),
    Option("dry_run", ("--dry-run",), FLAG,
           help="Build the whole plan and print it; issue no system call (kexec-py only)."),
    # -- the kernel loaders' options --------------------------------------------------------------
    Option("append", ("--append", "--command-line"), TEXT, metavar="STRING", panel=LOADER,
           help="Add STRING to the new kernel's command line."),
    Option("reuse_cmdline", ("--reuse-cmdline",), FLAG, panel=LOADER,
           help="Start from the running kernel's command line (without BOOT_IMAGE=, and without "
                "crashkernel= for -p)."),
    Option("initrd", ("--initrd", "--ramdisk"), TEXT, metavar="FILE", panel=LOADER,
           help="Use FILE as the new kernel's initial ramdisk."),
    Option("dtb", ("--dtb",), TEXT, metavar="FILE", panel=LOADER,
           help="Pass FILE as the device tree.",
           note="arm64: instead of /sys/firmware/fdt"),
    Option("args_elf", ("--args-elf",), FLAG, panel=LOADER,
           help="ELF kernels: pass ELF boot notes.",
           note="refused by kexec-py"),
    Option("args_linux", ("--args-linux",), FLAG, panel=LOADER, group="x86",
           help="ELF kernels: pass Linux boot parameters.",
           note="kexec-py's default for a Linux vmlinux"),
    Option("args_none", ("--args-none",), FLAG, panel=LOADER, group="x86",
           help="ELF kernels: jump to the entry, pass nothing."),
    Option("image_size", ("--image-size",), TEXT, metavar="SIZE", panel=LOADER, group="arm",
           help="arm zImage: memory the kernel needs from its load address (default: from the image).",
           note="a C number; kexec-py reads the zImage's size tag and TEXT_OFFSET, so it is rarely needed"),
    Option("page_offset", ("--page-offset",), TEXT, metavar="ADDR", panel=LOADER, group="arm",
           help="arm: the kernel's PAGE_OFFSET, for the crash dump's virtual addresses.",
           note="a C number; default: _stext in /proc/kallsyms rounded down to 32 MiB"),
    Option("atags", ("--atags",), FLAG, panel=LOADER, group="arm",
           help="arm: pass ATAGs (the running kernel's /proc/atags, with the new command line and "
                "initrd) instead of a device tree.",
           note="for boards without a device tree; not with --dtb"),
    Option("module", ("--module",), TEXT, metavar="FILE", panel=LOADER,
           help="Multiboot: load FILE as a module.",
           note="refused by kexec-py (no multiboot loader)"),
    Option("real_mode", ("--real-mode",), FLAG, panel=LOADER,
           help="bzImage: enter the kernel in real mode.",
           note="refused by kexec-py"),
    Option("entry_32bit", ("--entry-32bit",), FLAG, panel=LOADER,
           help="bzImage: use the 32-bit entry point.",
           note="refused by kexec-py on x86_64"),
    # -- x86 options ------------------------------------------------------------------------------
    Option("reset_vga", ("--reset-vga",), FLAG, panel=X86,
           help="Reset the VGA adapter before entering the kernel.",
           note="accepted; kexec-py's purgatory has no VGA code, so it does nothing"),
    Option("serial", ("--serial",), TEXT, metavar="PORT", panel=X86,
           help="Purgatory console on ttyS0, ttyS1 or an I/O port (0x3f8)."),
    Option("serial_baud", ("--serial-baud",), NUMBER, metavar="BAUD", panel=X86,
           help="Program the purgatory's serial console to BAUD (8N1).",
           note="a divisor of 115200, from 9600"),
    Option("console_vga", ("--console-vga",), FLAG, panel=X86,
           help="Purgatory messages on the VGA console.",
           note="accepted; does nothing (no VGA console in the purgatory)"),
    Option("console_serial", ("--console-serial",), FLAG, panel=X86,
           help="Purgatory messages on the serial port."),
    Option("elf32_core_headers", ("--elf32-core-headers",), FLAG, panel=X86,
           help="Build a 32-bit ELF core header (i386).",
           note="the ELF class of the vmcore's header (default: the architecture's)"),
    Option("elf64_core_headers", ("--elf64-core-headers",), FLAG, panel=X86,
           help="Build a 64-bit ELF core header."),
    Option("pass_memmap_cmdline", ("--pass-memmap-cmdline",), FLAG, panel=X86,
           help="Also give the capture kernel its memory map as memmap= options."),
    Option("noefi", ("--noefi",), FLAG, panel=X86,
           help="Do not pass EFI information to the new kernel.",
           note="kexec_load passes none yet; the capture kernel gets acpi_rsdp= either way"),
    Option("reuse_video_type", ("--reuse-video-type",), FLAG, panel=X86,
           help="Keep the boot video type (kexec-py always hands on the boot screen_info).",
           note="what kexec-tools does with it, or without a framebuffer, kexec-py always does"),
    # -- kexec-py's own, for tests ------------------------------------------------------------------
    Option("root", ("--root",), TEXT, hidden=True, default="/",
           help="Read /proc and /sys under this directory.",
           note="tests point it at a captured snapshot"),
    Option("arch", ("--arch",), TEXT, hidden=True,
           help="Plan for this architecture.",
           note="default: the machine's"),
    # -- handled by typer ---------------------------------------------------------------------------
    Option("version", ("-v", "--version"), VERSION,
           help="Print the kexec-tools version whose interface kexec-py follows, and kexec-py's own.",
           note='"kexec-tools-compatible 2.0.32 (kexec-py 0.1.0)": scripts match kexec-tools\' first word and number'),
    Option("help", ("-h", "--help"), TYPER,
           help="Print the help and exit.",
           note="typer's --help line reads 'Show this message and exit.'"),
)

BY_NAME = {option.name: option for option in OPTIONS}
BY_SPELLING = {spelling: option for option in OPTIONS for spelling in option.names}
HELP_OPTION = BY_NAME["help"]

# the values the command runs with when nothing is given (kexec_py.cli._run's ``values``)
DEFAULTS = {KERNEL.name: None, **{o.name: o.default for o in OPTIONS if o.kind in PARAMETER_KINDS}}
