"""The command-line reference page (docs/cli.md), generated from the typer app so that it cannot drift from it.

It reads the click command tree that typer builds (``typer.main.get_command(app)``): every command's help text and
every argument and option with its type, default and help. Commands are grouped as the README presents them; a
command that no group names still appears, under "Other commands".

Regenerate with ``python -m kubeinfer.cli.reference > docs/cli.md``; a test fails when the page is stale.
"""

from __future__ import annotations

import sys
from typing import Any, Final

import typer

from kubeinfer.cli.app import app

__all__ = ["COMMAND", "GROUPS", "all_flags", "commands", "reference"]

COMMAND: Final = "python -m kubeinfer.cli.reference > docs/cli.md"
"""How docs/cli.md is made (run with the project's Python: ``.venv/bin/python``)."""

GROUPS: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    (
        "One replica",
        "Check a spec, load its model, serve it, and measure it.",
        ("validate", "fetch", "prepare", "serve", "bench", "profile"),
    ),
    (
        "Local platform",
        "A service on this machine: replica processes behind a router, with probes, restarts, autoscaling and "
        "rolling updates (state in `~/.kubeinfer`, or `$KUBEINFER_HOME`).",
        ("up", "apply", "get", "describe", "scale", "logs", "down"),
    ),
    (
        "Kubernetes",
        "The same spec on a cluster (docs/kubernetes.md): manifests, server-side apply, rollout status, the "
        "operator, the web dashboard and the image.",
        ("render", "deploy", "status", "delete", "operator", "dashboard", "build"),
    ),
    (
        "Planning",
        "Choose a policy and a placement before deploying: simulation on a trace, cost-optimal placement, "
        "GPU fragmentation.",
        ("simulate", "plan"),
    ),
)
"""(title, what the group is for, command names) in page order."""


def _root() -> Any:
    return typer.main.get_command(app)


def commands() -> list[tuple[str, Any]]:
    """``(full name, click command)`` for every leaf command, ``plan solve`` included, in the app's order."""
    out: list[tuple[str, Any]] = []

    def walk(prefix: str, cmd: Any) -> None:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            out.append((prefix, cmd))
            return
        for name, sub in subs.items():
            if not sub.hidden:
                walk(f"{prefix} {name}".strip(), sub)

    walk("", _root())
    return out


def all_flags() -> dict[str, list[str]]:
    """Every option string (``--max-error-rate``, ``-c``, ``--no-files``) of every command, by command."""
    return {
        name: [o for p in cmd.params if _is_option(p) and not p.hidden for o in (*p.opts, *p.secondary_opts)]
        for name, cmd in commands()
    }


def _is_option(p: Any) -> bool:
    return bool(p.param_type_name == "option")


def _cell(text: str) -> str:
    return " ".join(text.replace("\b", "").split()).replace("|", "\\|")


def _help(cmd: Any) -> list[str]:
    """The command's help as paragraphs (click marks unwrapped blocks with ``\\b``)."""
    text = (cmd.help or "").replace("\b", "").strip()
    return [" ".join(par.split()) for par in text.split("\n\n") if par.strip()]


def _usage(name: str, cmd: Any) -> str:
    parts = [f"kubeinfer {name}"]
    if any(_is_option(p) for p in cmd.params):
        parts.append("[OPTIONS]")
    for p in cmd.params:
        if _is_option(p):
            continue
        arg = p.name.upper() + ("..." if p.nargs != 1 else "")
        parts.append(arg if p.required else f"[{arg}]")
    return " ".join(parts)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def _param_row(p: Any, ctx: Any) -> str:
    if _is_option(p):
        names = ", ".join(f"`{o}`" for o in p.opts)
        if p.secondary_opts:
            names += " / " + ", ".join(f"`{o}`" for o in p.secondary_opts)
        kind = "flag" if p.is_flag else p.display_type(ctx).strip("<>")
    else:
        names = f"`{p.name.upper()}`"
        kind = p.display_type(ctx).strip("<>")
    if kind.startswith("list[") and kind.endswith("]"):
        kind = kind[5:-1].lower()
    if p.multiple or (p.nargs != 1 and not _is_option(p)):
        kind += ", repeatable"
    if p.required:
        default = "required"
    elif p.default is None or (_is_option(p) and p.is_flag and not p.secondary_opts):
        default = ""  # a plain flag is off unless given
    else:
        default = f"`{_value(p.default)}`"
    return f"| {names} | {_cell(kind)} | {default} | {_cell(p.help or '')} |"


def _command(name: str, cmd: Any) -> list[str]:
    ctx = typer.Context(cmd, info_name=name)
    lines = [f"### kubeinfer {name}", ""]
    for par in _help(cmd):
        lines += [par, ""]
    lines += ["```", _usage(name, cmd), "```", ""]
    params = [p for p in cmd.params if not p.hidden]
    if params:
        lines += ["| argument or option | type | default | description |", "|---|---|---|---|"]
        lines += [_param_row(p, ctx) for p in params]
        lines.append("")
    return lines


def _anchor(name: str) -> str:
    return "kubeinfer-" + name.replace(" ", "-")


def reference() -> str:
    """docs/cli.md: every command, grouped, with its arguments and options."""
    cmds = commands()
    grouped: list[tuple[str, str, list[tuple[str, Any]]]] = []
    placed: set[str] = set()
    for title, about, names in GROUPS:
        members = [(n, c) for n, c in cmds if n.split()[0] in names]
        members.sort(key=lambda nc: names.index(nc[0].split()[0]))
        placed.update(n for n, _ in members)
        grouped.append((title, about, members))
    rest = [(n, c) for n, c in cmds if n not in placed]
    if rest:
        grouped.append(("Other commands", "", rest))
    root = _root()
    lines = [
        "# kubeinfer command line",
        "",
        f"<!-- Generated from the typer app in src/kubeinfer/cli/ by `{COMMAND}`; do not edit. -->",
        "",
        " ".join(_help(root)),
        "",
        "Every command takes `-h`/`--help`; `kubeinfer --version` prints the version. Flags are kebab-case; "
        "`-o json` (or `yaml`, where offered) prints output for programs instead of a table. Exit codes: 0 success, "
        "1 failure (including `kubeinfer bench` above `--max-error-rate`), 2 usage error (a bad flag, an invalid "
        "spec). The spec's fields are in [spec.md](spec.md).",
        "",
    ]
    for title, _, members in grouped:
        links = ", ".join(f"[{n}](#{_anchor(n)})" for n, _ in members)
        lines.append(f"- {title}: {links}")
    lines.append("")
    for title, about, members in grouped:
        lines += [f"## {title}", ""]
        if about:
            lines += [about, ""]
        for n, c in members:
            lines += _command(n, c)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
