"""``kubeinfer validate/prepare/serve/bench``: one replica -- check a spec, load its model, serve it, load-test it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kubeinfer.cli.base import (
    LogFormatOpt,
    LogLevelOpt,
    app,
    apply_log_options,
    err,
    fail,
    load_or_fail,
    model_fields,
    out,
    print_table,
)
from kubeinfer.spec import SpecError, load_spec, merge_overrides, validate_spec

__all__ = ["bench", "prepare", "serve", "validate"]


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="InferenceService YAML files.", show_default=False)],
    check_files: Annotated[
        bool,
        typer.Option(
            "--files/--no-files",
            help="Check that the model file (and a Python model's module) exists here; --no-files for a spec whose "
            "model lives in a container image.",
        ),
    ] = True,
    strict: Annotated[
        bool,
        typer.Option(
            help="Also refuse what runs code a reviewer may not expect: a className in the standard library "
            "(os:system, subprocess:Popen), and say which model files are pickles (docs/security.md)."
        ),
    ] = False,
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
        model = svc.spec.model
        if check_files:
            from kubeinfer.runtimes.sources import model_source_problems

            base = f.resolve().parent
            problems = [p for field, m in model_fields(svc) for p in model_source_problems(m, base, field)]
            if problems:
                bad += 1
                for p in problems:
                    err.print(f"{f}: {p}", highlight=False, soft_wrap=True)
                continue
        if strict and model.format == "python" and model.className:
            top = model.className.partition(":")[0].split(".")[0]
            if top in sys.stdlib_module_names or top == "builtins":
                bad += 1
                err.print(
                    f"{f}: spec.model.className: {model.className!r} is in the standard library, not a model: "
                    "name your model's class (module:Class)",
                    highlight=False,
                    soft_wrap=True,
                )
                continue
        if strict and model.format == "sklearn":
            err.print(
                f"{f}: note: spec.model.uri {model.uri!r} is a pickle (joblib): loading it runs code, so serve only "
                "files from a source you trust",
                highlight=False,
                soft_wrap=True,
            )
        out.print(f"{f}: valid ({svc.kind} {svc.metadata.name!r}, model format {model.format})")
    if bad:
        raise typer.Exit(2)


@app.command()
def prepare(
    spec_file: Annotated[Path, typer.Argument(help="InferenceService YAML.", show_default=False)],
) -> None:
    """Load the model once, as a replica would: check that it loads, and compile what can be compiled.

    A scikit-learn model is converted to ONNX, verified and cached ($KUBEINFER_CACHE_DIR), so that replicas start
    without importing scikit-learn; `kubeinfer build` runs this inside the image. A service of several models
    (spec.models) has every version it would serve loaded, one after the other."""
    import time

    from kubeinfer.runtimes import create_model
    from kubeinfer.runtimes.base import ModelError
    from kubeinfer.server.repository import RepositoryError, model_names, plan, single_model
    from kubeinfer.storage import StorageError, localize

    svc = load_or_fail(spec_file)
    base = spec_file.resolve().parent
    try:
        svc = localize(svc, base)  # every remote model (spec.models too): into the cache first
        sources = [source for name in model_names(svc) for source in plan(svc, name, base)]
    except StorageError as e:
        raise fail(f"{spec_file}: {e}", 1) from None  # the message starts with the field (spec.models[1].uri: ...)
    except RepositoryError as e:
        raise fail(f"{spec_file}: {e}", 1) from None  # names the entry (spec.models[0] (model 'clf'): ...)
    several = len(sources) > 1
    for source in sources:
        label = f"{source.name} version {source.version}" if several else source.name
        t0 = time.perf_counter()
        try:
            info = create_model(single_model(svc, source), base).load()
        except ModelError as e:
            where = f"spec.models (model {source.name!r} version {source.version})" if svc.spec.models else "spec.model"
            raise fail(f"{spec_file}: {where}: {e}", 1) from None
        compiled = info.extra.get("compiled")
        if compiled:
            how = f"compiled to {compiled} (max difference {info.extra['max_error']:.2g} on the probe rows)"
        elif info.extra.get("not_compiled"):
            how = f"served by {info.platform} (not compiled: {info.extra['not_compiled']})"
        else:
            how = f"served by {info.platform}"
        typer.echo(f"{label}: loaded in {time.perf_counter() - t0:.2f} s; {how}")
        for what, specs in (("inputs", info.inputs), ("outputs", info.outputs)):
            typer.echo(f"  {what}: " + ", ".join(f"{s.name} {s.datatype} {list(s.shape)}" for s in specs))


@app.command()
def serve(
    spec_file: Annotated[
        Path | None, typer.Argument(help="InferenceService YAML (optional with --model-*).", show_default=False)
    ] = None,
    model_format: Annotated[
        str | None, typer.Option(help="sklearn | onnx | xgboost | lightgbm | sentence-transformers | python")
    ] = None,
    model_uri: Annotated[str | None, typer.Option(help="Model file or directory.")] = None,
    class_name: Annotated[str | None, typer.Option(help="For --model-format python: module:Class.")] = None,
    name: Annotated[str | None, typer.Option(help="Service (and model) name.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port; 0 picks a free one [default: 8080].")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port; 0 picks a free one [default: 8081].")] = None,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Serve HTTP only.")] = False,
    workers: Annotated[int | None, typer.Option(help="Model instances run in parallel [default: 1].")] = None,
    processes: Annotated[
        int | None, typer.Option(help="Server processes sharing the ports, each with its own model [default: 1].")
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Most rows per model call [default: 64].")] = None,
    max_delay_ms: Annotated[float | None, typer.Option(help="Batch fill wait while busy [default: 1].")] = None,
    no_batching: Annotated[bool, typer.Option("--no-batching", help="One request per model call.")] = False,
    max_queue_size: Annotated[int | None, typer.Option(help="Queued requests before 503 [default: 2048].")] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Requests at once before 429 [default: 4096].")] = None,
    request_timeout_ms: Annotated[float | None, typer.Option(help="Deadline per request [default: 30000].")] = None,
    max_body_size: Annotated[str | None, typer.Option(help="Largest body, e.g. 64Mi [default: 64Mi].")] = None,
    drain_timeout: Annotated[float | None, typer.Option(help="Seconds to drain on SIGTERM [default: 30].")] = None,
    uds: Annotated[
        Path | None, typer.Option(help="Also serve HTTP on this Unix socket (how the local router reaches replicas).")
    ] = None,
    no_tcp: Annotated[
        bool,
        typer.Option(
            "--no-tcp",
            help="No TCP port: HTTP on the --uds socket only, gRPC on PATH.grpc.sock next to it (as `kubeinfer up` "
            "runs replicas).",
        ),
    ] = False,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Run one replica: Open Inference Protocol v2 (REST + gRPC), KServe v1, embeddings, metrics, probes."""
    from kubeinfer.server.runner import run

    apply_log_options(log_level, log_format)

    if no_tcp and uds is None:
        raise fail("--no-tcp needs --uds PATH: the Unix socket to serve on instead of a TCP port", 2)
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
            "spec.server.processes": processes,
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
    raise typer.Exit(run(svc, base_dir, uds, tcp=not no_tcp))


@app.command()
def bench(
    target: Annotated[
        str, typer.Argument(help="An infer URL, a server base URL (with --model) or a spec YAML.", show_default=False)
    ],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Closed loop: clients.")] = 64,
    rate: Annotated[float | None, typer.Option("--rate", "-r", help="Open loop: requests/s (Poisson).")] = None,
    duration: Annotated[float, typer.Option("--duration", "-d", help="Seconds measured.")] = 10.0,
    warmup: Annotated[float, typer.Option(help="Seconds of load before measuring.")] = 1.0,
    model: Annotated[str | None, typer.Option(help="Model name when TARGET is a base URL.")] = None,
    body: Annotated[Path | None, typer.Option(help="Request body file (default: made from model metadata).")] = None,
    rows: Annotated[int, typer.Option(help="Rows per generated request.")] = 1,
    engine: Annotated[
        str, typer.Option(help="auto | wrk | python (auto: wrk for closed loops when installed).")
    ] = "auto",
    output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
    max_error_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Exit 1 when more than this fraction of the measured requests fail (non-2xx answers and transport "
            "errors); 0 fails on any error.",
        ),
    ] = 0.01,
) -> None:
    """Load a server (closed loop at fixed concurrency, or open loop at a fixed rate) and report latency.

    Exits 1 when the error rate is above --max-error-rate or nothing was answered, so a script or CI job can rely
    on the exit code.

    `-o json` prints one document, the same keys for both engines: engine (wrk | python), mode (closed | open),
    concurrency (null for an open loop), rate (req/s; null for a closed loop), duration, requests, ok, errors,
    error_rate, statuses (counts by HTTP code, "200", and by transport failure: "error:connect", "error:read",
    "error:write", "error:timeout"), throughput, latency_ms (p50, p90, p99, p99.9, mean, max), late (open loop:
    arrivals not sent) and per_second (python engine: answers per measured second)."""
    import json

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from kubeinfer.bench.loadgen import LoadSpec, run_in_process, run_wrk, wrk_available
    from kubeinfer.bench.requests import fetch_metadata, v2_body

    if output not in ("table", "json"):
        raise fail(f"--output {output!r}: use table or json", 2)
    if engine not in ("auto", "wrk", "python"):
        raise fail(f"--engine {engine!r}: use auto, wrk or python", 2)
    use_wrk = engine == "wrk" or (engine == "auto" and rate is None and wrk_available())
    if use_wrk and rate is not None:
        raise fail("--engine wrk runs closed loops only: drop --rate or use --engine python", 2)
    if use_wrk and not wrk_available():
        raise fail("wrk is not installed (apt-get install wrk), or use --engine python", 2)
    server = None
    try:
        if target.endswith((".yaml", ".yml")):
            from kubeinfer.bench.server import ServerProcess

            svc = load_or_fail(Path(target))
            err.print(f"starting a replica of {svc.metadata.name!r} ...")
            server = ServerProcess(target, grpc=False).start()
            base, model = server.url, svc.model_name
        elif "/infer" in target or ":predict" in target or "/embeddings" in target:
            base = None
        elif model is None:
            raise fail("TARGET is a base URL: add --model NAME (or give the full .../infer URL)", 2)
        else:
            base = target.rstrip("/")
        url = target if base is None else f"{base}/v2/models/{model}/infer"
        if body is not None:
            if not body.is_file():
                raise fail(f"--body {body}: no such file", 2)
            payload = body.read_bytes()
        elif base is not None and model is not None:
            payload = v2_body(fetch_metadata(base, model), rows=rows)
        else:
            raise fail("give --body FILE with a full infer URL", 2)
        spec = LoadSpec(url=url, body=payload, concurrency=concurrency, rate=rate, duration=duration, warmup=warmup)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            console=err,
            transient=True,
            disable=output == "json",
        ) as prog:
            task = prog.add_task("load", total=duration, stats="")

            def tick(t: float, ok: int, errors: int) -> None:
                prog.update(task, completed=t, stats=f"{ok / max(t, 1e-9):,.0f} req/s, {errors} errors")

            result = run_wrk(spec) if use_wrk else run_in_process(spec, tick)
    except OSError as e:
        raise fail(f"cannot reach {target}: {e}") from None
    except (RuntimeError, ValueError) as e:  # the load generator's own failure (a bad URL, wrk refusing its flags)
        raise fail(f"bench {target}: {e}") from None
    finally:
        if server is not None:
            server.stop()
    if output == "json":
        out.print_json(json.dumps(result.to_json()))
    else:
        how = f"{result.rate:g} req/s" if result.mode == "open" else f"concurrency {result.concurrency}"
        t = Table(title=f"{result.mode} loop, {how} ({result.engine})")
        for col in ("throughput req/s", "p50 ms", "p90 ms", "p99 ms", "ok", "errors", "statuses"):
            t.add_column(col, justify="right")
        lat = result.latency_ms
        t.add_row(
            f"{result.throughput:,.0f}",
            f"{lat['p50']:.2f}",
            f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}",
            str(result.ok),
            str(result.errors),
            ", ".join(f"{k}: {v}" for k, v in result.statuses.items()),
        )
        print_table(t)
    if result.requests == 0:
        raise fail(f"bench failed: no request was answered in {result.duration:.1f} s of load on {url}")
    if result.error_rate > max_error_rate:
        statuses = ", ".join(f"{k}: {v}" for k, v in result.statuses.items())
        raise fail(
            f"bench failed: {result.errors} of {result.requests} requests failed ({result.error_rate:.2%}), above "
            f"--max-error-rate {max_error_rate:g}; statuses: {statuses}"
        )
