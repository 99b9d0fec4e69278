"""CPU affinity and thread plans, memory enforcement choice, and GPU assignment against a fake inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeinfer.local.gpu import GpuAllocator, GpuDevice, GpuError, MigDevice
from kubeinfer.local.resources import CgroupV2, cpu_set, plan_launch
from kubeinfer.local.testing import FakeGpuInventory
from kubeinfer.spec.service import GpuSpec, ResourcesSpec


@pytest.mark.parametrize(
    ("available", "slot", "cores", "expected"),
    [
        (range(8), 0, 2, (0, 1)),
        (range(8), 1, 2, (2, 3)),
        (range(8), 3, 2, (6, 7)),
        (range(8), 4, 2, (0, 1)),  # wraps around
        (range(8), 1, 0.5, (1,)),  # a fraction of a core is one core
        (range(4), 0, 16, (0, 1, 2, 3)),  # never more than the machine has
        ([3, 5, 9], 1, 1, (5,)),
    ],
)
def test_cpu_set(available: range, slot: int, cores: float, expected: tuple[int, ...]) -> None:
    assert cpu_set(list(available), slot, cores) == expected


def test_cpu_limit_sets_affinity_and_thread_counts() -> None:
    res = ResourcesSpec.model_validate({"requests": {"cpu": "500m"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    p = plan_launch(res, list(range(8)), 1)
    assert p.cpus == (2, 3) and p.threads == 2
    assert p.env["OMP_NUM_THREADS"] == "2" and p.env["OPENBLAS_NUM_THREADS"] == "2"
    assert p.memory_limit == 2**30 and p.rlimit_data == 2**30 and p.cgroup is None


def test_memory_limit_uses_the_cgroup_instead_of_rlimit_when_there_is_one() -> None:
    res = ResourcesSpec.model_validate({"limits": {"memory": "512Mi"}})
    p = plan_launch(res, [0, 1], 0, cgroup="/sys/fs/cgroup/x/kubeinfer-a")
    assert p.rlimit_data is None and p.cgroup == "/sys/fs/cgroup/x/kubeinfer-a" and p.cpus is None


def test_no_resources_no_constraints() -> None:
    p = plan_launch(ResourcesSpec(), [0, 1], 0)
    assert p.cpus is None and p.env == {} and p.memory_limit is None


def test_cgroup_v2_detection_says_why_not(tmp_path: Path) -> None:
    cg = CgroupV2(root=tmp_path, proc_cgroup=tmp_path / "nope")
    assert not cg.available and "not mounted" in cg.why_not
    (tmp_path / "cgroup.controllers").write_text("cpu memory")
    (tmp_path / "self").write_text("0::/user.slice\n")
    (tmp_path / "user.slice").mkdir()
    (tmp_path / "user.slice" / "cgroup.subtree_control").write_text("cpu memory")
    cg = CgroupV2(root=tmp_path, proc_cgroup=tmp_path / "self")
    assert cg.available
    path = cg.create("svc-1", 1234)
    assert path is not None and (Path(path) / "memory.max").read_text() == "1234"
    (Path(path) / "memory.events").write_text("low 0\noom 1\noom_kill 2\n")
    assert CgroupV2.oom_kills(path) == 2


# -- GPUs ---------------------------------------------------------------------------------------------------

H100 = [GpuDevice(i, f"GPU-{i}", "H100", 80 * 2**30) for i in range(2)]
MIG = GpuDevice(
    0,
    "GPU-m",
    "A100",
    40 * 2**30,
    mig=(MigDevice("MIG-a", "1g.5gb", 0), MigDevice("MIG-b", "1g.5gb", 0), MigDevice("MIG-c", "3g.20gb", 0)),
)


def test_whole_gpus_are_exclusive() -> None:
    a = GpuAllocator(FakeGpuInventory(H100))
    spec = GpuSpec(count=1)
    assert a.allocate("r1", spec) == {"CUDA_VISIBLE_DEVICES": "GPU-0"}
    assert a.allocate("r2", spec) == {"CUDA_VISIBLE_DEVICES": "GPU-1"}
    with pytest.raises(GpuError, match="1 free GPU"):
        a.allocate("r3", spec)
    a.release("r1")
    assert a.allocate("r3", spec) == {"CUDA_VISIBLE_DEVICES": "GPU-0"}


def test_time_slicing_packs_fractions_onto_one_gpu_with_a_memory_fraction() -> None:
    a = GpuAllocator(FakeGpuInventory(H100))
    spec = GpuSpec(sharing="time-slicing", fraction=0.5)
    envs = [a.allocate(f"r{i}", spec) for i in range(4)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["GPU-0", "GPU-0", "GPU-1", "GPU-1"]
    assert envs[0]["KUBEINFER_GPU_MEMORY_FRACTION"] == "0.5"
    with pytest.raises(GpuError, match="time left"):
        a.allocate("r5", spec)
    with pytest.raises(GpuError, match="free GPU"):
        a.allocate("whole", GpuSpec(count=1))  # shared GPUs are not free for exclusive use


def test_mps_sets_the_active_thread_percentage() -> None:
    env = GpuAllocator(FakeGpuInventory(H100)).allocate("r", GpuSpec(sharing="mps", fraction=0.25))
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"


def test_mig_instances_are_assigned_by_uuid() -> None:
    a = GpuAllocator(FakeGpuInventory([MIG]))
    spec = GpuSpec(sharing="mig", migProfile="1g.5gb")
    assert a.allocate("r1", spec) == {"CUDA_VISIBLE_DEVICES": "MIG-a"}
    assert a.allocate("r2", spec) == {"CUDA_VISIBLE_DEVICES": "MIG-b"}
    with pytest.raises(GpuError, match="in use"):
        a.allocate("r3", spec)
    with pytest.raises(GpuError, match=r"no such MIG instance here \(have 1g.5gb, 3g.20gb\)"):
        a.check(GpuSpec(sharing="mig", migProfile="2g.10gb"))


def test_no_gpu_gives_a_clear_message() -> None:
    a = GpuAllocator(FakeGpuInventory(error="nvidia-ml-py is not installed"))
    with pytest.raises(GpuError) as e:
        a.check(GpuSpec(count=1))
    msg = str(e.value)
    assert "spec.resources.gpu asks for 1 whole GPU(s)" in msg and "nvidia-ml-py" in msg and "remove" in msg
    a.check(GpuSpec())  # asking for none is fine anywhere
    assert a.allocate("r", GpuSpec()) == {}
