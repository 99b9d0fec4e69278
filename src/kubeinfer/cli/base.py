"""The typer ``app`` and what every command module shares: the consoles, ``fail`` and the spec loading helpers.

Flags are kebab-case; output meant for people is a rich table, ``-o json|yaml`` is for programs (as kubectl).
Errors are one clear message naming the file, field or flag and the fix, with exit code 2 for usage errors and 1
for failures, never a traceback.

Text is printed as it is: ``out`` and ``err`` read no rich markup unless a call passes ``markup=True`` (and then
escapes what it interpolates, :func:`rich.markup.escape`), and help texts are not parsed either
(``rich_markup_mode=None``). Brackets are everywhere in what this CLI prints -- ``[default: 8080]``,
``pip install 'kubeinfer[gpu]'``, field paths such as ``containers[0]`` -- and markup would silently eat them.
:func:`whole_numbers` keeps a table's numbers whole when it is narrower than its content (80 columns, piped).

The command modules (``replica``, ``local``, ``kube``, ``sim``, ``plan``) import this module and register their
commands on ``app``; this module imports none of them (:mod:`kubeinfer.cli.app` puts them together).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kubeinfer import __version__
from kubeinfer.spec import InferenceService, SpecError, load_spec
from kubeinfer.spec.service import ModelSpec

__all__ = ["app", "check_sources_or_fail", "err", "fail", "load_or_fail", "out", "print_table", "whole_numbers"]

app = typer.Typer(
    name="kubeinfer",
    help="Serve machine-learning models for inference: one spec, from a laptop to a Kubernetes GPU cluster.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, markup=False)
out = Console(markup=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` (plain text, never markup) as an error; raise the returned ``Exit``."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


_NUMBER = re.compile(r"^[-+~<>$]?\d[\d,._:/]*\s?(%|x|s|ms|m|h|d|Mi|Gi|Ki|[kMG]B?|/s|/h|req/s)?$")

_PLACEHOLDERS = frozenset({"", "-", "nan", "nan%", "inf", "n/a"})


def whole_numbers(table: Table) -> Table:
    """Keep ``table``'s numbers whole however narrow the output (80 columns when piped): a column whose every cell
    is a number (``12.5``, ``99.10%``, ``1.4x``, ``3/4``, ``$0.25``) gets the fixed width of its widest cell (or of
    its header's longest word: the header wraps between words); the other columns take the squeeze, folding their
    text rather than cutting it with an ellipsis, each kept as wide as its longest word (up to 16 characters)."""
    for col in table.columns:
        header_word = max((len(w) for w in str(col.header).split()), default=0)
        texts = [c for c in col.cells if isinstance(c, str)]
        cells = [c.strip() for c in texts if c.strip() not in _PLACEHOLDERS]
        if cells and all(_NUMBER.match(c) for c in cells):
            col.width = max(header_word, *(len(c) for c in texts))  # fixed: never shrunk, so never cut
        else:
            if col.overflow == "ellipsis":
                col.overflow = "fold"
            longest = max((len(w) for c in texts for w in c.split()), default=0)
            col.min_width = max(col.min_width or 0, min(16, max(longest, header_word)))
    return table


def print_table(table: Table, console: Console | None = None) -> None:
    """Print ``table`` (:func:`whole_numbers` applied) on ``console`` (``out`` by default). When even its narrowest
    layout -- text folded to its longest word, numbers whole -- is wider than the console (80 columns when piped),
    the table is printed at that width: long lines, never a cut number."""
    console = out if console is None else console
    whole_numbers(table)
    # The narrowest layout: numeric columns at their fixed width, text columns at their min_width (rich's own
    # measure would keep a long unbroken word, a socket path, whole).
    need = table._extra_width + sum(  # rich's own padding and border arithmetic (private helpers)
        max(col.width or 0, col.min_width or 0, 1) + table._get_padding_width(i) for i, col in enumerate(table.columns)
    )
    if need <= console.width:
        console.print(table)
        return
    wide = Console(
        file=console.file,
        width=need,
        markup=False,
        color_system=console.color_system,  # type: ignore[arg-type]
        force_terminal=console.is_terminal,
        no_color=console.no_color,
    )
    wide.print(table)


def _version(value: bool) -> None:
    if value:
        out.print(f"kubeinfer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """kubeinfer."""


def load_or_fail(path: Path) -> InferenceService:
    try:
        return load_spec(path)
    except SpecError as e:
        raise fail(f"invalid spec\n{e}", 2) from None


def model_fields(svc: InferenceService) -> list[tuple[str, ModelSpec]]:
    """Each model of the spec and where it is (``spec.model``, or ``spec.models[i]``)."""
    if svc.spec.models is None:
        return [("spec.model", svc.spec.model)]
    return [(f"spec.models[{i}]", m) for i, m in enumerate(svc.spec.models)]


def check_sources_or_fail(svc: InferenceService, spec_file: Path) -> None:
    """Refuse a spec whose model cannot be found here (a missing file, an unimportable module): one line each."""
    from kubeinfer.runtimes.sources import model_source_problems

    base = spec_file.resolve().parent
    problems = [p for field, m in model_fields(svc) for p in model_source_problems(m, base, field)]
    if problems:
        raise fail("\n".join(f"{spec_file}: {p}" for p in problems), 2)
    from kubeinfer.storage import StorageError, fetch, is_remote

    for field, m in model_fields(svc):
        if m.uri and is_remote(m.uri):
            # download once, here, before replicas start: they then find the model in the shared cache
            try:
                with err.status(f"fetching {escape(f'{m.uri} ({field})')}"):
                    fetch(m.uri, sha256=m.sha256)
            except StorageError as e:
                raise fail(f"{spec_file}: {field}.uri: {e}", 1) from None


LogLevelOpt = Annotated[
    str | None,
    typer.Option("--log-level", help="debug | info | warning | error (sets KUBEINFER_LOG_LEVEL).", show_default=False),
]
LogFormatOpt = Annotated[
    str | None, typer.Option("--log-format", help="text | json (sets KUBEINFER_LOG_FORMAT).", show_default=False)
]


def apply_log_options(level: str | None, fmt: str | None) -> None:
    """``--log-level``/``--log-format`` as the environment every kubeinfer process reads (replicas started by
    ``up`` inherit it), refused here with the choices when wrong."""
    import os

    if level is not None:
        if level.lower() not in ("debug", "info", "warning", "error"):
            raise fail(f"--log-level {level!r}: use debug, info, warning or error", 2)
        os.environ["KUBEINFER_LOG_LEVEL"] = level.lower()
    if fmt is not None:
        if fmt.lower() not in ("text", "json"):
            raise fail(f"--log-format {fmt!r}: use text or json", 2)
        os.environ["KUBEINFER_LOG_FORMAT"] = fmt.lower()
