"""Static shell completions (bash, zsh, fish) for ``kexec`` and ``kexec-py``, generated
from the option table (``kexec_py.options``), the one table the parsers, --help and the
man page come from too.

They are files a package installs, not typer's ``--install-completion`` (which edits
the user's shell start-up file and makes the shell start Python on every <Tab>):
``scripts/gen-completions DIR`` writes them at build time (debian/rules, the RPM spec).
Like ``kexec_py.options``, this module imports nothing of kexec-py's dependencies, so a
package build needs no Python module but the standard library to run it.
"""

from __future__ import annotations

from kexec_py.options import FLAG, NUMBER, OPTIONS, TEXT, TYPER, VERSION, Option

COMMANDS = ("kexec", "kexec-py")

# Values that name a file; every other TEXT or NUMBER option takes a word the shell cannot guess.
FILE_OPTIONS = ("initrd", "dtb", "module")


def completed_options() -> list[Option]:
    """Every visible option, in the table's order."""
    return [o for o in OPTIONS if not o.hidden]


def _takes_value(option: Option) -> bool:
    return option.kind in (TEXT, NUMBER)


def _values(option: Option) -> str:
    """What follows the option: 'file', 'word' or ''."""
    if not _takes_value(option):
        return ""
    return "file" if option.name in FILE_OPTIONS else "word"


def bash() -> str:
    """One script for both names: bash-completion loads it by command name, so the package
    installs it as completions/kexec and links completions/kexec-py to it."""
    options = completed_options()
    words = " ".join(n for o in options for n in o.names)
    file_opts = "|".join(n for o in options if _values(o) == "file" for n in o.names)
    word_opts = "|".join(n for o in options if _values(o) == "word" for n in o.names)
    return f"""# bash completion for kexec and kexec-py (kexec-py {_version()}); generated from
# kexec_py/options.py by scripts/gen-completions: do not edit.
_kexec_py()
{{
    local cur prev
    cur=${{COMP_WORDS[COMP_CWORD]}}
    prev=${{COMP_WORDS[COMP_CWORD-1]}}
    case $prev in
        {file_opts})
            COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null; return ;;
        {word_opts})
            COMPREPLY=(); return ;;
    esac
    case $cur in
        --*=*)
            case ${{cur%%=*}} in
                {file_opts})
                    COMPREPLY=($(compgen -f -- "${{cur#*=}}")); compopt -o filenames 2>/dev/null ;;
                *) COMPREPLY=() ;;
            esac
            return ;;
        -*)
            COMPREPLY=($(compgen -W '{words}' -- "$cur")); return ;;
    esac
    COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null
}}
complete -F _kexec_py {' '.join(COMMANDS)}
"""


def _zsh_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]") \
        .replace(":", "\\:")


def zsh() -> str:
    """One ``_kexec`` function for both names (``#compdef kexec kexec-py``)."""
    lines = []
    for option in completed_options():
        value = {"file": ":file:_files", "word": f":{(option.metavar or 'value').lower()}: ", "": ""}[
            _values(option)]
        help_text = _zsh_escape(option.help)
        # "--opt=": the value may follow as the next word or after "=", as both parsers take it
        spellings = [name + ("=" if name.startswith("--") and _takes_value(option) else "") for name in option.names]
        if len(spellings) == 1:
            lines.append(f"    '{spellings[0]}[{help_text}]{value}'")
        else:                               # one entry for all spellings, each excluding the others
            lines.append(f"    '({' '.join(option.names)})'{{{','.join(spellings)}}}'[{help_text}]{value}'")
    body = " \\\n".join(lines)
    return f"""#compdef {' '.join(COMMANDS)}
# zsh completion for kexec and kexec-py (kexec-py {_version()}); generated from
# kexec_py/options.py by scripts/gen-completions: do not edit.
_arguments -s -S \\
{body} \\
    '1:kernel image:_files'
"""


def _fish_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def fish(command: str) -> str:
    """The script for one name: fish loads ``<command>.fish`` when it completes ``command``."""
    lines = [f"# fish completion for {command} (kexec-py {_version()}); generated from",
             "# kexec_py/options.py by scripts/gen-completions: do not edit.",
             ]
    for option in completed_options():
        parts = [f"complete -c {command}"]
        for name in option.names:
            parts.append(f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}")
        values = _values(option)
        if values == "file":
            parts.append("-r -F")
        elif values == "word":
            parts.append("-x")
        parts.append(f"-d '{_fish_escape(option.help)}'")
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def files() -> dict[str, str]:
    """Path (relative to the output directory) -> content. bash/kexec serves both names (a package
    links bash/kexec-py to it), zsh/_kexec likewise; fish needs a file per name."""
    out = {"bash/kexec": bash(), "zsh/_kexec": zsh()}
    for command in COMMANDS:
        out[f"fish/{command}.fish"] = fish(command)
    return out


def _version() -> str:
    from kexec_py import __version__
    return __version__


assert all(o.kind in (FLAG, TEXT, NUMBER, VERSION, TYPER) for o in OPTIONS)
