"""Listeners: opening a replica's TCP and Unix sockets, where a replica without TCP serves gRPC, and closing a
listener without losing its backlog.

Both the single server (:mod:`kubeinfer.server.runner`) and the parent of several
(:mod:`kubeinfer.server.processes`) open listeners; they take them from here, so that neither imports the other for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "bind",
    "connection_cap",
    "grpc_socket_path",
    "listen_tcp",
    "listen_unix",
    "no_tcp_needs_uds",
    "stop_new_connections",
]

log = logging.getLogger("kubeinfer.server")

_SO_ATTACH_FILTER = 26  # Linux, <asm-generic/socket.h>


def bind(host: str, port: int, what: str, flag: str, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket, not yet listening (the parent of several server processes holds its ports so); a port in
    use ends ``serve`` with a message that names the flag to change (``what``: which listener, for that message)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SystemExit(
            f"kubeinfer serve: cannot listen{what} on {host}:{port}: {e.strerror} "
            f"(choose another {flag}, or stop what uses it)"
        ) from None
    return sock


def listen_tcp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The HTTP listener, inheritable so that a forked server process can serve on it."""
    sock = bind(host, port, "", "--port", reuse_port=reuse_port)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def listen_unix(path: Path) -> socket.socket:
    """A Unix-domain listener (user-only permissions): the local router's path to its replicas, which spares both
    ends the loopback TCP stack on every request."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
    except OSError as e:
        sock.close()
        raise SystemExit(f"kubeinfer serve: cannot listen on {path}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def no_tcp_needs_uds(uds: Path | None) -> Path:
    """``--no-tcp``'s socket: without one the server would have nowhere to listen, which is a usage error."""
    if uds is None:
        raise SystemExit("kubeinfer serve: --no-tcp needs --uds PATH (the Unix socket to serve on instead)")
    return uds


def grpc_socket_path(uds: Path, index: int | None = None) -> Path:
    """The Unix socket a replica served on ``uds`` alone (``serve --no-tcp``) takes gRPC on: ``NAME.grpc.sock`` next
    to it, or ``NAME.grpc-INDEX.sock`` for each process of a multi-process replica (grpc cannot share one listener
    between processes, and ``SO_REUSEPORT`` does not apply to Unix sockets). Here so that the local controller, which
    checks that every path fits ``sun_path``, names them as the server does."""
    return uds.with_suffix(".grpc.sock" if index is None else f".grpc-{index}.sock")


def stop_new_connections(sockets: Iterable[Any]) -> bool:
    """Make the kernel drop new connection attempts on ``sockets`` without closing them (Linux; False elsewhere).

    Closing a listening socket resets every connection in its accept backlog: those clients already sent their
    request, and lose it. A classic BPF filter that accepts nothing, attached to the listener, drops incoming SYNs
    instead (the client retries its SYN a second later, finds no listener and is refused: it knows nothing was sent),
    while connections already established -- those in the backlog included -- are not affected (a connection takes
    its listener's filter when its handshake completes, which for them was before)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import struct

    drop_all = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF_RET | BPF_K, 0: keep nothing
    prog = struct.pack("HL", 1, ctypes.addressof(drop_all))  # struct sock_fprog {len; filter*}
    done = False
    for sock in sockets:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue  # a Unix socket's backlog is the local router's, which stops sending first
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, prog)
            done = True
        except OSError as e:
            log.warning("cannot filter new connections before closing a listener: %s", e)
    return done


RESERVED_FDS = 256
"""File descriptors kept out of the connection cap: the model's files, logs, sockets to replicas, pipes."""


def connection_cap(wanted: int, per_connection: int = 1, *, chosen: bool = True) -> int:
    """The connection cap in force: ``wanted`` (``server.limits.maxConnections``), lowered to what the process's
    file-descriptor limit allows (``per_connection`` descriptors each, 2 for a proxy) after raising the soft limit
    to the hard one. Past the cap connections are answered 503 and closed; past the descriptor limit ``accept()``
    fails and the whole server stops taking connections, so the cap must come first. ``chosen=False``: ``wanted`` is
    the default, not the user's number, and lowering it is logged at info level rather than warned about."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    except ImportError:  # not POSIX
        return wanted
    allowed = max(16, (int(soft) - RESERVED_FDS) // max(1, per_connection))
    if allowed < wanted:
        log.log(
            logging.WARNING if chosen else logging.INFO,
            "server.limits.maxConnections %d is more than the file-descriptor limit (ulimit -n %d) allows: the cap "
            "is %d",
            wanted,
            soft,
            allowed,
        )
    return min(wanted, allowed)
