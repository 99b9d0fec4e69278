"""The router of ``kubeinfer up``: the one entry point in front of the replicas, HTTP/1.1 and gRPC.

Its modules, each importing only those below it (the import-linter contract "Router package" in ``pyproject.toml``
checks it, so no import circle can come back):

- ``router``  -- ``Router``: the ready set, backend choice, request/try/retry bookkeeping through the retry budget,
  ejection, the buffer for scale from zero, housekeeping, stats and metrics. It starts the two fronts.
- ``http``    -- the HTTP/1.1 front (raw asyncio protocols, httptools, pooled upstream connections): the hot path.
- ``grpc``    -- the gRPC front (a generic handler proxying raw bytes, unary and streaming calls).
  ``http`` and ``grpc`` do not import each other; both call the router through ``api.RouterApi`` only.
- ``api``     -- the declared inside: ``RouterApi`` (what the fronts may call), ``BackendState``, ``Waiting``,
  ``Backend``, ``ConnLimits``.
- ``core``    -- pure decisions, no sockets or clocks: ``pick`` (power of two choices), ``RetryBudget``,
  ``RateWindow``, ``ArrivalPeak`` (the most arrivals within a sliding window, per second).

Import the public names from here: ``from kubeinfer.local.router import Backend, Router``.
"""

from kubeinfer.local.router.api import Backend, ConnLimits
from kubeinfer.local.router.router import BackendStats, Router, RouterStats

__all__ = ["Backend", "BackendStats", "ConnLimits", "Router", "RouterStats"]
