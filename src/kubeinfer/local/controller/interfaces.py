"""What the controller's parts share and nothing else: its one error and the two small interfaces they call.

The bottom of the package (see its ``__init__``): no module here imports another part of the controller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from kubeinfer.local.router import RouterStats

__all__ = ["ControllerError", "EmitEvent", "RouterLike"]


class ControllerError(RuntimeError):
    """A request the controller refuses; the message says why and what to do."""


class RouterLike(Protocol):
    """The router as the controller uses it: it sets the ready backends and the traffic split between revisions (a
    canary), and reads the load and per-revision counters."""

    def set_backends(self, ready: Sequence[Any]) -> None: ...

    def set_split(self, split: Sequence[tuple[int, int]] | None) -> None: ...

    def stats(self) -> RouterStats: ...


class EmitEvent(Protocol):
    """Record an event (what ``kubeinfer describe`` shows) about ``obj`` -- the service or one replica."""

    def __call__(self, type_: Literal["Normal", "Warning"], reason: str, obj: str, message: str) -> None: ...
