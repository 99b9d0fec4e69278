"""The control endpoint of a running service, and its client (what ``kubeinfer get/describe/apply/scale/down`` use).

HTTP on 127.0.0.1 only, on a random port, with a bearer token: both live in the service's state folder
(``$KUBEINFER_HOME/NAME/control.json`` and ``token``, the token file readable by its owner only, 0600). A request
without the right token gets 401. Bodies are JSON.

``GET /v1/status`` -- replicas, events, autoscaling, VPA; ``POST /v1/apply`` ``{"spec": {...}, "base_dir": ...}``;
``POST /v1/scale`` ``{"replicas": N}``; ``POST /v1/down``.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from kubeinfer.local.files import pid_alive, private_dir, write_private
from kubeinfer.spec.load import strict_json

__all__ = [
    "BadRequest",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "NotRunning",
    "pid_alive",
    "read_control",
    "write_token",
]


class ControlError(RuntimeError):
    """The platform refused a command or could not be reached; the message says why."""


class NotRunning(ControlError):
    pass


class BadRequest(ControlError):
    """A control body of the wrong shape (answered 400, with the field and what it takes)."""


def write_token(folder: Path) -> str:
    token = secrets.token_urlsafe(32)
    write_private(folder / "token", token)
    return token


def read_control(folder: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((folder / "control.json").read_text()))
    except (OSError, ValueError):
        return None


Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlServer:
    def __init__(self, folder: Path, handlers: dict[tuple[str, str], Handler]) -> None:
        self.folder = folder
        self.handlers = handlers
        self.token = ""
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            return web.json_response(
                {"error": "missing or wrong token (see the token file in the state folder)"}, status=401
            )
        handler = self.handlers.get((request.method, request.path))
        if handler is None:
            return web.json_response({"error": f"no route {request.method} {request.path}"}, status=404)
        try:
            body = strict_json(await request.read()) if request.can_read_body else {}
        except ValueError as e:
            return web.json_response({"error": f"the body is not JSON: {e}"}, status=400)
        if type(body) is not dict:
            return web.json_response(
                {"error": f"the body must be a JSON object, got {type(body).__name__}"}, status=400
            )
        try:
            result = await handler(body)
        except BadRequest as e:
            return web.json_response({"error": str(e)}, status=400)
        except ControlError as e:
            return web.json_response({"error": str(e)}, status=422)
        return web.json_response(result, dumps=lambda o: json.dumps(o, default=str))

    async def start(self, extra: dict[str, Any]) -> int:
        private_dir(self.folder)
        self.token = write_token(self.folder)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        info = {"port": self.port, "pid": os.getpid(), **extra}
        write_private(self.folder / "control.json", json.dumps(info))
        return self.port

    async def stop(self) -> None:
        (self.folder / "control.json").unlink(missing_ok=True)
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class ControlClient:
    name: str
    folder: Path

    def info(self) -> dict[str, Any]:
        info = read_control(self.folder)
        if info is None or not pid_alive(int(info.get("pid", 0))):
            raise NotRunning(
                f"service {self.name!r} is not running (nothing answers in {self.folder}): "
                f"start it with `kubeinfer up SPEC.yaml`"
            )
        return info

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        info = self.info()
        try:
            token = (self.folder / "token").read_text().strip()
        except OSError as e:
            raise ControlError(f"cannot read the token of {self.name!r}: {e}") from None
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{info['port']}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                msg = json.loads(e.read()).get("error", "")
            except ValueError:
                msg = ""
            raise ControlError(msg or f"HTTP {e.code}") from None
        except OSError as e:
            raise NotRunning(f"service {self.name!r} does not answer on 127.0.0.1:{info['port']}: {e}") from None
