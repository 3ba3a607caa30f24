"""kexec-py's options as a typer command, built from the table in
``kexec_py.options``: what --help shows, and the parser for every command line the
fast one in ``kexec_py.cli`` leaves to it (``kexec_py.cli.main`` decides, and hands
in the function that runs the parsed command). Importing this module imports typer;
it does not import ``kexec_py.cli``."""

from __future__ import annotations

import inspect
from typing import Callable, Optional

import typer

from kexec_py import version_line
from kexec_py.options import (DESCRIPTION, FLAG, HELP_OPTION, KERNEL, NUMBER, OPTIONS, PARAMETER_KINDS, PROG,
                              VERSION, Option)

Runner = Callable[[list, dict], int]
_ACTIONS = "kexec_py_actions"           # ctx.meta key: the action options met, in command-line order


def _record(action: str):
    """A callback that records an action option in command-line order."""
    def record(ctx: typer.Context, value: bool) -> bool:
        if value:
            ctx.meta.setdefault(_ACTIONS, []).append(action)
        return value
    return record


def _version(value: bool) -> None:
    if value:
        print(version_line())
        raise typer.Exit(0)


def _parameter(option: Option) -> inspect.Parameter:
    """The command function's parameter for one option of the table."""
    common = dict(help=option.help, rich_help_panel=option.panel, hidden=option.hidden)
    if option.kind == FLAG:
        info = typer.Option(False, *option.names, callback=_record(option.action) if option.action else None,
                            **common)
        annotation = bool
    elif option.kind == VERSION:
        info = typer.Option(False, *option.names, callback=_version, is_eager=True, **common)
        annotation = bool
    else:
        info = typer.Option(option.default, *option.names, metavar=option.metavar, **common)
        annotation = int if option.kind == NUMBER else str
        if option.default is None:
            annotation = Optional[annotation]
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


SIGNATURE = inspect.Signature([
    inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    inspect.Parameter(KERNEL.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                      default=typer.Argument(None, help=KERNEL.help, show_default=False)),
    *(_parameter(option) for option in OPTIONS if option.kind in PARAMETER_KINDS),
], return_annotation=None)


def _no_runner(actions: list, values: dict) -> int:
    raise RuntimeError("this kexec-py command was built to parse only")


def command(run: Runner = _no_runner):
    """The typer command function: typer reads its parameters from ``SIGNATURE``, and it
    calls ``run(actions in command-line order, values)`` and exits with what that returns.
    ``values`` has one key per parameter (``kexec_py.options.DEFAULTS``'s keys)."""
    def kexec_py(ctx: typer.Context, **values) -> None:
        raise typer.Exit(run(ctx.meta.get(_ACTIONS, []), values))
    kexec_py.__signature__ = SIGNATURE
    kexec_py.__annotations__ = {**{p.name: p.annotation for p in SIGNATURE.parameters.values()}, "return": None}
    return kexec_py


def app(run: Runner = _no_runner) -> typer.Typer:
    app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": list(HELP_OPTION.names)})
    app.command(help=DESCRIPTION)(command(run))
    return app


def main(argv: list[str] | None = None, *, run: Runner = _no_runner) -> None:
    app(run)(args=argv, prog_name=PROG)
