"""The kexec-py command line: kexec-tools' options and meanings.

The options are defined once, in ``kexec_py.options``. Two parsers are derived
from that table. The command lines a service runs (``-p -c KERNEL --initrd=FILE
...``, ``-S``) are parsed here, by a small parser that gives exactly what typer
would (a test holds the two together) without importing typer and what it pulls
in, which costs a tenth of a second. Anything unusual in a command line leaves it
to the typer command (``kexec_py.cli_typer``), imported only then, which parses
it into the same actions and values and hands them back to ``_run_reporting``.
``--help`` alone prints the text typer renders at 80 columns, kept in
``kexec_py/help_text.py`` (``scripts/gen-manpage`` writes it, a test checks it).
Action options (-l -p -u -e -f -S -s -c -a) are recorded in the order they are
given, because kexec-tools gives that order a meaning (``-p -u`` vs ``-u -p``).
The loader's modules are imported only when an action needs them.
"""

from __future__ import annotations

import os
import sys

from kexec_py.options import BY_SPELLING, DEFAULTS, FLAG, HELP_OPTION, KERNEL, NUMBER, PROG, TEXT

_PARSED_HERE = (FLAG, TEXT, NUMBER)         # -v and typer's own options are left to typer


def fast_parse(args: list[str]) -> tuple[list[str], dict] | None:
    """(actions in order, parameter values) as typer would give them, or None for any
    command line this parser leaves to typer: help, version, an unknown
    or repeated option, joined short options (-pc), a value that looks like an option,
    more than one kernel, anything typer would refuse."""
    values = dict(DEFAULTS)
    seen: set[str] = set()
    actions: list[str] = []
    kernel_seen = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not _plain(arg) or arg in ("", "-", "--"):
            return None
        if not arg.startswith("-"):
            if kernel_seen:
                return None
            values[KERNEL.name], kernel_seen = arg, True
            continue
        if arg.startswith("--"):
            opt, eq, value = arg.partition("=")
        elif len(arg) == 2:
            opt, eq, value = arg, "", ""
        else:
            return None                     # -pc, -tbzImage
        option = BY_SPELLING.get(opt)
        if option is None or option.kind not in _PARSED_HERE or option.name in seen:
            return None
        seen.add(option.name)
        name, kind = option.name, option.kind
        if kind == FLAG:
            if eq:
                return None
            values[name] = True
            if option.action:
                actions.append(option.action)
            continue
        if not eq:
            if i == len(args):
                return None
            value = args[i]
            i += 1
        if value.startswith("-") or not _plain(value):
            return None
        if kind == NUMBER:
            if not (value.isascii() and value.isdigit() and (value == "0" or value[0] != "0") and len(value) < 18):
                return None
            values[name] = int(value)
        else:
            values[name] = value
    return actions, values


def _plain(text: str) -> bool:
    """Text typer takes as it is (no lone surrogates from undecodable argv bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _run(actions: list[str], v: dict) -> int:
    """Carry out the parsed command line, with the cyclic garbage collector paused: a load on a
    machine with 100,000 memory ranges makes a few hundred thousand small objects and no cycles
    worth collecting, and the collector's passes over them made the time grow faster than the
    number of ranges."""
    import gc
    paused = gc.isenabled()
    gc.disable()
    try:
        return _run_command(actions, v)
    finally:
        if paused:
            gc.enable()


def _run_command(actions: list[str], v: dict) -> int:
    _hash_initrd_early(actions, v)
    from kexec_py import arch as arches
    from kexec_py.cli_request import build_request, refuse_unsupported
    from kexec_py.driver import Context, print_crash_region_size, run
    from kexec_py.system.view import SystemView

    sysview = SystemView(v["root"])
    if v["print_ckr_size"]:
        return print_crash_region_size(sysview)
    refuse_unsupported(v)
    name = v["arch"] or arches.host_name()
    arches.check(name, dry_run=bool(v["dry_run"]))
    req = build_request(actions, v, arch=name)
    if req.steps.status:
        # -S reads one /sys file: neither the architecture's planner nor a backend is imported
        return run(req, Context(arch=None, sys=sysview, backend=None))
    from kexec_py.submit.backends import backend_for
    return run(req, Context(arch=arches.get(name, dry_run=req.dry_run), sys=sysview,
                            backend=backend_for(name, dry_run=req.dry_run)))


def _hash_initrd_early(actions: list[str], v: dict) -> None:
    """A kexec_load of a kernel with an initrd (-c, or an architecture without
    kexec_file_load) hashes the initrd for the purgatory: start that on another CPU now,
    while the loader's modules are imported. Anything odd is left for the load to report."""
    from kexec_py.request import Syscall, steps_from_options
    steps = steps_from_options(actions)
    if not (v["initrd"] and v["kernel"] and steps.load and not steps.status):
        return
    from kexec_py import arch as arches
    entry = arches.REGISTRY.get(v["arch"] or arches.host_name())
    if (steps.syscall is not Syscall.LOAD and (entry is None or entry.file_syscall) and not v["dtb"]
            and not (steps.syscall is Syscall.AUTO and _kernel_lacks_file_syscall(v))):
        return                          # kexec_file_load first: the kernel reads the initrd itself
    import stat
    try:
        if not stat.S_ISREG(os.stat(v["initrd"]).st_mode):
            return                      # a FIFO would block the open; the load refuses it anyway
        from kexec_py.image.open import map_file
        from kexec_py.plan.purgatory import start_prehash
        start_prehash(map_file(v["initrd"]))
    except (OSError, ValueError):
        pass


def _kernel_lacks_file_syscall(v: dict) -> bool:
    """Whether the default -a will surely fall back to kexec_load: the running kernel's
    configuration says it was built without CONFIG_KEXEC_FILE (Debian's arm64 and ppc64el
    kernels). -a still tries kexec_file_load first, as kexec-tools does: the kernel decides."""
    from kexec_py.errors import KexecError
    from kexec_py.system.view import SystemView
    try:
        return SystemView(v["root"]).lacks_kernel_option("CONFIG_KEXEC_FILE")
    except (OSError, ValueError, KexecError):
        return False


def _fast_help(args: list[str]) -> str | None:
    """The --help text, when typer would render exactly the stored one (80 columns or more)."""
    if len(args) != 1 or args[0] not in HELP_OPTION.names:
        return None
    if _terminal_columns() < 80:
        return None
    from kexec_py.help_text import HELP_TEXT
    return HELP_TEXT


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns, by its rules ($COLUMNS, then stdout's terminal, then
    80), without importing shutil (which imports zlib, bz2 and lzma: 2 ms of a 20 ms --help)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    text = _fast_help(args)
    if text is not None:
        sys.exit(_standalone(lambda: print(text) or 0))
    parsed = fast_parse(args)
    if parsed is None:
        from kexec_py.cli_typer import main as typer_main
        typer_main(args, run=_run_reporting)
        return
    actions, values = parsed
    sys.exit(_standalone(lambda: _run_reporting(actions, values)))


def _run_reporting(actions: list[str], values: dict) -> int:
    from kexec_py.errors import KexecError
    try:
        return _run(actions, values)
    except KexecError as e:
        print(f"kexec-py: {e.one_line()}", file=sys.stderr)
        return e.exit_code


def _standalone(call) -> int:
    """What typer's standalone mode does around a command: exit 130 on ^C, 1 on a
    closed pipe or end of input."""
    import errno
    try:
        return call()
    except KeyboardInterrupt:
        return 130
    except EOFError:
        print(file=sys.stderr)
        print("Aborted!", file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise
        sys.stdout = _Pacified(sys.stdout)
        sys.stderr = _Pacified(sys.stderr)
        return 1


class _Pacified:
    """A stream whose flush ignores a closed pipe, so the interpreter exits quietly."""

    def __init__(self, stream):
        self._stream = stream

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)

