"""The ``kdump-py`` command: ``doctor``, ``crashkernel`` and ``dmesg`` (typer subcommands).

A separate command from ``kexec-py``, which stays a pure drop-in for kexec-tools'
``kexec``; nothing here is imported on kexec-py's load path.
"""

from __future__ import annotations

import json
import sys as _sys
from typing import Optional

import typer

from kexec_py.errors import KexecError

PROG = "kdump-py"
ROOT_HELP = "Read the system under this directory (a snapshot) instead of /."

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                  help="kdump beyond kexec: is this machine ready to dump, and how much memory to reserve.")


def _view(root: str):
    from pathlib import Path

    from kexec_py.system.view import SystemView
    if not Path(root).is_dir():
        _fail(KexecError(f"--root {root}: no such directory", "give the directory a snapshot was taken into, or /"))
    return SystemView(root)


def _fail(e: KexecError) -> None:
    print(f"{PROG}: {e.one_line()}", file=_sys.stderr)
    raise typer.Exit(e.exit_code)


DOCTOR_HELP = """Check everything that decides whether a crash here produces a readable dump.

\b
Each check prints pass, warn or fail, what it found and what to do:
the kernel's config (KEXEC, KEXEC_FILE, CRASH_DUMP, PROC_VMCORE, RELOCATABLE,
KALLSYMS, signatures, lockdown), crashkernel= on /proc/cmdline and the "Crash
kernel" ranges it gave (both for ,high), their size against the estimate of
`kdump-py crashkernel --estimate`, kexec_crash_loaded and kexec_crash_size,
lockdown and kexec_load_disabled against the syscall kdump will use, sysrq and
panic_on_oops, the capture command line (irqpoll, nr_cpus=1, reset_devices),
the capture kernel and initrd for uname -r, and Debian's kdump-tools or
Fedora's kdumpctl.

\b
Exit status: 0 ready, 1 not ready (a check failed), 2 ready with warnings.
--json prints a JSON array of {"check", "status", "message", "hint"} objects.
"""


@app.command(help=DOCTOR_HELP)
def doctor(root: str = typer.Option("/", "--root", metavar="PATH", help=ROOT_HELP),
           json_output: bool = typer.Option(False, "--json", help="Print the checks as JSON.")) -> None:
    from kexec_py.kdump.doctor import run, to_json, verdict
    sys = _view(root)
    try:
        checks = run(sys)
    except KexecError as e:
        _fail(e)
    code, summary = verdict(checks)
    if json_output:
        print(json.dumps(to_json(checks), indent=2))
    else:
        width = max(len(c.check) for c in checks)
        for c in checks:
            print(f"{c.status.upper():4}  {c.check:{width}}  {c.message}")
            if c.hint and c.status != "pass":
                print(f"{'':4}  {'':{width}}  -> {c.hint}")
        print(summary)
    raise typer.Exit(code)


def _estimate_help() -> str:
    from kexec_py.kdump import estimate
    formula = estimate.__doc__.split("\n\n", 1)[1]
    return ("Evaluate a crashkernel= value as the kernel does, or estimate this machine's need.\n\n"
            "\b\nkdump-py crashkernel VALUE [--ram SIZE] [--arch ARCH]\n"
            "  what the kernel reserves for crashkernel=VALUE with SIZE of RAM (default: this\n"
            "  machine's): size[@offset], SIZE,high (with 'SIZE,high SIZE,low' as one value),\n"
            "  start-[end]:size[,...][@offset]; K, M, G, T, P, E suffixes; 0x hex, 0 octal.\n"
            "  Exit 1 with the kernel's own complaint when it would reserve nothing.\n\n"
            "\b\nkdump-py crashkernel --estimate [--root PATH]\n"
            "  the memory this machine's capture kernel needs:\n\n"
            + "\n\n".join("\b\n" + part for part in formula.strip().split("\n\n")) + "\n")


@app.command(help=_estimate_help())
def crashkernel(value: Optional[str] = typer.Argument(None, metavar="[VALUE]", show_default=False,
                                                      help="A crashkernel= value, e.g. 1G-4G:256M,4G-:512M"),
                ram: Optional[str] = typer.Option(None, "--ram", metavar="SIZE",
                                                  help="The machine's RAM, e.g. 6G (default: read from --root)."),
                arch: Optional[str] = typer.Option(None, "--arch", metavar="ARCH",
                                                   help="x86_64, i386, arm64, ppc64le, riscv64, ... "
                                                        "(default: the machine's)."),
                do_estimate: bool = typer.Option(False, "--estimate", help="Estimate this machine's need."),
                root: str = typer.Option("/", "--root", metavar="PATH", help=ROOT_HELP),
                json_output: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    sys = _view(root)
    try:
        if do_estimate:
            if value is not None:
                raise KexecError("give either a VALUE or --estimate, not both")
            raise typer.Exit(_print_estimate(sys, json_output))
        if value is None:
            raise KexecError("no VALUE: give a crashkernel= value, or --estimate",
                             "e.g. kdump-py crashkernel 1G-4G:256M,4G-:512M --ram 6G")
        raise typer.Exit(_print_evaluation(sys, value, ram, arch, json_output))
    except KexecError as e:
        _fail(e)


def _print_evaluation(sys, value: str, ram_text: str | None, arch: str | None, json_output: bool) -> int:
    from kexec_py.kdump.crashkernel import CrashkernelError, describe, evaluate, parse_size
    if ram_text is not None:
        ram = parse_size(ram_text, what="--ram")
    else:
        ram = sys.ram_size()
        if not ram:
            raise KexecError(f"cannot tell the RAM of {sys.root} (no System RAM in /proc/iomem)", "give --ram SIZE")
    arch = arch or sys.machine() or "x86_64"
    try:
        found = evaluate(value, ram, arch)
    except CrashkernelError as e:
        if json_output:
            print(json.dumps({"value": value, "ram": ram, "arch": arch, "reserved": False, "error": e.message,
                              "kernel_says": e.kernel_says}, indent=2))
            return 1
        raise
    if json_output:
        print(json.dumps({"value": value, "ram": ram, "arch": arch, "reserved": True, "size": found.size,
                          "offset": found.base, "high": found.high, "low": found.low, "cma": found.cma,
                          "syntax": found.syntax, "matched": found.matched or None}, indent=2))
    else:
        print("\n".join(describe(found, ram, arch)))
    return 0


def _print_estimate(sys, json_output: bool) -> int:
    from kexec_py.kdump.crashkernel import CrashkernelError, evaluate, human
    from kexec_py.kdump.estimate import KDUMPCTL_DEFAULTS, ROUND, estimate
    from kexec_py.kdump.setup import first_file, read_setup
    release = sys.kernel_release()
    arch = sys.machine() or "x86_64"
    setup = read_setup(sys, release)
    kernel = first_file(sys, setup.kernels)
    initrd = first_file(sys, setup.initrds) or first_file(sys, setup.generic_initrds)
    ram = sys.ram_size()
    if not ram:
        raise KexecError(f"cannot tell the RAM of {sys.root} (no System RAM in /proc/iomem)", "is /proc mounted?")
    est = estimate(sys, kernel=kernel, initrd=initrd, append=setup.cmdline)
    try:
        reserved = sum(r.size for r in sys.crash_regions())
    except KexecError:
        reserved = None
    kdumpctl = KDUMPCTL_DEFAULTS.get(arch)
    kdumpctl_size = None
    if kdumpctl and ram:
        try:
            kdumpctl_size = evaluate(kdumpctl, ram, arch).size
        except CrashkernelError:
            kdumpctl_size = 0
    if json_output:
        print(json.dumps({"release": release, "arch": arch, "ram": ram,
                          "terms": [{"name": t.name, "size": t.size, "why": t.why} for t in est.terms],
                          "total": est.total, "recommended": f"crashkernel={human(est.total)}",
                          "reserved": reserved, "kdumpctl_default": kdumpctl, "kdumpctl_default_size": kdumpctl_size,
                          "notes": est.notes}, indent=2))
        return 0
    print(f"capture kernel need for {release or 'this kernel'} ({arch}, {human(ram)} of RAM):")
    for t in est.terms:
        print(f"  {t.name:8} {human(t.size) if t.size % (1 << 20) == 0 else f'{t.size / (1 << 20):.1f}M':>8}  {t.why}")
    print(f"  {'total':8} {human(est.total):>8}  rounded up to {human(ROUND)}")
    for note in est.notes:
        print(f"  note: {note}")
    print(f"recommended: crashkernel={human(est.total)}")
    if reserved is not None:
        print(f"reserved now: {human(reserved) if reserved else 'nothing'}"
              + ("" if not reserved else " (enough)" if reserved >= est.total else " (too little)"))
    if kdumpctl:
        print(f"kdumpctl's default for {arch}: crashkernel={kdumpctl}, "
              f"{human(kdumpctl_size) if kdumpctl_size else 'nothing'} at this RAM")
    return 0


@app.command(help="Print the crashed kernel's log from its vmcore (/proc/vmcore in the capture kernel, or a "
                  "saved copy), line for line as kexec-tools' vmcore-dmesg prints it; pure Python, reading "
                  "VMCOREINFO (the lockless printk ring of 5.10+, and the older log_buf).")
def dmesg(vmcore: str = typer.Argument(..., metavar="VMCORE", help="An ELF vmcore: /proc/vmcore, or a saved copy."),
          by_header: bool = typer.Option(False, "--by-header",
                                         help="Translate addresses through the program headers' p_vaddr, as "
                                              "vmcore-dmesg does, instead of through VMCOREINFO.")) -> None:
    from kexec_py.vmcore.dmesg import main as dmesg_main
    raise typer.Exit(dmesg_main([vmcore, *(["--by-header"] if by_header else [])], prog=f"{PROG} dmesg"))


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name=PROG)
