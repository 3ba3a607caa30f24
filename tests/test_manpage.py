"""The man page and --help must describe the same options, and the page must be current."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from kexec_py.manpage import render
from tests import guard

PAGE = Path(__file__).resolve().parent.parent / "man" / "kexec-py.8"


def help_options() -> set[str]:
    out = subprocess.run(guard.guarded([sys.executable, "-m", "kexec_py", "--help"]), capture_output=True, text=True,
                         check=True).stdout
    return {m for line in out.splitlines() if re.match(r"^  -", line)
            for m in re.findall(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)", line.split("  ")[1])}


def man_options() -> set[str]:
    text = PAGE.read_text()
    section = text[text.index(".SH OPTIONS"):text.index(".SH RESERVING")]
    names = re.findall(r"\\fB((?:\\-)+[A-Za-z0-9](?:[\w]|\\-)*)\\fR", section)
    return {n.replace("\\-", "-") for n in names}


def test_committed_page_is_generated_from_the_cli():
    assert render(PAGE.read_text()) == PAGE.read_text(), "run scripts/gen-manpage"


def test_stored_help_text_is_what_typer_prints():
    """kexec-py --help prints kexec_py/help_text.py without importing typer: it must be current."""
    from kexec_py.manpage import help_text_module
    stored = Path(__file__).resolve().parent.parent / "kexec_py" / "help_text.py"
    assert help_text_module() == stored.read_text(), "run scripts/gen-manpage"


def test_help_and_man_page_list_the_same_options():
    assert help_options() == man_options()


def help_entries(text: str) -> list[tuple[str, str]]:
    """(names and metavar, help) of each line of --help's Options section, wrapped lines joined."""
    entries: list[list[str]] = []
    for line in text[text.index("\nOptions:\n"):].splitlines()[2:]:
        if line.startswith("  -"):
            names, _, help_text = line.strip().partition("  ")
            entries.append([names, help_text.strip()])
        else:
            assert line.startswith("      "), line
            entries[-1][1] = f"{entries[-1][1]} {line.strip()}".strip()
    return [(names, help_text) for names, help_text in entries]


def man_entries() -> list[tuple[str, tuple[tuple[str, str | None], ...], str]]:
    """(subsection, (name, metavar or None) for each spelling, help) of each .TP entry of the
    generated section."""
    text = PAGE.read_text()
    lines = text[text.index(".\\\" BEGIN GENERATED"):text.index(".\\\" END GENERATED")].splitlines()[1:]

    def plain(roff: str) -> str:
        return roff.replace("\\-", "-").replace("\\e", "\\").removeprefix("\\&")
    out, subsection = [], None
    while lines:
        line = lines.pop(0)
        if line.startswith(".SS "):
            subsection = plain(line[4:])
            continue
        assert line == ".TP", line
        names_line, help_line = lines.pop(0), lines.pop(0)
        names = tuple((plain(name), plain(metavar) or None) for name, metavar in
                      re.findall(r"\\fB(.*?)\\fR(?: \\fI(.*?)\\fR)?(?:, |$)", names_line))
        out.append((subsection, names, plain(help_line)))
    return out


def test_the_table_help_and_man_page_agree():
    """Every option of the table that is not hidden is in --help (the stored text) and in the man
    page with the table's names, metavar and help, and nothing else is: in --help in the table's
    order, in the man page under its panel's subsection (panels in the table's order). The one
    line typer words itself is its own --help's."""
    from kexec_py.help_text import HELP_TEXT
    from kexec_py.options import DESCRIPTION, KERNEL, NUMBER, OPTIONS, PANELS, TEXT
    visible = [o for o in OPTIONS if not o.hidden]
    metavars = {o.name: o.metavar if o.kind in (TEXT, NUMBER) else None for o in visible}
    assert all(metavars[o.name] for o in visible if o.kind in (TEXT, NUMBER))
    assert help_entries(HELP_TEXT) == [
        (", ".join(o.names) + (f" {metavars[o.name]}" if metavars[o.name] else ""),
         "Show this message and exit." if o.name == "help" else o.help) for o in visible]
    assert man_entries() == [(o.panel, tuple((n, metavars[o.name]) for n in o.names), o.help)
                             for panel in PANELS for o in visible if o.panel == panel]
    assert {o.panel for o in OPTIONS} == set(PANELS)
    assert f"  {KERNEL.name} <str>  {KERNEL.help}\n" in HELP_TEXT
    assert " ".join(HELP_TEXT.split("\nArguments:")[0].split()[4:]) == " ".join(DESCRIPTION.split())


def test_every_kexec_tools_x86_option_is_documented():
    """kexec-tools' generic and x86 options (kexec/kexec.h, arch/i386/include/arch/options.h)."""
    kexec_tools = """-h --help -v --version -f --force -i --no-checks -x --no-ifdown -y --no-sync -l --load
        -p --load-panic -u --unload -e --exec -t --type --mem-min --mem-max --reuseinitrd --print-ckr-size
        --load-preserve-context --load-jump-back-helper --entry -s --kexec-file-syscall -c --kexec-syscall
        -a --kexec-syscall-auto -d --debug -S --status --hotplug --no-cma --force-dtb --exec-live-update
        --load-live-update --command-line --append --reuse-cmdline --initrd --ramdisk --dtb --args-elf
        --args-linux --args-none --module --real-mode --entry-32bit --reset-vga --serial --serial-baud
        --console-vga --console-serial --elf32-core-headers --elf64-core-headers --pass-memmap-cmdline
        --noefi --reuse-video-type""".split()
    assert set(kexec_tools) - man_options() == set()


def test_page_renders_without_warnings():
    assert shutil.which("groff"), "groff is needed to check the man page (apt-get install groff-base)"
    p = subprocess.run(["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr


KEXEC_TOOLS_OPTIONS = {   # kexec-tools' generic + x86 option table; value-taking ones with a sample value
    "-h": None, "--help": None, "-v": None, "--version": None, "-f": None, "--force": None, "-i": None,
    "--no-checks": None, "-x": None, "--no-ifdown": None, "-y": None, "--no-sync": None, "-l": None,
    "--load": None, "-p": None, "--load-panic": None, "-u": None, "--unload": None, "-e": None, "--exec": None,
    "-t": "bzImage64", "--type": "bzImage64", "--mem-min": "0x1000000", "--mem-max": "0x7fffffff",
    "--reuseinitrd": None, "--print-ckr-size": None, "--load-preserve-context": None,
    "--load-jump-back-helper": None, "--entry": "0x100000", "-s": None, "--kexec-file-syscall": None,
    "-c": None, "--kexec-syscall": None, "-a": None, "--kexec-syscall-auto": None, "-d": None, "--debug": None,
    "-S": None, "--status": None, "--hotplug": None, "--no-cma": None, "--force-dtb": None,
    "--exec-live-update": None, "--load-live-update": None, "--command-line": "quiet", "--append": "quiet",
    "--reuse-cmdline": None, "--initrd": "/boot/initrd", "--ramdisk": "/boot/initrd", "--dtb": "/x.dtb",
    "--args-elf": None, "--args-linux": None, "--args-none": None, "--module": "/m", "--real-mode": None,
    "--entry-32bit": None, "--reset-vga": None, "--serial": "ttyS0", "--serial-baud": "115200",
    "--console-vga": None, "--console-serial": None, "--elf32-core-headers": None,
    "--elf64-core-headers": None, "--pass-memmap-cmdline": None, "--noefi": None, "--reuse-video-type": None,
}


def test_every_kexec_tools_option_is_accepted_by_the_parser():
    """Each option parses, in both spellings kexec-tools takes (--opt=value and --opt value)."""
    import typer.main
    from typer._click.exceptions import UsageError      # what typer (since 0.26, its own click) raises

    from kexec_py.cli_typer import app
    cmd = typer.main.get_command(app())
    for opt, value in KEXEC_TOOLS_OPTIONS.items():
        if opt in ("-h", "--help", "-v", "--version"):
            continue                                        # eager: they print and exit
        forms = [[opt]] if value is None else [[opt, value]] + ([[f"{opt}={value}"]] if opt.startswith("--")
                                                                else [])
        for argv in forms:
            try:
                ctx = cmd.make_context("kexec-py", [*argv, "/boot/vmlinuz"], resilient_parsing=False)
            except UsageError as e:
                raise AssertionError(f"{argv} rejected: {e}") from None
            assert ctx.params["kernel"] == "/boot/vmlinuz", argv
