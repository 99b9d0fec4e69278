"""kubeinfer's testing surface, shipped with the package (as httpx ships ``MockTransport`` and kopf ``kopf.testing``).

- :class:`ServerProcess` -- a real replica (``python -m kubeinfer serve``) on free 127.0.0.1 ports
  (:mod:`kubeinfer.bench.server`).
- :mod:`~kubeinfer.testing.local` -- fakes of the local platform's protocols: clock, process runner, metrics and
  probes, router, GPU inventory.
- :mod:`~kubeinfer.testing.kube` -- :class:`FakeKubeApi`, an in-memory :class:`~kubeinfer.kube.api.KubeApi` that
  records server-side applies.

Each fake satisfies the protocol the production code takes (mypy checks it in each module). Production code never
imports this package (an import-linter contract in ``pyproject.toml``).
"""

from typing import TYPE_CHECKING

from kubeinfer._lazy import lazy_exports

if TYPE_CHECKING:
    from kubeinfer.bench.server import ServerProcess
    from kubeinfer.testing.kube import ApplyCall, FakeKubeApi
    from kubeinfer.testing.local import (
        FakeBackend,
        FakeClock,
        FakeGpuInventory,
        FakeLoad,
        FakeMetrics,
        FakeProcess,
        FakeRouter,
        FakeRunner,
    )

# Exports load on first use (PEP 562): a test of the kube fakes does not import the local platform, nor the reverse.
_EXPORTS = {
    "ApplyCall": "kubeinfer.testing.kube",
    "FakeBackend": "kubeinfer.testing.local",
    "FakeClock": "kubeinfer.testing.local",
    "FakeGpuInventory": "kubeinfer.testing.local",
    "FakeKubeApi": "kubeinfer.testing.kube",
    "FakeLoad": "kubeinfer.testing.local",
    "FakeMetrics": "kubeinfer.testing.local",
    "FakeProcess": "kubeinfer.testing.local",
    "FakeRouter": "kubeinfer.testing.local",
    "FakeRunner": "kubeinfer.testing.local",
    "ServerProcess": "kubeinfer.bench.server",
}

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "ApplyCall",
    "FakeBackend",
    "FakeClock",
    "FakeGpuInventory",
    "FakeKubeApi",
    "FakeLoad",
    "FakeMetrics",
    "FakeProcess",
    "FakeRouter",
    "FakeRunner",
    "ServerProcess",
]
