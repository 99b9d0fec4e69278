"""``kubeinfer up/apply/get/describe/scale/logs/down``: the embedded single-machine platform, kubectl-like.

Each command is a few lines over :mod:`kubeinfer.local`: ``up`` runs the platform (in the foreground with a live
view, or detached with ``-d``); the others talk to a running one through its control endpoint.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from kubeinfer.cli.base import (
    LogFormatOpt,
    LogLevelOpt,
    app,
    apply_log_options,
    check_sources_or_fail,
    err,
    fail,
    load_or_fail,
    out,
    print_table,
)

__all__: list[str] = []

OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table | json | yaml")]


def _settings() -> Any:
    from kubeinfer.local.settings import LocalSettings, SettingsError

    try:
        return LocalSettings.from_env()
    except SettingsError as e:
        raise fail(str(e), 2) from None


def _running_names(settings: Any) -> list[str]:
    from kubeinfer.local.control import pid_alive, read_control

    if not settings.home.is_dir():
        return []
    names = []
    for d in sorted(settings.home.iterdir()):
        info = read_control(d)
        if info is not None and pid_alive(int(info.get("pid", 0))):
            names.append(d.name)
    return names


def _client(name: str | None) -> Any:
    from kubeinfer.local.control import ControlClient

    settings = _settings()
    if name is None:
        names = _running_names(settings)
        if len(names) != 1:
            which = f"running: {', '.join(names)}" if names else "none is running"
            raise fail(f"give the service NAME ({which})", 2)
        name = names[0]
    return ControlClient(name, settings.service_dir(name))


def _call(name: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    from kubeinfer.local.control import ControlError

    client = _client(name)
    try:
        return client.call(method, path, body)
    except ControlError as e:
        raise fail(str(e)) from None


def _check_output(output: str, choices: tuple[str, ...] = ("table", "json", "yaml")) -> None:
    if output not in choices:
        raise fail(f"--output {output!r}: use {', '.join(choices[:-1])} or {choices[-1]}", 2)


def _emit(data: Any, output: str) -> bool:
    if output == "json":
        out.print_json(json.dumps(data, default=str))
        return True
    if output == "yaml":
        out.print(yaml.safe_dump(data, sort_keys=False), highlight=False, end="", soft_wrap=True, markup=False)
        return True
    return False


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _bytes(v: float | None) -> str:
    return "-" if v is None else f"{v / 2**20:.0f}Mi"


def _replica_table(st: dict[str, Any], wide: bool = False) -> Any:
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    cols = ["REPLICA", "READY", "STATUS", "RESTARTS", "AGE", "PID", "ADDRESS", "VERSION", "CPU", "MEMORY"]
    if wide:
        cols += ["REVISION", "CPUS", "THROTTLED", "LOG"]
    for col in cols:
        t.add_column(col, overflow="fold" if wide else "ellipsis")
    for r in st["replicas"]:
        status = r["state"]
        if status == "CrashLoopBackOff" and (r.get("reason") or r["last_exit"]):
            status += f" ({r.get('reason') or r['last_exit']['reason']})"
        elif r.get("reason"):
            status = r["reason"]
        row = [
            r["id"],
            "1/1" if r["ready"] else "0/1",
            status,
            str(r["restarts"]),
            _age(r["age"]),
            str(r["pid"] or "-"),
            _address(r),
            r["version"],
            "-" if r["cpu"] is None else f"{r['cpu']:.2f}",
            _bytes(r["memory"]),
        ]
        if wide:
            throttled = r.get("cpu_throttled_seconds")
            row += [
                str(r["revision"]),
                ",".join(map(str, r["cpus"])) if r.get("cpus") else "-",
                "-" if throttled is None else f"{throttled:.1f}s",
                r.get("log") or "-",
            ]
        t.add_row(*row)
    return t


def load_error(message: str) -> str:
    """The model's own error out of a replica's probe message (``startup probe: GET /startupz: HTTP 503 (model 'x'
    failed to load: ModelError: ...)``)."""
    _, sep, cause = message.partition("failed to load: ")
    return cause.removesuffix(")") if sep else message


def _address(r: dict[str, Any]) -> str:
    """Where a replica listens: its port, or the Unix socket it serves on when it has none (the default)."""
    if r.get("port"):
        return str(r["port"])
    return str(r.get("uds") or "-")


def _summary(st: dict[str, Any]) -> Any:
    """The one-line summary (a rich ``Text``: the name in bold, a rollout in yellow, the rest as it is)."""
    from rich.text import Text

    a = st["autoscaling"]
    line = Text(st["name"], style="bold")
    line.append(
        f" {st['endpoint']['http']}  revision {st['revision']} (version {st['version']})  "
        f"ready {st['ready_replicas']}/{st['desired']}  policy {a['policy']} [{a['min']}, {a['max']}]"
    )
    r = st.get("router") or {}
    if r:
        line.append(f"  load {r['rps']:.0f} req/s, buffered {r['buffered']}")
    if st.get("rollout"):
        line.append(f"  rolling out revision {st['rollout']['revision']}", style="yellow")
    if st.get("canary"):
        c = st["canary"]
        line.append(f"  canary {_revision_cell(st)} (step {c['step']}/{len(c['steps'])})", style="yellow")
    return line


# -- up ------------------------------------------------------------------------------------------------------


@app.command()
def up(
    spec_file: Annotated[Path, typer.Argument(help="InferenceService YAML.", show_default=False)],
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background; return once ready.")] = False,
    port: Annotated[
        int | None, typer.Option(help="Router HTTP port; 0 picks a free one [default: spec.server.port].")
    ] = None,
    grpc_port: Annotated[int | None, typer.Option(help="Router gRPC port [default: spec.server.grpcPort].")] = None,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="No gRPC listener on the router.")] = False,
    timeout: Annotated[float, typer.Option(help="With -d: seconds to wait until ready.")] = 300.0,
    no_view: Annotated[bool, typer.Option("--no-view", help="Foreground without the live view.")] = False,
    dashboard_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve the web dashboard on 127.0.0.1 at this port; 0 picks a free one (docs/dashboard.md).",
        ),
    ] = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Run a service on this machine: replicas, router, probes, autoscaling, rolling updates."""
    apply_log_options(log_level, log_format)  # the platform, the detached child and every replica inherit them
    from kubeinfer.local.control import pid_alive, read_control
    from kubeinfer.local.controller import ControllerError
    from kubeinfer.local.gpu import GpuError

    svc = load_or_fail(spec_file)
    check_sources_or_fail(svc, spec_file)
    settings = _settings()
    folder = settings.service_dir(svc.name)
    info = read_control(folder)
    if info is not None and pid_alive(int(info.get("pid", 0))):
        raise fail(
            f"service {svc.name!r} is already running (pid {info['pid']}): change it with `kubeinfer apply "
            f"{spec_file}` or stop it with `kubeinfer down {svc.name}`",
            2,
        )
    dashboard = _dashboard_options(dashboard_port)
    if detach:
        _up_detached(spec_file, svc.name, folder, port, grpc_port, no_grpc, timeout, dashboard_port)
        return
    import asyncio
    import logging

    from kubeinfer.local.platform import Platform, RouterOptions
    from kubeinfer.server import logs

    logs.setup(logging.WARNING)  # rate-limited: an error repeated per connection cannot flood platform.log
    opts = RouterOptions(port=port, grpc_port=grpc_port, grpc=not no_grpc)
    try:
        platform = Platform(svc, spec_file.resolve().parent, settings, opts, dashboard)
    except GpuError as e:
        raise fail(str(e), 2) from None
    view = not no_view and out.is_terminal

    async def main() -> int:
        task = asyncio.create_task(platform.run())
        announced = False
        shown = platform.dashboard is None
        live = None
        if view:
            from rich.live import Live

            live = Live(console=out, auto_refresh=False, transient=False)
            live.start()
        try:
            while not task.done():
                await asyncio.sleep(0.5)
                if platform.http_port == 0:
                    continue
                if not shown and platform.dashboard is not None and platform.dashboard.port:
                    shown = True
                    out.print(f"dashboard at {platform.dashboard.url}", highlight=False)
                st = await platform._status({})
                if live is not None:
                    from rich.console import Group

                    live.update(Group(_summary(st), _replica_table(st)), refresh=True)
                elif not announced and st["ready"]:
                    announced = True
                    out.print(f"{svc.name} ready at {st['endpoint']['http']} ({st['ready_replicas']} replica(s))")
            return await task
        finally:
            if live is not None:
                live.stop()

    try:
        code = asyncio.run(main())
    except ControllerError as e:
        raise fail(str(e)) from None
    raise typer.Exit(code)


def _dashboard_options(port: int | None) -> Any:
    """The dashboard's options (None: no dashboard), its prices read from the environment."""
    if port is None:
        return None
    import os

    from kubeinfer.local.dashboard import DashboardOptions
    from kubeinfer.local.dashboard_model import Prices, PricesError

    try:
        return DashboardOptions(port=port, prices=Prices.from_env(os.environ))
    except PricesError as e:
        raise fail(str(e), 2) from None


def _up_detached(
    spec_file: Path,
    name: str,
    folder: Path,
    port: int | None,
    grpc_port: int | None,
    no_grpc: bool,
    timeout: float,
    dashboard_port: int | None = None,
) -> None:
    from kubeinfer.local.control import ControlClient, ControlError, read_control

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "control.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "kubeinfer", "up", str(spec_file.resolve()), "--no-view"]
    if port is not None:
        cmd += ["--port", str(port)]
    if grpc_port is not None:
        cmd += ["--grpc-port", str(grpc_port)]
    if no_grpc:
        cmd.append("--no-grpc")
    if dashboard_port is not None:
        cmd += ["--dashboard-port", str(dashboard_port)]
    log = folder / "platform.log"
    start = log.stat().st_size if log.exists() else 0
    with log.open("ab") as f:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
    client = ControlClient(name, folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise fail(_exit_cause(log, start, proc.returncode))
        try:
            st = client.call("GET", "/v1/status", timeout=5)
        except ControlError:
            time.sleep(0.2)
            continue
        if st["ready"]:
            out.print(
                f"{name} ready at {st['endpoint']['http']} ({st['ready_replicas']} replica(s), platform pid "
                f"{proc.pid}); logs: {log}"
            )
            dashboard = (read_control(folder) or {}).get("dashboard")
            if dashboard:
                out.print(f"dashboard at {dashboard}", highlight=False)
            return
        failed = next((r for r in st["replicas"] if r.get("reason") == "ModelLoadFailed"), None)
        if failed is not None:
            # It will not load on a restart either: say why now, and stop rather than leave a service that
            # cannot serve (fix the spec, then `up` again).
            fail(f"{name}: replica {failed['id']} could not load its model: {load_error(failed['message'])}")
            with contextlib.suppress(ControlError):
                client.call("POST", "/v1/down", {}, timeout=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
            err.print(
                f"the service was stopped; fix spec.model and run `kubeinfer up` again (replica log: {failed['log']})",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1)
        time.sleep(0.2)
    raise fail(f"{name} not ready after {timeout:g} s: see `kubeinfer describe {name}` and {log}")


def _exit_cause(log: Path, start: int, code: int) -> str:
    """Why a detached platform exited before it was ready: its own ``error:`` lines from this start (the cause, in
    the words the foreground ``up`` would have printed), else the last lines it wrote."""
    with log.open("rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    causes = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
    if causes:
        return "\n".join(causes)
    tail = "\n".join(lines[-20:])
    return f"the platform exited with {code}; the end of its log ({log}):\n{tail}"


# -- the other commands ----------------------------------------------------------------------------------------


@app.command()
def apply(
    spec_file: Annotated[Path, typer.Argument(help="InferenceService YAML.", show_default=False)],
) -> None:
    """Change a running service: a new model, code or resources roll out with maxSurge/maxUnavailable."""
    svc = load_or_fail(spec_file)
    check_sources_or_fail(svc, spec_file)
    body = {"spec": svc.model_dump(mode="json"), "base_dir": str(spec_file.resolve().parent), "source": str(spec_file)}
    res = _call(svc.name, "POST", "/v1/apply", body)
    out.print(f"{svc.name}: {res['message']}")


GET_OUTPUTS = ("table", "wide", "json", "yaml", "name")
GetOutputOpt = Annotated[str, typer.Option("--output", "-o", help="table | wide | json | yaml | name")]


def _statuses(settings: Any) -> list[dict[str, Any]]:
    """The status of every running service (one that stops while we ask is left out, as kubectl would)."""
    from kubeinfer.local.control import ControlClient, ControlError

    found = []
    for n in _running_names(settings):
        try:
            found.append(ControlClient(n, settings.service_dir(n)).call("GET", "/v1/status", timeout=10))
        except ControlError:
            continue
    return found


def _revision_cell(st: dict[str, Any]) -> str:
    """The target revision, or during a canary the split: ``1 90% / 2 10%`` (stable first)."""
    c = st.get("canary")
    if not c:
        return str(st["revision"])
    return f"{c['stable']} {100 - c['weight']}% / {c['canary']} {c['weight']}%"


def _service_table(statuses: list[dict[str, Any]], wide: bool) -> Any:
    from rich.table import Table

    from kubeinfer.cli.objects import ready_condition

    t = Table(box=None, pad_edge=False)
    cols = ["NAME", "READY", "STATUS", "POLICY", "URL", "REVISION", "AGE"]
    if wide:
        cols += ["VERSION", "GRPC", "LOAD", "BOUNDS"]
    for col in cols:
        t.add_column(col)
    now = time.time()
    for st in statuses:
        row = [
            st["name"],
            f"{st['ready_replicas']}/{st['desired']}",
            "Ready" if st["ready"] else ready_condition(st)["reason"],
            st["autoscaling"]["policy"],
            st["endpoint"]["http"],
            _revision_cell(st),
            _age(now - st["created"]) if st.get("created") else "-",
        ]
        if wide:
            a, r = st["autoscaling"], st.get("router") or {}
            row += [
                st["version"],
                str(st["endpoint"].get("grpc") or "-"),
                f"{r.get('rps', 0):.0f} req/s",
                f"[{a['min']}, {a['max']}]",
            ]
        t.add_row(*row)
    return t


@app.command()
def get(
    name: Annotated[str | None, typer.Argument(help="A service's name; without it, every running service.")] = None,
    output: GetOutputOpt = "table",
) -> None:
    """List the running services, or one service and its replicas (pid, address, state, version, restarts).

    ``-o json|yaml`` prints InferenceService objects as Kubernetes does (a List without NAME)."""
    from kubeinfer.cli.objects import as_list, as_object

    _check_output(output, GET_OUTPUTS)
    if name is None:
        statuses = _statuses(_settings())
        if _emit(as_list([as_object(st) for st in statuses]), output):
            return
        if output == "name":
            for st in statuses:
                out.print(f"inferenceservice/{st['name']}", highlight=False)
        elif not statuses:
            err.print("No services are running (start one: kubeinfer up SPEC.yaml).", highlight=False)
        else:
            print_table(_service_table(statuses, wide=output == "wide"))
        return
    st = _call(name, "GET", "/v1/status")
    if _emit(as_object(st), output):
        return
    if output == "name":
        out.print(f"inferenceservice/{st['name']}", highlight=False)
        return
    out.print(_summary(st))
    print_table(_replica_table(st, wide=output == "wide"))


@app.command()
def describe(
    name: Annotated[str | None, typer.Argument(help="Service name (optional when one runs).")] = None,
    output: OutputOpt = "table",
) -> None:
    """Replicas, state, restarts and why, autoscaling, VPA recommendation and the events."""
    from rich.table import Table

    _check_output(output)
    st = _call(name, "GET", "/v1/status")
    if _emit(st, output):
        return
    out.print(_summary(st))
    a = st["autoscaling"]
    if a["reason"]:
        out.print(f"Autoscaling: {a['reason']}" + (f" ({a['message']})" if a["message"] else ""))
    if a.get("details"):
        out.print("  " + ", ".join(f"{k} {v:g}" for k, v in a["details"].items()), highlight=False)
    if st["cold_starts"]:
        out.print(f"Scale-from-zero waits (s): {', '.join(f'{c:.2f}' for c in st['cold_starts'])}")
    print_table(_replica_table(st))
    for r in st["replicas"]:
        if r["message"] or r["last_exit"]:
            le = r["last_exit"]
            last = f"last exit {le['reason']} (code {le['code']})" if le else ""
            out.print(f"  {r['id']}: {r['message'] or last}", highlight=False)
    v = st.get("vpa")
    if v:
        t = Table(title=f"VPA recommendation (updateMode {v['mode']})", box=None, title_justify="left")
        for col in ("", "CPU", "MEMORY"):
            t.add_column(col)
        for k in ("lower", "target", "upper"):
            t.add_row(k, _cpu(v[k]["cpu"]), _memory(v[k]["memory"]))
        print_table(t)
    t = Table(title="Events", box=None, title_justify="left")
    for col in ("AGE", "TYPE", "REASON", "OBJECT", "MESSAGE"):
        t.add_column(col)
    now = time.time()
    for e in st["events"][-30:]:
        count = f" (x{e['count']})" if e["count"] > 1 else ""
        t.add_row(_age(now - e["time"]), e["type"], e["reason"], e["object"], e["message"] + count)
    print_table(t)


def _cpu(cores: float) -> str:
    from kubeinfer.spec.quantity import format_cpu

    return "inf" if cores == float("inf") else format_cpu(cores)


def _memory(nbytes: float) -> str:
    from kubeinfer.spec.quantity import format_memory

    return "inf" if nbytes == float("inf") else format_memory(nbytes)


@app.command()
def scale(
    name: Annotated[str | None, typer.Argument(help="Service name (optional when one runs).")] = None,
    replicas: Annotated[
        int | None, typer.Option("--replicas", help="Replica count (an autoscaled service moves it again).")
    ] = None,
    min_replicas: Annotated[
        int | None, typer.Option("--min", help="Autoscaling lower bound (spec.autoscaling.minReplicas).")
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option("--max", help="Autoscaling upper bound (spec.autoscaling.maxReplicas).")
    ] = None,
) -> None:
    """Set the replica count, or an autoscaled service's bounds (--min/--max), without a new revision."""
    if (replicas is None) == (min_replicas is None and max_replicas is None):
        raise fail("give --replicas N, or --min and/or --max for an autoscaled service", 2)
    body: dict[str, Any] = {"replicas": replicas} if replicas is not None else {}
    if min_replicas is not None:
        body["min"] = min_replicas
    if max_replicas is not None:
        body["max"] = max_replicas
    client = _client(name)
    res = _call(client.name, "POST", "/v1/scale", body)
    out.print(f"{client.name}: {res['message']}", highlight=False, soft_wrap=True)


def _duration(text: str) -> float:
    """``--since`` as kubectl takes it: ``30s``, ``5m``, ``2h``, ``1h30m``."""
    import re

    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not text.strip() or parts is None:
        raise fail(f"--since {text!r}: give a duration such as 30s, 5m, 2h or 1h30m", 2)
    h, m, sec = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + sec


def _line_time(line: str) -> float | None:
    """When a log line was written, from the server's ``2026-12-05 19:08:37,413 LEVEL ...`` prefix (local time)."""
    from datetime import datetime

    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def _since(lines: list[str], cutoff: float, mtime: float) -> list[str]:
    """The lines written at or after ``cutoff``. A line without a time (a traceback, a print) belongs with the nearest
    timed line before it, or after it at the top of the file; a file without any time is as old as its last write."""
    times = [_line_time(ln) for ln in lines]
    later = next((t for t in times if t is not None), mtime)
    kept, last = [], None
    for line, t in zip(lines, times, strict=True):
        last = t if t is not None else last
        when = last if last is not None else later
        if when >= cutoff:
            kept.append(line)
    return kept


def _log_name(name: str | None, settings: Any) -> str:
    if name is not None:
        return name
    running = _running_names(settings)
    if len(running) == 1:
        return str(running[0])
    with_logs = (
        sorted(d.name for d in settings.home.iterdir() if (d / "logs").is_dir()) if settings.home.is_dir() else []
    )
    if not running and len(with_logs) == 1:
        return str(with_logs[0])
    which = f"running: {', '.join(running)}" if running else f"with logs: {', '.join(with_logs) or 'none'}"
    raise fail(f"give the service NAME ({which})", 2)


@app.command()
def logs(
    name: Annotated[str | None, typer.Argument(help="Service name (optional when one runs).")] = None,
    replica: Annotated[str | None, typer.Option("--replica", help="One replica's id (see `get`).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[int, typer.Option("--tail", help="Only the last N lines of each replica (-1: all).")] = -1,
    since: Annotated[
        str | None, typer.Option("--since", help="Only lines newer than this: 30s, 5m, 2h.", show_default=False)
    ] = None,
) -> None:
    """Print replica logs (all current replicas, each line prefixed, or one with --replica)."""
    from kubeinfer.local.control import ControlError

    settings = _settings()
    name = _log_name(name, settings)
    cutoff = None if since is None else time.time() - _duration(since)
    folder = settings.service_dir(name) / "logs"
    if replica is not None:
        files = [folder / f"{replica}.log"]
        if not files[0].exists():
            have = ", ".join(sorted(p.stem for p in folder.glob("*.log"))) or "none"
            raise fail(f"no logs for replica {replica!r} of {name!r} (replicas with logs: {have})", 2)
    else:
        try:
            ids = [r["id"] for r in _client(name).call("GET", "/v1/status")["replicas"]]
        except (ControlError, typer.Exit):
            ids = sorted(p.stem for p in folder.glob("*.log"))
        files = [folder / f"{i}.log" for i in ids if (folder / f"{i}.log").exists()]
        if not files:
            raise fail(f"no logs for {name!r} in {folder}", 1)
    prefix = len(files) > 1
    offsets = {f: 0 for f in files}
    first = True

    def dump() -> None:
        for f in files:
            with f.open("rb") as fh:
                fh.seek(offsets[f])
                data = fh.read()
                offsets[f] += len(data)
            lines = data.decode(errors="replace").splitlines()
            if first and cutoff is not None:
                lines = _since(lines, cutoff, f.stat().st_mtime)
            if first and tail >= 0:
                lines = lines[len(lines) - tail :] if tail else []
            for line in lines:
                sys.stdout.write(f"[{f.stem}] {line}\n" if prefix else line + "\n")
        sys.stdout.flush()

    dump()
    first = False
    try:
        while follow:
            time.sleep(0.25)
            dump()
    except KeyboardInterrupt:
        pass


@app.command()
def down(
    name: Annotated[str | None, typer.Argument(help="Service name (optional when one runs).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the drain.")] = 120.0,
) -> None:
    """Stop a service: stop taking requests, drain the replicas, exit."""
    from kubeinfer.local.control import pid_alive

    client = _client(name)
    try:
        pid = int(client.info()["pid"])
    except Exception as e:
        raise fail(str(e)) from None
    _call(client.name, "POST", "/v1/down", {})
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            import os

            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    if pid_alive(pid):
        raise fail(f"{client.name} still draining after {timeout:g} s (platform pid {pid})")
    out.print(f"{client.name} stopped")
