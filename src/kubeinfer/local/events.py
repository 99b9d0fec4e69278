"""Events: every action the platform takes, with its reason (what ``kubeinfer describe`` shows, as kubectl does)."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Event", "EventLog"]


@dataclass(frozen=True, slots=True)
class Event:
    time: float
    """Wall-clock seconds (for people; decisions use the monotonic clock)."""
    type: Literal["Normal", "Warning"]
    reason: str
    object: str
    message: str
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class EventLog:
    """The last ``limit`` events; a repeat of the latest event (same object, reason, message) bumps its count."""

    def __init__(self, limit: int = 500) -> None:
        self._events: deque[Event] = deque(maxlen=limit)

    def record(self, time: float, type: Literal["Normal", "Warning"], reason: str, obj: str, message: str) -> Event:
        last = self._events[-1] if self._events else None
        if last is not None and (last.object, last.reason, last.message) == (obj, reason, message):
            ev = Event(time, type, reason, obj, message, last.count + 1)
            self._events[-1] = ev
            return ev
        ev = Event(time, type, reason, obj, message)
        self._events.append(ev)
        return ev

    def list(self, obj: str | None = None) -> list[Event]:
        return [e for e in self._events if obj is None or e.object == obj]
