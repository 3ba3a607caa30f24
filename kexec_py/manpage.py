"""The OPTIONS section of man/kexec-py.8, generated from the CLI's own parameters,
so that the man page and --help cannot disagree. ``scripts/gen-manpage`` writes it;
a test checks the committed page is current."""

from __future__ import annotations

import re

BEGIN = '.\\" BEGIN GENERATED OPTIONS (scripts/gen-manpage)'
END = '.\\" END GENERATED OPTIONS'


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text)


def cli_options():
    """(option names, metavar or None, help) for every visible option, in --help order."""
    import typer.main

    from kexec_py.cli import HELP, command
    app = typer.Typer(add_completion=True)
    app.command(help=HELP)(command)
    cmd = typer.main.get_command(app)
    out = []
    for p in cmd.params:
        if getattr(p, "hidden", False) or not getattr(p, "opts", None) or p.param_type_name != "option":
            continue
        metavar = None if p.is_flag else (p.metavar or p.name.upper())
        out.append((tuple(p.opts) + tuple(p.secondary_opts), metavar, p.help or ""))
    out.append((("-h", "--help"), None, "Print the help and exit."))
    return out


def options_section() -> str:
    lines = [BEGIN]
    for names, metavar, help_text in cli_options():
        names_roff = ", ".join(f"\\fB{_roff(n)}\\fR" + (f" \\fI{metavar}\\fR" if metavar else "")
                               for n in names)
        lines += [".TP", names_roff, _roff(help_text)]
    lines.append(END)
    return "\n".join(lines)


def render(page: str) -> str:
    """``page`` with its generated section replaced by the current one."""
    start, end = page.index(BEGIN), page.index(END) + len(END)
    return page[:start] + options_section() + page[end:]
