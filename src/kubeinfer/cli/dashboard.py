"""``kubeinfer dashboard``: the web dashboard of the InferenceServices on a cluster (docs/dashboard.md).

The page and server are the local platform's (:mod:`kubeinfer.local.dashboard`); the statuses come from the API
server (:mod:`kubeinfer.kube.dashboard_source`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from kubeinfer.cli.base import app, fail, out

__all__: list[str] = []

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@app.command()
def dashboard(
    port: Annotated[int, typer.Option(help="Port to serve the page on; 0 picks a free one.")] = 8090,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on: 127.0.0.1, or 0.0.0.0 inside a pod (reached through kubectl port-forward)."
        ),
    ] = "127.0.0.1",
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Namespace of the services [default: default].")
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="The services of every namespace.")
    ] = False,
    service: Annotated[str | None, typer.Option(help="Only this service (by name, in --namespace).")] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="kubeconfig file [default: $KUBECONFIG, ~/.kube/config, or in-cluster].")
    ] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context [default: current].")] = None,
    interval: Annotated[
        float, typer.Option(help="Seconds between reads of the cluster (and updates of the page).")
    ] = 2.0,
) -> None:
    """Serve the web dashboard of the InferenceServices on a cluster: replicas, conditions, events, HPA, and the
    pods' latency and queue where their /metrics are reachable (docs/dashboard.md)."""
    from kubeinfer.kube.api import KubeError, connect
    from kubeinfer.kube.dashboard_source import ClusterSource, unreachable
    from kubeinfer.local.dashboard import Dashboard, DashboardOptions
    from kubeinfer.local.dashboard_model import Prices, PricesError

    if all_namespaces and (namespace is not None or service is not None):
        raise fail("--all-namespaces shows every service: leave out --namespace and --service", 2)
    if service is not None and not _NAME.fullmatch(service):
        raise fail(f"--service {service!r} is not a service name (lower-case letters, digits and '-')", 2)
    if not interval > 0:
        raise fail(f"--interval {interval:g}: give a number of seconds > 0", 2)
    if not 0 <= port <= 65535:
        raise fail(f"--port {port}: give a port from 0 to 65535", 2)
    try:
        options = DashboardOptions(port=port, prices=Prices.from_env(os.environ), interval=interval)
    except PricesError as e:
        raise fail(str(e), 2) from None
    if kubeconfig is not None and not kubeconfig.is_file():
        raise fail(f"--kubeconfig {kubeconfig}: no such file", 2)
    from urllib3.exceptions import HTTPError

    try:
        api = connect(
            context, None if kubeconfig is None else str(kubeconfig)
        )  # reads the API server's discovery document: it answers, or this fails
        source = ClusterSource(api, None if all_namespaces else namespace or "default", service)
        found = source.read()  # a refused read (no CRD, no permission) stops here, with the API server's words
    except HTTPError as e:
        raise fail(unreachable(e)) from None
    except KubeError as e:  # KubeConfigError too
        raise fail(str(e)) from None
    where = "every namespace" if all_namespaces else f"namespace {source.namespace}"
    out.print(f"{len(found)} InferenceService(s) in {where}", highlight=False)
    try:
        asyncio.run(_serve(Dashboard(source, options), host))
    except OSError as e:
        raise fail(
            f"cannot listen on {host}:{port} for the dashboard: {e.strerror or e} (--port 0 for a free port)"
        ) from None


async def _serve(dash: Any, host: str) -> None:
    await dash.start(host)
    out.print(f"dashboard at {dash.url}", highlight=False)
    if host not in ("127.0.0.1", "localhost", "::1"):
        out.print(
            f"listening on {host}:{dash.port}; it answers requests for a loopback Host only (kubectl port-forward)",
            highlight=False,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await dash.stop()
