"""Local accelerators: discovery through NVML and assignment of GPUs to replicas.

A replica sees only what it is given through ``CUDA_VISIBLE_DEVICES`` (device UUIDs, so the numbering cannot
disagree with NVML's; MIG instances by their ``MIG-...`` UUID), as the NVIDIA device plugin does on a node:

- ``sharing: exclusive`` with ``count: N``: N whole GPUs nobody else uses;
- ``sharing: time-slicing`` / ``mps`` with ``fraction: f``: a GPU whose shares sum to at most 1 (best fit: the
  fullest one that still fits); the replica gets ``KUBEINFER_GPU_MEMORY_FRACTION=f`` to cap its own allocator
  (frameworks do not read a standard variable for this; runtimes and user models can), and under MPS
  ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``;
- ``sharing: mig`` with ``migProfile``: a free MIG instance of that profile.

The :class:`GpuAllocator` is pure bookkeeping over a :class:`GpuInventory`; :class:`NvmlInventory` is the real one
(``nvidia-ml-py``, the ``[gpu]`` extra, imported lazily) and :class:`kubeinfer.testing.local.FakeGpuInventory` the
one tests use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kubeinfer.spec.service import GpuSpec

__all__ = ["GpuAllocator", "GpuDevice", "GpuError", "GpuInventory", "MigDevice", "NvmlInventory"]


class GpuError(RuntimeError):
    """A GPU request that cannot be met on this machine; the message says what to change."""


@dataclass(frozen=True, slots=True)
class MigDevice:
    uuid: str
    profile: str
    """As in the spec: '1g.10gb'."""
    parent: int


@dataclass(frozen=True, slots=True)
class GpuDevice:
    index: int
    uuid: str
    name: str
    memory: int
    """Bytes."""
    mig: tuple[MigDevice, ...] = ()
    """MIG instances when MIG mode is on (the GPU itself is then not assignable)."""


class GpuInventory(Protocol):
    def devices(self) -> list[GpuDevice]:
        """The GPUs of this machine; raises :class:`GpuError` saying why none can be listed."""
        ...


class NvmlInventory:
    """GPUs through NVML (``pip install 'kubeinfer[gpu]'``)."""

    def devices(self) -> list[GpuDevice]:
        try:
            import pynvml  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise GpuError("nvidia-ml-py is not installed (pip install 'kubeinfer[gpu]')") from None
        try:
            pynvml.nvmlInit()
        except Exception as e:
            raise GpuError(f"NVML cannot start ({e}): no NVIDIA driver on this machine?") from None
        try:
            return [self._device(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()

    @staticmethod
    def _text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    def _device(self, nv: Any, i: int) -> GpuDevice:
        h = nv.nvmlDeviceGetHandleByIndex(i)
        mem = int(nv.nvmlDeviceGetMemoryInfo(h).total)
        migs: list[MigDevice] = []
        try:
            current, _ = nv.nvmlDeviceGetMigMode(h)
        except Exception:  # not MIG-capable
            current = 0
        if current:
            for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
                try:
                    m = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                except Exception:  # noqa: S112 - an empty MIG slot
                    continue
                gib = round(int(nv.nvmlDeviceGetMemoryInfo(m).total) / 2**30)
                slices = int(nv.nvmlDeviceGetAttributes(m).gpuInstanceSliceCount)
                migs.append(MigDevice(self._text(nv.nvmlDeviceGetUUID(m)), f"{slices}g.{gib}gb", i))
        return GpuDevice(i, self._text(nv.nvmlDeviceGetUUID(h)), self._text(nv.nvmlDeviceGetName(h)), mem, tuple(migs))


def _describe(gpu: GpuSpec) -> str:
    if gpu.sharing == "mig":
        return f"a MIG instance {gpu.migProfile}"
    if gpu.sharing in ("time-slicing", "mps"):
        return f"{gpu.fraction:g} of a GPU ({gpu.sharing})"
    return f"{gpu.count} whole GPU(s)"


class GpuAllocator:
    """Which replica holds which GPU (or share, or MIG instance). Pure bookkeeping over a device list."""

    def __init__(self, inventory: GpuInventory) -> None:
        self._inventory = inventory
        self._devices: list[GpuDevice] | None = None
        self._why_none = ""
        self.exclusive: dict[str, list[str]] = {}  # owner -> GPU uuids
        self.shares: dict[str, tuple[str, float]] = {}  # owner -> (GPU uuid, fraction)
        self.mig: dict[str, str] = {}  # owner -> MIG uuid

    def devices(self) -> list[GpuDevice]:
        if self._devices is None:
            try:
                self._devices = self._inventory.devices()
            except GpuError as e:
                self._devices, self._why_none = [], str(e)
        return self._devices

    def _used(self, uuid: str) -> float:
        if any(uuid in v for v in self.exclusive.values()):
            return 1.0
        return sum(f for u, f in self.shares.values() if u == uuid)

    def check(self, gpu: GpuSpec) -> None:
        """Fail early (at ``up``/``apply``) when this machine can never satisfy ``gpu``."""
        if not gpu.requested:
            return
        if gpu.vendor != "nvidia":
            raise GpuError(f"spec.resources.gpu.vendor {gpu.vendor!r}: only NVIDIA GPUs are discovered locally")
        devs = self.devices()
        if not devs:
            why = f" ({self._why_none})" if self._why_none else ""
            raise GpuError(
                f"spec.resources.gpu asks for {_describe(gpu)} but no NVIDIA GPU was found{why}: remove "
                "resources.gpu to run on CPU, or run on a machine with a GPU"
            )
        if gpu.sharing == "mig":
            if not any(m.profile == gpu.migProfile for d in devs for m in d.mig):
                have = sorted({m.profile for d in devs for m in d.mig}) or ["none: MIG mode is off"]
                raise GpuError(
                    f"spec.resources.gpu.migProfile {gpu.migProfile!r}: no such MIG instance here (have {', '.join(have)})"
                )
        elif gpu.count > len([d for d in devs if not d.mig]):
            raise GpuError(f"spec.resources.gpu.count {gpu.count}: this machine has {len(devs)} GPU(s) without MIG")

    def allocate(self, owner: str, gpu: GpuSpec) -> dict[str, str]:
        """The environment that gives ``owner`` its GPUs; :class:`GpuError` when none are free now."""
        if not gpu.requested:
            return {}
        self.check(gpu)
        self.release(owner)
        devs = self.devices()
        whole = [d for d in devs if not d.mig]
        if gpu.sharing == "mig":
            taken = set(self.mig.values())
            free = [m for d in devs for m in d.mig if m.profile == gpu.migProfile and m.uuid not in taken]
            if not free:
                raise GpuError(f"every MIG instance {gpu.migProfile} is in use (by {', '.join(sorted(self.mig))})")
            self.mig[owner] = free[0].uuid
            return {"CUDA_VISIBLE_DEVICES": free[0].uuid}
        if gpu.sharing in ("time-slicing", "mps"):
            frac = float(gpu.fraction or 1.0)
            fits = [d for d in whole if self._used(d.uuid) + frac <= 1.0 + 1e-9]
            if not fits:
                raise GpuError(f"no GPU has {frac:g} of its time left: lower maxReplicas or gpu.fraction")
            best = max(fits, key=lambda d: (self._used(d.uuid), -d.index))
            self.shares[owner] = (best.uuid, frac)
            env = {"CUDA_VISIBLE_DEVICES": best.uuid, "KUBEINFER_GPU_MEMORY_FRACTION": f"{frac:g}"}
            if gpu.sharing == "mps":
                env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, round(frac * 100)))
            return env
        free_whole = [d for d in whole if self._used(d.uuid) == 0]
        if len(free_whole) < gpu.count:
            raise GpuError(
                f"{gpu.count} free GPU(s) needed, {len(free_whole)} free: lower maxReplicas or share GPUs "
                "(sharing: time-slicing with a fraction)"
            )
        chosen = [d.uuid for d in free_whole[: gpu.count]]
        self.exclusive[owner] = chosen
        return {"CUDA_VISIBLE_DEVICES": ",".join(chosen)}

    def release(self, owner: str) -> None:
        self.exclusive.pop(owner, None)
        self.shares.pop(owner, None)
        self.mig.pop(owner, None)
