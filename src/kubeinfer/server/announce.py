"""The ``KUBEINFER_LISTENING`` line: how a replica tells whoever started it where it listens.

A server started with ``--port 0`` (or on Unix sockets only) knows its addresses only once it has bound them, so it
prints one machine-readable line on stdout, ``KUBEINFER_LISTENING {"http": P, "grpc": G, "pid": N, "model": M}``
(with ``"uds"`` and ``"grpc_uds"`` when it serves on Unix sockets; ``http``/``grpc`` null without TCP). Its
supervisors -- the local controller (from the replica's log), :class:`kubeinfer.testing.ServerProcess`, the drain
benchmark -- read it back. Both ends live here so that the writer and the readers cannot drift apart.

Standard library and orjson only: the readers (``kubeinfer.local``, ``kubeinfer.testing``) import it without the
server's dependencies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["MARK", "AnnounceError", "Announcement", "announce", "parse_announce"]

MARK = "KUBEINFER_LISTENING "
"""What starts the line; the JSON object follows it."""


class AnnounceError(ValueError):
    """A line that starts with :data:`MARK` but does not carry a valid announcement: the server and its reader
    disagree (a bug, or two versions of kubeinfer), which a clear message names rather than a stray ``KeyError``."""


@dataclass(frozen=True, slots=True)
class Announcement:
    """Where a replica listens: TCP ports (None without TCP), its Unix sockets (HTTP; gRPC, one per server process),
    its pid and the name of the model it serves."""

    http: int | None = None
    grpc: int | None = None
    pid: int | None = None
    model: str | None = None
    uds: str | None = None
    grpc_uds: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The object on the wire: ``uds`` and ``grpc_uds`` only when there are sockets (as the server always
        wrote it)."""
        out: dict[str, Any] = {"http": self.http, "grpc": self.grpc, "pid": self.pid, "model": self.model}
        if self.uds is not None:
            out["uds"] = self.uds
        if self.grpc_uds:
            out["grpc_uds"] = list(self.grpc_uds)
        return out

    def line(self) -> str:
        """The machine-readable line, without its newline."""
        return MARK + orjson.dumps(self.to_json()).decode()

    @classmethod
    def from_json(cls, info: Mapping[str, object]) -> Announcement:
        """Check each field's type: a missing field is None (or no sockets), a wrong one an :class:`AnnounceError`."""
        grpc_uds = info.get("grpc_uds")
        if grpc_uds is not None and not (isinstance(grpc_uds, list) and all(isinstance(p, str) for p in grpc_uds)):
            raise AnnounceError(f"announcement field 'grpc_uds' must be a list of paths, got {grpc_uds!r}")
        return cls(
            http=_field(info, "http", int),
            grpc=_field(info, "grpc", int),
            pid=_field(info, "pid", int),
            model=_field(info, "model", str),
            uds=_field(info, "uds", str),
            grpc_uds=tuple(grpc_uds or ()),
        )


def _field(info: Mapping[str, object], key: str, kind: type[Any]) -> Any:
    value = info.get(key)
    # bool is an int to Python, not a port
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    raise AnnounceError(f"announcement field {key!r} must be {kind.__name__} or null, got {value!r}")


def parse_announce(line: str) -> Announcement | None:
    """The announcement on ``line`` (a trailing newline is fine); None when the line is not one (readers scan all
    of a server's output for it). A line that starts with :data:`MARK` but is malformed raises
    :class:`AnnounceError`, which says what is wrong with it."""
    if not line.startswith(MARK):
        return None
    body = line[len(MARK) :].strip()
    try:
        info = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise AnnounceError(f"announcement is not JSON ({e}): {body[:200]!r}") from None
    if not isinstance(info, dict):
        raise AnnounceError(f"announcement is not a JSON object: {body[:200]!r}")
    return Announcement.from_json(info)


def announce(
    name: str,
    host: str,
    http_port: int | None,
    grpc_port: int | None,
    uds: Path | None,
    grpc_uds: Sequence[Path] = (),
) -> None:
    """Print the lines a supervisor waits for: one for people, then the :data:`MARK` line for programs.
    ``http``/``grpc`` are null without TCP; ``uds`` and ``grpc_uds`` (one socket per process) are then the way in."""
    where = Announcement(
        http=http_port,
        grpc=grpc_port,
        pid=os.getpid(),
        model=name,
        uds=str(uds) if uds is not None else None,
        grpc_uds=tuple(str(p) for p in grpc_uds),
    )
    print(f"kubeinfer serving {name!r} on " + " and ".join(_addresses(host, where)), flush=True)
    print(where.line(), flush=True)


def _addresses(host: str, where: Announcement) -> list[str]:
    """The human line's list, in the order a person would try them: TCP HTTP, HTTP socket, TCP gRPC, gRPC sockets."""
    out = [f"http://{host}:{where.http}"] if where.http is not None else []
    if where.uds is not None:
        out.append(f"http unix:{where.uds}")
    if where.grpc:
        out.append(f"grpc {host}:{where.grpc}")
    out += [f"grpc unix:{p}" for p in where.grpc_uds]
    return out
