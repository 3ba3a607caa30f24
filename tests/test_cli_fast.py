"""The fast command-line parser (kexec_py.cli.fast_parse) must give exactly what typer gives.

kexec-py parses ordinary command lines itself, so that a kdump service start does
not pay for importing typer; typer still parses everything else. Wherever the fast
parser answers, its actions (in order) and parameter values must equal typer's; where
typer refuses a command line, the fast parser must leave it to typer.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st

from kexec_py import cli
from kexec_py.cli_typer import app
from tests.test_manpage import KEXEC_TOOLS_OPTIONS

COMMAND = typer.main.get_command(app())


def typer_parse(argv: list[str]):
    """(actions, values) as the typer command sees them, or None if typer refuses argv."""
    try:
        ctx = COMMAND.make_context("kexec-py", list(argv))
    except (click.UsageError, click.exceptions.Exit):
        return None
    values = {k: v for k, v in ctx.params.items() if k not in ("install_completion", "show_completion")}
    return ctx.meta.get("kexec_py_actions", []), values


def test_the_table_is_the_typer_command():
    """Every parameter of the typer command, with its option names, kind and default."""
    table = {}
    for p in COMMAND.params:
        if p.name in ("install_completion", "show_completion", "version", "kernel"):
            continue
        kind = cli.FLAG if p.is_flag else cli.NUMBER if p.name == "serial_baud" else cli.TEXT
        table[p.name] = (tuple(p.opts) + tuple(p.secondary_opts), kind)
        assert cli.DEFAULTS[p.name] == p.default, p.name
    assert table == {name: (opts, kind) for name, (opts, kind, _) in cli.OPTIONS.items()}
    assert set(cli.DEFAULTS) == {p.name for p in COMMAND.params} - {"install_completion", "show_completion"}


SERVICE_LINES = [
    ["-p", "/boot/vmlinuz", "--initrd=/boot/initrd.img", "--append=root=/dev/sda1 irqpoll nr_cpus=1"],
    ["-p", "-c", "/boot/vmlinuz", "--initrd", "/boot/initrd.img", "--append", "console=ttyS0"],
    ["--load-panic", "--kexec-file-syscall", "/boot/vmlinuz", "--reuse-cmdline", "--command-line=quiet"],
    ["-l", "/boot/vmlinuz", "--ramdisk=/boot/initrd", "--reuse-cmdline"],
    ["-S"], ["-S", "-p"], ["-l", "-S"], ["-u", "-p"], ["-p", "-u"], ["-e"], ["-f", "-x", "-y"],
    ["-p", "-d", "--dry-run", "/boot/vmlinuz", "--serial-baud", "115200", "--serial=ttyS1", "--console-serial"],
    ["--print-ckr-size"], ["-p", "-c", "--root", "/tmp/x", "--arch", "arm64", "/k", "--dtb=/x.dtb"],
    ["/boot/vmlinuz", "-t", "bzImage64", "--mem-min", "0x1000000", "--mem-max=0x7fffffff", "--entry=0x100000"],
    ["-p", "/boot/vmlinuz", "--append="],
]


@pytest.mark.parametrize("argv", SERVICE_LINES, ids=" ".join)
def test_service_command_lines_take_the_fast_path_and_agree(argv):
    fast = cli.fast_parse(argv)
    assert fast is not None, "an ordinary command line fell back to typer"
    assert fast == typer_parse(argv)


def test_every_kexec_tools_option_agrees_in_every_spelling():
    for opt, value in KEXEC_TOOLS_OPTIONS.items():
        if opt in ("-h", "--help", "-v", "--version"):
            continue
        forms = [[opt]] if value is None else [[opt, value]] + ([[f"{opt}={value}"]] if opt.startswith("--") else [])
        for argv in forms:
            fast = cli.fast_parse([*argv, "/boot/vmlinuz"])
            assert fast is not None, argv
            assert fast == typer_parse([*argv, "/boot/vmlinuz"]), argv


LEFT_TO_TYPER = [
    ["--help"], ["-h"], ["-v"], ["--version"], ["-p", "--help"], ["-pc", "/k"], ["-tbzImage64", "/k"],
    ["/k", "/k2"], ["--bogus"], ["-p", "-p"], ["--initrd"], ["--append", "-x"], ["--dry-run=1"],
    ["--serial-baud", "fast"], ["--serial-baud", "0115200"], ["--", "/k"], ["-"], [""],
    ["--install-completion"], ["--initrd=a", "--initrd=b"], ["/k\udcff"],
]


@pytest.mark.parametrize("argv", LEFT_TO_TYPER, ids=repr)
def test_unusual_command_lines_are_left_to_typer(argv):
    assert cli.fast_parse(argv) is None


WORDS = sorted({o for o in KEXEC_TOOLS_OPTIONS if o not in ("-h", "--help", "-v", "--version")}
               | {"--root", "--arch", "--dry-run", "/boot/vmlinuz", "/k2", "x86_64", "0x1000", "115200", "0",
                  "ttyS0", "", "-", "--", "-pc", "-x5", "--append=", "--initrd=/i", "--serial-baud=9600",
                  "--serial-baud=07", "--bogus", "a=b", "-1"})


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_wherever_the_fast_parser_answers_typer_agrees(argv):
    fast = cli.fast_parse(argv)
    if fast is not None:
        assert fast == typer_parse(argv)


def test_completion_requests_are_left_to_typer(monkeypatch):
    monkeypatch.setenv("_KEXEC_PY_COMPLETE", "bash_source")
    assert cli.fast_parse(["-S"]) is None


def test_fast_help_is_typers_help():
    """What `kexec-py --help` prints (the stored text) is what typer prints, at 80 and 200 columns;
    a narrow terminal gets typer's own rendering."""
    def run(args, columns, module="kexec_py"):
        env = {**os.environ, "COLUMNS": str(columns)}
        return subprocess.run([sys.executable, "-m", module, *args] if module == "kexec_py" else
                              [sys.executable, "-c", "from kexec_py.cli_typer import main; main(['--help'])"],
                              capture_output=True, text=True, env=env, check=True).stdout
    for columns in (80, 200):
        typer_text = run([], columns, module="typer")
        assert run(["--help"], columns) == typer_text
        assert run(["-h"], columns) == typer_text
    assert run(["--help"], 60) == run([], 60, module="typer") != run(["--help"], 80)


def test_initrd_hashing_starts_early_only_for_kexec_load(tmp_path):
    """-c with an initrd starts hashing it before the loader is imported, on the very view
    the load maps again later; the file syscall, a FIFO or a missing file start nothing."""
    import os as _os

    from kexec_py.image.open import map_file
    from kexec_py.plan import purgatory as P
    initrd = tmp_path / "initrd"
    initrd.write_bytes(_os.urandom(P._PREHASH_MIN + 4096))
    fifo = tmp_path / "fifo"
    _os.mkfifo(fifo)

    def started(*argv):
        P._prehashes.clear()
        actions, values = cli.fast_parse([*argv, "--arch", "x86_64"])
        cli._hash_initrd_early(actions, values)
        return bool(P._prehashes)
    try:
        assert started("-p", "-c", "/k", f"--initrd={initrd}")
        assert P._prehashed(map_file(initrd)) is not None          # the load will find it
        assert not started("-p", "-s", "/k", f"--initrd={initrd}")
        assert not started("-p", "/k", f"--initrd={initrd}")        # -a: kexec_file_load first
        assert not started("-u", "-c", f"--initrd={initrd}")
        assert not started("-p", "-c", "/k", f"--initrd={fifo}")
        assert not started("-p", "-c", "/k", f"--initrd={tmp_path / 'missing'}")
        P._prehashes.clear()
        actions, values = cli.fast_parse(["-p", "/k", f"--initrd={initrd}", "--arch", "i386"])
        cli._hash_initrd_early(actions, values)                     # i386 has only kexec_load
        assert P._prehashes
    finally:
        P._prehashes.clear()
