"""Kubernetes commands: render, deploy, delete, status, operator, build. Each parses flags and calls kubeinfer.kube."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from kubeinfer.cli.base import app, err, fail, load_or_fail, out, print_table
from kubeinfer.kube.versions import SUPPORTED_VERSIONS

if TYPE_CHECKING:
    from kubeinfer.kube.render import RenderOptions

__all__: list[str] = []

_VERSION_HELP = f"Kubernetes version to render for ({SUPPORTED_VERSIONS[0]} .. {SUPPORTED_VERSIONS[-1]})."


def _options(
    target_version: str,
    cloud: str | None,
    keda: bool,
    namespace: str | None = None,
    image: str | None = None,
    accelerator: str | None = None,
    model_in_image: bool = False,
) -> RenderOptions:
    from kubeinfer.kube.render import RenderOptions

    try:
        return RenderOptions(
            target_version=target_version.removeprefix("v"),
            cloud=cloud,  # type: ignore[arg-type]  # checked by RenderOptions
            keda=keda,
            namespace=namespace,
            image=image,
            accelerator=accelerator,
            model_in_image=model_in_image,
        )
    except ValueError as e:
        raise fail(str(e), 2) from None


def _print(objects: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        out.print_json(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    else:
        from kubeinfer.kube.render import dump_yaml

        typer.echo(dump_yaml(objects), nl=False)


@app.command()
def render(
    spec_file: Annotated[Path | None, typer.Argument(help="InferenceService YAML.", show_default=False)] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="yaml | json")] = "yaml",
    target_version: Annotated[str, typer.Option(help=_VERSION_HELP)] = SUPPORTED_VERSIONS[-1],
    cloud: Annotated[str | None, typer.Option(help="Accelerator node selection preset: gke | eks | aks.")] = None,
    keda: Annotated[
        bool, typer.Option("--keda", help="A KEDA ScaledObject instead of an HPA (scale to zero).")
    ] = False,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Override metadata.namespace.")] = None,
    image: Annotated[str | None, typer.Option(help="Override spec.image.")] = None,
    accelerator: Annotated[str | None, typer.Option(help="Cloud GPU type label value, e.g. nvidia-l4 on GKE.")] = None,
    crd: Annotated[bool, typer.Option("--crd", help="Print the InferenceService CRD instead.")] = False,
    model_in_image: Annotated[
        bool,
        typer.Option(
            "--model-in-image",
            help="The image has the model baked in (kubeinfer build): no init container downloads a remote model.",
        ),
    ] = False,
) -> None:
    """Print the Kubernetes manifests for a spec (Deployment, Service, HPA, ...), ready for kubectl apply."""
    if output not in ("yaml", "json"):
        raise fail(f"--output {output!r}: use yaml or json", 2)
    if crd:
        from kubeinfer.kube.crd import crd as make_crd

        _print([make_crd()], output)
        return
    if spec_file is None:
        raise fail("give a spec file (or --crd)", 2)
    svc = load_or_fail(spec_file)
    from kubeinfer.kube.render import render_all

    rendered = render_all(svc, _options(target_version, cloud, keda, namespace, image, accelerator, model_in_image))
    _image_note(svc, image, spec_file, model_in_image)
    for note in rendered.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", markup=True, highlight=False, soft_wrap=True)
    _print(rendered.objects, output)


def _image_note(svc: Any, image: str | None, spec_file: Path, model_in_image: bool = False) -> None:
    """Say so when the manifests would run the default server image, which holds no model (a remote model is
    downloaded by the init container, unless it is said to be in the image)."""
    from kubeinfer.storage import is_remote

    if all(is_remote(m.uri) for m in svc.spec.served_models) and not model_in_image:
        return  # every model (each entry of spec.models) is fetched by an init container
    if image is None and "image" not in svc.spec.model_fields_set:
        err.print(
            f"[yellow]note:[/] spec.image is not set: the pods run {escape(svc.spec.image)}, which holds no model; "
            f"build this service's image (`kubeinfer build {escape(str(spec_file))}`) and set spec.image or pass "
            "--image",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )


def _connect(context: str | None) -> Any:
    from kubeinfer.kube.api import KubeConfigError, connect

    try:
        return connect(context)
    except KubeConfigError as e:
        raise fail(str(e)) from None


@app.command()
def deploy(
    spec_file: Annotated[Path, typer.Argument(help="InferenceService YAML.", show_default=False)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the server-side-apply plan; change nothing.")
    ] = False,
    context: Annotated[str | None, typer.Option(help="kubeconfig context [default: current].")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Override metadata.namespace.")] = None,
    target_version: Annotated[str, typer.Option(help=_VERSION_HELP)] = SUPPORTED_VERSIONS[-1],
    cloud: Annotated[str | None, typer.Option(help="gke | eks | aks")] = None,
    keda: Annotated[bool, typer.Option("--keda", help="Scale with KEDA instead of an HPA.")] = False,
    image: Annotated[str | None, typer.Option(help="Override spec.image.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the rollout.")] = True,
    model_in_image: Annotated[
        bool,
        typer.Option(
            "--model-in-image",
            help="The image has the model baked in (kubeinfer build): no init container downloads a remote model.",
        ),
    ] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait [default: progressDeadlineSeconds].")] = None,
    force_conflicts: Annotated[
        bool,
        typer.Option(
            "--force-conflicts", help="Take over fields another field manager owns (kubectl scale, edit, apply)."
        ),
    ] = False,
) -> None:
    """Server-side apply the manifests, prune what the spec no longer needs, and wait for the rollout."""
    from kubeinfer.kube.api import ApplyConflictError, KubeError, SystemClock
    from kubeinfer.kube.deploy import execute, explain_conflict, plan, wait_rollout
    from kubeinfer.kube.render import dump_yaml, render_all
    from kubeinfer.kube.status import RolloutStatus

    svc = load_or_fail(spec_file)
    opts = _options(target_version, cloud, keda, namespace, image, model_in_image=model_in_image)
    rendered = render_all(svc, opts)
    ns = opts.namespace or svc.metadata.namespace
    _image_note(svc, image, spec_file, model_in_image)
    for note in rendered.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", markup=True, highlight=False, soft_wrap=True)
    api = None
    if not dry_run or context is not None:
        api = _connect(context)
    try:
        steps = plan(rendered.objects, api, name=svc.name, namespace=ns)
        if dry_run:
            out.print(
                f"[bold]plan[/] for InferenceService {escape(ns)}/{escape(svc.name)} (server-side apply, field manager "
                "kubeinfer):",
                markup=True,
                soft_wrap=True,
            )
            for s in steps:
                out.print(
                    f"  {s.action:6} {escape(str(s.ref))}  [dim]{escape(s.reason)}[/]",
                    markup=True,
                    highlight=False,
                    soft_wrap=True,
                )
            if api is None:
                out.print("  [dim](no cluster: objects to prune are not known)[/]", markup=True)
            else:
                execute(steps, api, force=force_conflicts, dry_run=True)
                out.print("  [green]the API server accepted every object (server-side dry run)[/]", markup=True)
            typer.echo("---")
            typer.echo(dump_yaml([s.obj for s in steps if s.action == "apply"]), nl=False)
            return
        assert api is not None
        execute(
            steps,
            api,
            force=force_conflicts,
            on_step=lambda s: err.print(
                f"{s.action:6} {s.ref}" + (f" ({s.reason})" if s.action != "apply" else ""), highlight=False
            ),
        )
    except ApplyConflictError as e:
        raise fail(explain_conflict(e)) from None
    except KubeError as e:
        raise fail(str(e)) from None  # fail() prints text as it is: field paths hold brackets
    if not wait:
        return
    from rich.status import Status

    limit = timeout if timeout is not None else svc.spec.rollout.progressDeadlineSeconds
    with Status("waiting for the rollout ...", console=err) as spinner:

        def update(st: RolloutStatus) -> None:
            spinner.update(escape(f"{st.ready}/{st.desired} ready, {st.updated} updated: {st.reason} {st.message}"))

        try:
            final = wait_rollout(api, svc.name, ns, SystemClock(), timeout=limit, on_update=update)
        except KubeError as e:
            raise fail(str(e)) from None
    if final.phase != "Ready":
        raise fail(f"rollout of {ns}/{svc.name} failed: {final.reason}: {final.message}")
    out.print(
        f"[green]ready[/]: {escape(f'{ns}/{svc.name} {final.message}; http://{svc.name}.{ns}.svc.cluster.local')}",
        markup=True,
    )


def _target(target: str, namespace: str | None) -> tuple[str, str]:
    """A service named by its spec file or by its name (``status iris -n ml``, as kubectl takes either)."""
    import re

    path = Path(target)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        svc = load_or_fail(path)
        return svc.name, namespace or svc.metadata.namespace
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", target):
        raise fail(
            f"{target!r} is neither a spec file nor a service name (lower-case letters, digits and '-', at most "
            "63 characters)",
            2,
        )
    return target, namespace or "default"


TargetArg = Annotated[
    str, typer.Argument(help="The service: its name (with -n) or its InferenceService YAML.", show_default=False)
]


@app.command()
def delete(
    target: TargetArg,
    context: Annotated[str | None, typer.Option(help="kubeconfig context.")] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="[default: the spec's, or default]")
    ] = None,
) -> None:
    """Delete every object kubeinfer deployed for the service."""
    from kubeinfer.kube.api import KubeError
    from kubeinfer.kube.deploy import delete_service

    name, ns = _target(target, namespace)
    try:
        gone = delete_service(_connect(context), name, ns)
    except KubeError as e:
        raise fail(str(e)) from None
    for g in gone:
        out.print(f"deleted {g}", highlight=False)
    if not gone:
        out.print(f"nothing to delete for {ns}/{name}")


@app.command()
def status(
    target: TargetArg,
    context: Annotated[str | None, typer.Option(help="kubeconfig context.")] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="[default: the spec's, or default]")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
) -> None:
    """The rollout state of a deployed service and, if stuck, why (image pull, GPUs, crash loop, probes); with the
    operator running a canary, its split and step (the InferenceService's ``status.canary``)."""
    from dataclasses import asdict

    from rich.table import Table

    from kubeinfer.kube.api import KubeError
    from kubeinfer.kube.deploy import observe

    name, ns = _target(target, namespace)
    if output not in ("table", "json"):
        raise fail(f"--output {output!r}: use table or json", 2)
    try:
        api = _connect(context)
        st = observe(api, name, ns)
        canary = _canary_of(api, name, ns)
    except KubeError as e:
        raise fail(str(e)) from None
    if output == "json":
        doc = asdict(st)
        if canary is not None:
            doc["canary"] = canary
        out.print_json(json.dumps(doc))
    else:
        t = Table(title=f"{ns}/{name}")
        for col in ("phase", "ready", "updated", "reason", "message"):
            t.add_column(col)
        t.add_row(st.phase, f"{st.ready}/{st.desired}", str(st.updated), st.reason, st.message)
        print_table(t)
        if canary is not None:
            out.print(
                f"canary: revision {canary['stableRevision']} {100 - canary['weight']}% / revision "
                f"{canary['canaryRevision']} {canary['weight']}% (step {canary['step']}/{len(canary['steps'])}, "
                f"{str(canary['phase']).lower()})" + (f": {canary['message']}" if canary.get("message") else ""),
                highlight=False,
                soft_wrap=True,
            )
    if st.phase == "Failed":
        raise typer.Exit(1)


def _canary_of(api: Any, name: str, namespace: str) -> dict[str, Any] | None:
    """``status.canary`` of the InferenceService, or None (none runs, no such object, or no CRD: deployed without
    the operator)."""
    from kubeinfer.kube.api import KubeError
    from kubeinfer.kube.operator import API_VERSION

    try:
        obj = api.get(API_VERSION, "InferenceService", name, namespace)
    except KubeError:
        return None
    canary = ((obj or {}).get("status") or {}).get("canary")
    return dict(canary) if canary else None


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Watch only these namespaces.")
    ] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context (default: in-cluster or current).")] = None,
    cloud: Annotated[str | None, typer.Option(help="gke | eks | aks")] = None,
    target_version: Annotated[str, typer.Option(help=_VERSION_HELP)] = SUPPORTED_VERSIONS[-1],
    interval: Annotated[
        float, typer.Option(help="Seconds between status refreshes and kpa/predictive decisions.")
    ] = 15.0,
    leader_elect: Annotated[
        bool,
        typer.Option(help="Lead only while holding the Lease (several replicas: one reconciles, the others wait)."),
    ] = True,
    leader_namespace: Annotated[
        str | None,
        typer.Option(help="Namespace of the Lease [default: $POD_NAMESPACE, else kubeinfer-system]."),
    ] = None,
    lease_duration: Annotated[float, typer.Option(help="Seconds a Lease holds without renewal.")] = 15.0,
    renew_deadline: Annotated[float, typer.Option(help="Seconds the leader may fail to renew before it stops.")] = 10.0,
    retry_period: Annotated[float, typer.Option(help="Seconds between attempts to acquire or renew.")] = 2.0,
) -> None:
    """Run the InferenceService operator (kopf): reconcile children, report status, autoscale kpa/predictive."""
    try:
        from kubeinfer.kube.operator_kopf import LeaderOptions, run
    except ModuleNotFoundError as e:
        raise fail(f"{e.name} is not installed: pip install 'kubeinfer[kube]'") from None
    from kubeinfer.kube.api import KubeConfigError

    leader = None
    if leader_elect:
        ns = leader_namespace or os.environ.get("POD_NAMESPACE") or "kubeinfer-system"
        try:
            leader = LeaderOptions(
                ns, lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period
            )
        except ValueError as e:
            raise fail(f"--retry-period, --renew-deadline, --lease-duration: {e}", 2) from None
    try:
        run(namespace, _options(target_version, cloud, False), context, interval, leader)
    except KubeConfigError as e:
        raise fail(str(e)) from None


@app.command()
def build(
    spec_file: Annotated[Path, typer.Argument(help="InferenceService YAML.", show_default=False)],
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Directory for the build context.")] = Path(
        "build"
    ),
    base_image: Annotated[str | None, typer.Option(help="Server image to build FROM.")] = None,
) -> None:
    """Write a container build context (Dockerfile, model, spec) for the service."""
    from kubeinfer.kube.build import BuildError, build_context, service_image

    svc = load_or_fail(spec_file)
    try:
        ctx = build_context(svc, spec_file.resolve().parent, output_dir, base_image)
    except BuildError as e:
        raise fail(str(e), 2) from None
    for f in ctx.files:
        out.print(f"  {output_dir / f}", highlight=False, soft_wrap=True)
    extras = f" --build-arg EXTRAS={ctx.extras}" if ctx.extras else ""
    image = service_image(svc)
    out.print(
        f"build the server image once:  docker build -f deploy/Dockerfile{extras} -t {ctx.base_image} .\n"
        f"then this service's image:    docker build -t {image} {output_dir}",
        highlight=False,
        soft_wrap=True,  # commands to copy: never wrapped
    )
    if "image" not in svc.spec.model_fields_set:
        out.print(
            f"and run it: set spec.image: {image} in {spec_file}, or `kubeinfer deploy {spec_file} --image {image}`",
            highlight=False,
            soft_wrap=True,
        )
