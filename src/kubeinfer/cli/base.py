"""The typer ``app`` and what every command module shares: the consoles, ``fail`` and the spec loading helpers.

Flags are kebab-case; output meant for people is a rich table, ``-o json|yaml`` is for programs (as kubectl).
Errors are one clear message naming the file, field or flag and the fix, with exit code 2 for usage errors and 1
for failures, never a traceback.

The command modules (``replica``, ``local``, ``kube``, ``sim``, ``plan``) import this module and register their
commands on ``app``; this module imports none of them (:mod:`kubeinfer.cli.app` puts them together).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kubeinfer import __version__
from kubeinfer.spec import InferenceService, SpecError, load_spec

__all__ = ["app", "check_sources_or_fail", "err", "fail", "load_or_fail", "out"]

app = typer.Typer(
    name="kubeinfer",
    help="Serve machine-learning models for inference: one spec, from a laptop to a Kubernetes GPU cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


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


def check_sources_or_fail(svc: InferenceService, spec_file: Path) -> None:
    """Refuse a spec whose model cannot be found here (a missing file, an unimportable module): one line each."""
    from kubeinfer.runtimes.sources import model_source_problems

    problems = model_source_problems(svc.spec.model, spec_file.resolve().parent)
    if problems:
        raise fail("\n".join(f"{spec_file}: {p}" for p in problems), 2)
    from kubeinfer.storage import StorageError, fetch, is_remote

    m = svc.spec.model
    if m.uri and is_remote(m.uri):
        # download once, here, before replicas start: they then find the model in the shared cache
        try:
            with err.status(f"fetching {m.uri}"):
                fetch(m.uri, sha256=m.sha256)
        except StorageError as e:
            raise fail(f"{spec_file}: spec.model.uri: {e}", 1) from None
