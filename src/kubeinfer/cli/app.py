"""The ``kubeinfer`` command line: each command parses its flags and calls library code (a few lines each).

Flags are kebab-case; output meant for people is a rich table, ``-o json|yaml`` is for programs (as kubectl).
Errors are one clear message naming the file, field or flag and the fix, with exit code 2 for usage errors and 1
for failures, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from kubeinfer import __version__
from kubeinfer.spec import InferenceService, SpecError, load_spec, merge_overrides, validate_spec

__all__ = ["app", "main"]

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


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="InferenceService YAML files.", show_default=False)],
) -> None:
    """Check spec files; print every problem with its file, line, field and the fix."""
    bad = 0
    for f in files:
        try:
            svc = load_spec(f)
        except SpecError as e:
            bad += 1
            err.print(str(e), highlight=False, soft_wrap=True)
            continue
        out.print(f"{f}: valid ({svc.kind} {svc.metadata.name!r}, model format {svc.spec.model.format})")
    if bad:
        raise typer.Exit(2)


@app.command()
def serve(
    spec_file: Annotated[
        Path | None, typer.Argument(help="InferenceService YAML (optional with --model-*).", show_default=False)
    ] = None,
    model_format: Annotated[str | None, typer.Option(help="sklearn | onnx | sentence-transformers | python")] = None,
    model_uri: Annotated[str | None, typer.Option(help="Model file or directory.")] = None,
    class_name: Annotated[str | None, typer.Option(help="For --model-format python: module:Class.")] = None,
    name: Annotated[str | None, typer.Option(help="Service (and model) name.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port; 0 picks a free one [default: 8080].")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port; 0 picks a free one [default: 8081].")] = None,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Serve HTTP only.")] = False,
    workers: Annotated[int | None, typer.Option(help="Model instances run in parallel [default: 1].")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Most rows per model call [default: 64].")] = None,
    max_delay_ms: Annotated[float | None, typer.Option(help="Batch fill wait while busy [default: 1].")] = None,
    no_batching: Annotated[bool, typer.Option("--no-batching", help="One request per model call.")] = False,
    max_queue_size: Annotated[int | None, typer.Option(help="Queued requests before 503 [default: 2048].")] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Requests at once before 429 [default: 4096].")] = None,
    request_timeout_ms: Annotated[float | None, typer.Option(help="Deadline per request [default: 30000].")] = None,
    max_body_size: Annotated[str | None, typer.Option(help="Largest body, e.g. 64Mi [default: 64Mi].")] = None,
    drain_timeout: Annotated[float | None, typer.Option(help="Seconds to drain on SIGTERM [default: 30].")] = None,
) -> None:
    """Run one replica: Open Inference Protocol v2 (REST + gRPC), KServe v1, embeddings, metrics, probes."""
    from kubeinfer.server.runner import run

    base_dir: Path | None
    if spec_file is not None:
        svc = load_or_fail(spec_file)
        base_dir = spec_file.resolve().parent
        model_over: dict[str, Any] = {"format": model_format, "uri": model_uri, "className": class_name}
    else:
        if model_format is None:
            raise fail("give a spec file, or --model-format with --model-uri (or --class-name) and --name", 2)
        doc: dict[str, Any] = {
            "apiVersion": "kubeinfer.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": name or "model"},
            "spec": {
                "model": {
                    k: v
                    for k, v in {"format": model_format, "uri": model_uri, "className": class_name}.items()
                    if v is not None
                }
            },
        }
        try:
            svc = validate_spec(doc, "flags")
        except SpecError as e:
            raise fail(f"invalid flags\n{e}", 2) from None
        base_dir = Path.cwd()
        model_over = {}
    overrides: dict[str, Any] = {f"spec.model.{k}": v for k, v in model_over.items()}
    overrides.update(
        {
            "metadata.name": name,
            "spec.server.host": host,
            "spec.server.port": port,
            "spec.server.grpcPort": grpc_port,
            "spec.server.workers": workers,
            "spec.batching.maxBatchSize": max_batch_size,
            "spec.batching.maxDelayMs": max_delay_ms,
            "spec.batching.enabled": False if no_batching else None,
            "spec.server.limits.maxQueueSize": max_queue_size,
            "spec.server.limits.maxConcurrency": max_concurrency,
            "spec.server.limits.requestTimeoutMs": request_timeout_ms,
            "spec.server.limits.maxBodySize": max_body_size,
            "spec.server.limits.drainTimeoutSeconds": drain_timeout,
        }
    )
    try:
        svc = merge_overrides(svc, overrides)
    except SpecError as e:
        raise fail(f"invalid flags\n{e}", 2) from None
    if no_grpc:
        svc = svc.model_copy(
            update={
                "spec": svc.spec.model_copy(update={"server": svc.spec.server.model_copy(update={"grpcPort": None})})
            }
        )
    raise typer.Exit(run(svc, base_dir))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
