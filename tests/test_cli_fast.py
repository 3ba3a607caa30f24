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
from pathlib import Path

import pytest
import typer
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st
# typer (since 0.26) carries its own copy of click and raises that copy's exceptions, not click's
# (which is no dependency of kexec-py's): a usage error is one of these
from typer._click.exceptions import UsageError

from kexec_py import cli
from kexec_py import options as T
from kexec_py.cli_typer import app
from tests import guard
from tests.test_manpage import KEXEC_TOOLS_OPTIONS

COMMAND = typer.main.get_command(app())
TYPER_OWN = {o.name for o in T.OPTIONS if o.kind == T.TYPER}      # --help


def typer_parse(argv: list[str]):
    """What the typer command makes of argv: (actions, values) as the command would run with them,
    "usage error" if typer refuses argv, or "exit N" if an eager option (--help, --version) ends
    the parse. Parses only: nothing is run."""
    try:
        ctx = COMMAND.make_context(T.PROG, list(argv))
    except UsageError:
        return "usage error"
    except typer.Exit as e:
        return f"exit {e.exit_code}"
    values = {k: v for k, v in ctx.params.items() if k not in TYPER_OWN}
    return ctx.meta.get("kexec_py_actions", []), values


def test_the_table_is_the_typer_command():
    """Typer's command has one parameter per parameter of the table, each with the table's option
    names, kind, default, help, metavar and visibility; its help option is the table's."""
    params = {p.name: p for p in COMMAND.params}
    assert list(params) == [T.KERNEL.name] + [o.name for o in T.OPTIONS if o.name != "help"]
    assert params[T.KERNEL.name].param_type_name == "argument"
    assert set(T.DEFAULTS) == set(params) - TYPER_OWN
    for option in T.OPTIONS:
        if option.name == "help":
            ctx = COMMAND.make_context(T.PROG, [])
            assert tuple(ctx.help_option_names) == option.names
            continue
        p = params[option.name]
        assert tuple(p.opts) + tuple(p.secondary_opts) == option.names, option.name
        if option.kind == T.TYPER:
            assert p.help == option.help, option.name
            continue
        assert (p.help, p.hidden, p.rich_help_panel) == (option.help, option.hidden, option.panel), option.name
        assert p.is_flag == (option.kind in (T.FLAG, T.VERSION)), option.name
        assert p.is_eager == (option.kind == T.VERSION), option.name
        given = {T.FLAG: [], T.TEXT: ["12"], T.NUMBER: ["12"]}.get(option.kind)
        if given is not None:                   # the kind, as typer parses it
            parsed = {T.FLAG: True, T.TEXT: "12", T.NUMBER: 12}[option.kind]
            assert typer_parse([option.names[-1], *given])[1][option.name] == parsed, option.name
            assert p.default == T.DEFAULTS[option.name] == option.default, option.name
        if option.kind in (T.TEXT, T.NUMBER):
            assert p.metavar == option.metavar, option.name
        if option.kind == T.NUMBER:
            assert typer_parse([option.names[-1], "twelve"]) == "usage error", option.name
    assert T.DEFAULTS["version"] is None                 # the value typer gives it: _version's None
    assert typer_parse([]) == ([], T.DEFAULTS)


def test_the_table_names_each_option_once():
    spellings = [spelling for o in T.OPTIONS for spelling in o.names]
    assert len(spellings) == len(set(spellings)) == len(T.BY_SPELLING)
    assert len(T.BY_NAME) == len(T.OPTIONS) and T.KERNEL.name not in T.BY_NAME
    assert all(s.startswith("--") or (len(s) == 2 and s[0] == "-") for s in spellings)


def test_every_action_option_is_one_the_request_understands():
    """The actions the table records are the ones the request builder applies, in order."""
    from kexec_py.request import steps_from_options
    actions = [o.action for o in T.OPTIONS if o.action]
    assert sorted(o.names[0] for o in T.OPTIONS if o.action) == sorted("-l -p -u -e -f -S -s -c -a".split())
    for action in actions:
        steps_from_options([action])
    assert [o.kind for o in T.OPTIONS if o.action] == [T.FLAG] * len(actions)


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


def accepted(actions: list[str], **values) -> tuple[list[str], dict]:
    return actions, {**T.DEFAULTS, **values}


# command lines the fast parser leaves to typer, and what typer does with each
LEFT_TO_TYPER = {
    ("--help",): "exit 0", ("-h",): "exit 0", ("-v",): "exit 0", ("--version",): "exit 0",
    ("-p", "--help"): "exit 0",
    ("-pc", "/k"): accepted(["load_panic", "kexec_syscall"], load_panic=True, load_syscall=True, kernel="/k"),
    ("-tbzImage64", "/k"): accepted([], image_type="bzImage64", kernel="/k"),
    ("/k", "/k2"): "usage error", ("--bogus",): "usage error",
    ("-p", "-p"): accepted(["load_panic"], load_panic=True),
    ("--initrd",): "usage error", ("--append", "-x"): accepted([], append="-x"), ("--dry-run=1",): "usage error",
    ("--serial-baud", "fast"): "usage error", ("--serial-baud", "0115200"): accepted([], serial_baud=115200),
    ("--", "/k"): accepted([], kernel="/k"), ("-",): accepted([], kernel="-"), ("",): accepted([], kernel=""),
    ("--initrd=a", "--initrd=b"): accepted([], initrd="b"), ("/k\udcff",): accepted([], kernel="/k\udcff"),
    # typer's own completion options are not kexec-py's: kexec-tools has none, and typer's would
    # write into the user's shell start-up file
    ("--install-completion",): "usage error", ("--show-completion",): "usage error",
}


@pytest.mark.parametrize("argv", LEFT_TO_TYPER, ids=repr)
def test_unusual_command_lines_are_left_to_typer(argv):
    """The fast parser declines each, and typer does what is listed (so declining loses nothing)."""
    assert cli.fast_parse(list(argv)) is None
    assert typer_parse(list(argv)) == LEFT_TO_TYPER[argv]


WORDS = sorted({o for o in KEXEC_TOOLS_OPTIONS if o not in ("-h", "--help", "-v", "--version")}
               | {"--root", "--arch", "--dry-run", "/boot/vmlinuz", "/k2", "x86_64", "0x1000", "115200", "0",
                  "ttyS0", "", "-", "--", "-pc", "-x5", "--append=", "--initrd=/i", "--serial-baud=9600",
                  "--serial-baud=07", "--bogus", "a=b", "-1", "--dry-run=1", "-p=", "--help", "-v"})


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_wherever_the_fast_parser_answers_typer_agrees(argv):
    fast = cli.fast_parse(argv)
    typer_outcome = typer_parse(argv)
    if fast is not None:
        assert fast == typer_outcome


def test_no_dynamic_completion():
    """The packages ship static completion files (scripts/gen-completions); typer's completion
    protocol (its _KEXEC_PY_COMPLETE variable) is off, so the variable changes nothing."""
    def run(env):
        p = subprocess.run(guard.guarded([sys.executable, "-m", "kexec_py", "-S"]), capture_output=True,
                           text=True, env=env)
        return p.returncode, p.stdout, p.stderr
    plain = {k: v for k, v in os.environ.items() if not k.endswith("_COMPLETE")}
    assert run({**plain, "_KEXEC_PY_COMPLETE": "source_bash"}) == run(plain)


def test_fast_help_is_typers_help():
    """What `kexec-py --help` prints (the stored text) is what typer prints, at 80 and 200 columns;
    a narrow terminal gets typer's own rendering."""
    def run(args, columns, module="kexec_py"):
        env = {**os.environ, "COLUMNS": str(columns)}
        return subprocess.run(guard.guarded([sys.executable, "-m", module, *args] if module == "kexec_py" else
                              [sys.executable, "-c", "from kexec_py.cli_typer import main; main(['--help'])"]),
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

    root = _config_root(tmp_path, "root", boot=FILE_CONFIG)    # this kernel has kexec_file_load

    def started(*argv):
        P._prehashes.clear()
        actions, values = cli.fast_parse([*argv, "--arch", "x86_64", "--root", str(root)])
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


NO_FILE_CONFIG = "CONFIG_KEXEC=y\n# CONFIG_KEXEC_FILE is not set\nCONFIG_CRASH_DUMP=y\n"  # Debian arm64, ppc64el
FILE_CONFIG = "CONFIG_KEXEC=y\nCONFIG_KEXEC_FILE=y\nCONFIG_KEXEC_SIG=y\n"                # Debian amd64


def _config_root(tmp_path, name, *, boot=None, gz=None):
    """A system root whose running kernel (osrelease 6.1.0-t) has a configuration in
    /boot/config-6.1.0-t (``boot``) and/or /proc/config.gz (``gz``), in the kernel's format."""
    import gzip
    root = tmp_path / name
    (root / "proc" / "sys" / "kernel").mkdir(parents=True)
    (root / "proc" / "sys" / "kernel" / "osrelease").write_text("6.1.0-t\n")
    if boot is not None:
        (root / "boot").mkdir()
        (root / "boot" / "config-6.1.0-t").write_text(boot)
    if gz is not None:
        (root / "proc" / "config.gz").write_bytes(gzip.compress(gz.encode()))
    return root


def test_a_load_hashes_early_when_the_kernel_config_has_no_kexec_file_load(tmp_path):
    """The default -a tries kexec_file_load first, so it hashes the initrd early only where the
    running kernel's configuration (/boot/config-RELEASE, else /proc/config.gz) says the
    kernel was built without CONFIG_KEXEC_FILE: there the fall-back to kexec_load is sure."""
    import os as _os

    from kexec_py.plan import purgatory as P
    from kexec_py.system.view import SystemView
    initrd = tmp_path / "initrd"
    initrd.write_bytes(_os.urandom(P._PREHASH_MIN + 4096))
    roots = {
        "boot-no": (_config_root(tmp_path, "boot-no", boot=NO_FILE_CONFIG), True),
        "boot-yes": (_config_root(tmp_path, "boot-yes", boot=FILE_CONFIG), False),
        # /boot wins over /proc/config.gz, as kernel_config reads them
        "boot-yes-gz-no": (_config_root(tmp_path, "b-y-g-n", boot=FILE_CONFIG, gz=NO_FILE_CONFIG), False),
        "gz-no": (_config_root(tmp_path, "gz-no", gz=NO_FILE_CONFIG), True),
        "gz-yes": (_config_root(tmp_path, "gz-yes", gz=FILE_CONFIG), False),
        "no line at all": (_config_root(tmp_path, "absent", boot="CONFIG_KEXEC=y\n"), True),
        "no configuration": (_config_root(tmp_path, "none"), False),     # nothing known: no guess
        "damaged config.gz": (_config_root(tmp_path, "bad"), False),
    }
    (roots["damaged config.gz"][0] / "proc" / "config.gz").write_bytes(b"not gzip")
    try:
        for what, (root, lacks) in roots.items():
            if what != "damaged config.gz":
                assert SystemView(root).lacks_kernel_option("CONFIG_KEXEC_FILE") is lacks, what
            # and the parse the doctor uses agrees where there is a configuration
            found = None if what.startswith(("no configuration", "damaged")) else SystemView(root).kernel_config("6.1.0-t")
            if found:
                assert (found[1].get("CONFIG_KEXEC_FILE") not in ("y", "m")) is lacks, what
            for line, early in ((["-p", "/k"], lacks), (["-l", "/k"], lacks), (["-p", "-s", "/k"], False)):
                P._prehashes.clear()
                actions, values = cli.fast_parse([*line, f"--initrd={initrd}", "--root", str(root)])
                cli._hash_initrd_early(actions, values)
                assert bool(P._prehashes) is early, (what, line)
    finally:
        P._prehashes.clear()


FAST_LINES = [["--help"], ["-S", "--root", "ROOT"],
              ["-p", "-c", "--dry-run", "--root", "ROOT", "/nonexistent/k", "--initrd=/nonexistent/i"]]


@pytest.mark.parametrize("argv", FAST_LINES, ids=" ".join)
def test_the_fast_path_imports_neither_typer_nor_click(argv):
    """--help, -S and a service's load line read the option table, not typer (a tenth of a second)."""
    root = str(Path(__file__).parent / "fixtures" / "systems" / "x86_64-qemu-2cpu")
    argv = [root if a == "ROOT" else a for a in argv]
    env = dict(os.environ)
    p = subprocess.run(guard.guarded([sys.executable, "-X", "importtime", "-m", "kexec_py", *argv]),
                       capture_output=True, text=True, env={**env, "COLUMNS": "80"})
    assert p.returncode in (0, 1), p.stderr[-2000:]
    imported = {line.rpartition("|")[2].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert "kexec_py.options" in imported
    assert not {m for m in imported if m.split(".")[0] in ("typer", "click", "rich", "pydantic")}
