"""``kubeinfer fetch``: download a model from where it is stored into the model cache (and, with ``--to``, lay it out
in a folder), as a replica would before loading it. The Kubernetes init container runs this (kube/render.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from kubeinfer.cli.base import app, fail, out

__all__ = ["fetch", "materialize", "progress_bar"]


def progress_bar(label: str):  # type: ignore[no-untyped-def]
    """A rich progress bar on stderr and the callback that moves it: (context manager, callback)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def materialize(src: Path, dest: Path, name: str) -> Path:
    """``src`` (a file or folder in a cache) as ``dest/name``: hard links where the file system allows, copies
    elsewhere; symbolic links (the Hugging Face cache's) are followed. Replaced if it exists."""
    target = dest / name
    staging = dest / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)

    def place(s: Path, d: Path) -> None:
        d.parent.mkdir(parents=True, exist_ok=True)
        real = s.resolve()
        try:
            os.link(real, d)
        except OSError:
            shutil.copyfile(real, d)

    if src.is_dir():
        for root, _dirs, files in os.walk(src, followlinks=True):
            for name in files:
                s = Path(root) / name
                place(s, staging / s.relative_to(src))
        staging.mkdir(exist_ok=True)
    else:
        place(src, staging)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    os.rename(staging, target)
    return target


@app.command()
def fetch(
    uri: Annotated[
        str, typer.Argument(help="Model URI: path, file://, s3://, gs://, az://, abfs://, https:// or hf://.")
    ],
    to: Annotated[
        Path | None,
        typer.Option(help="Also lay the model out as DIR/<name> (hard links into the cache where possible)."),
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA-256 of the model file (hex).")] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Model cache [default: $KUBEINFER_MODEL_CACHE, else ~/.cache/kubeinfer/models]."),
    ] = None,
    show_progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Download a model into the model cache (verified; not again while it is unchanged) and print its local path.

    Credentials come from the environment or the cloud's profile files, never from the command line (docs/storage.md)."""
    from kubeinfer.storage import StorageError
    from kubeinfer.storage import fetch as fetch_model
    from kubeinfer.storage.uris import model_basename

    try:
        if show_progress:
            bar, update = progress_bar(uri)
            with bar:
                path = fetch_model(uri, cache_dir, sha256=sha256, progress=update)
        else:
            path = fetch_model(uri, cache_dir, sha256=sha256)
        if to is not None:
            path = materialize(path, to, model_basename(uri))
    except StorageError as e:
        raise fail(str(e), 1) from None
    except OSError as e:
        raise fail(f"{uri}: {e}", 1) from None
    out.print(str(path), highlight=False, soft_wrap=True)
