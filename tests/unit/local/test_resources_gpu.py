"""CPU affinity and thread plans, memory enforcement choice, and GPU assignment against a fake inventory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubeinfer.local.gpu import GpuAllocator, GpuDevice, GpuError, MigDevice
from kubeinfer.local.resources import CgroupV2, CpuQuota, cpu_set, plan_launch
from kubeinfer.spec.service import GpuSpec, ResourcesSpec
from kubeinfer.testing.local import FakeGpuInventory


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


def test_groups_left_by_a_killed_platform_are_swept(tmp_path: Path) -> None:
    import os
    import subprocess

    (tmp_path / "cgroup.controllers").write_text("cpu memory")
    (tmp_path / "self").write_text("0::/user.slice\n")
    base = tmp_path / "user.slice"
    base.mkdir()
    (base / "cgroup.subtree_control").write_text("cpu memory")
    cg = CgroupV2(root=tmp_path, proc_cgroup=tmp_path / "self")
    child = subprocess.Popen(["true"])  # a pid that has exited
    child.wait()
    dead = child.pid
    (base / f"kubeinfer-svc-r1-1-{dead}").mkdir()  # left by a platform that was killed
    (base / f"kubeinfer-svc-r2-1-{os.getpid()}").mkdir()  # this platform's own: kept
    (base / "other-group").mkdir()  # not ours: kept
    assert cg.sweep_stale() == [str(base / f"kubeinfer-svc-r1-1-{dead}")]
    assert sorted(p.name for p in base.iterdir() if p.is_dir()) == [f"kubeinfer-svc-r2-1-{os.getpid()}", "other-group"]


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


def test_only_a_cpu_limit_becomes_a_quota_group_in_the_launch_plan() -> None:
    limited = ResourcesSpec.model_validate({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m"}})
    p = plan_launch(limited, [0, 1], 0, cpu_cgroup="/sys/fs/cgroup/cpu/kubeinfer-a")
    assert p.to_json()["cgroups"] == ["/sys/fs/cgroup/cpu/kubeinfer-a"]
    requested = ResourcesSpec.model_validate({"requests": {"cpu": "1"}})  # a request is a share, not a cap
    assert plan_launch(requested, [0, 1], 0, cpu_cgroup="/x").to_json()["cgroups"] == []
    both = ResourcesSpec.model_validate({"limits": {"cpu": "1", "memory": "1Gi"}})
    # cgroup v2: memory and CPU in one group, joined once
    assert plan_launch(both, [0, 1], 0, cgroup="/g", cpu_cgroup="/g").to_json()["cgroups"] == ["/g"]


def test_cpu_quota_in_cgroup_v2_writes_cpu_max(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory")
    (tmp_path / "self").write_text("0::/user.slice\n")
    (tmp_path / "user.slice").mkdir()
    (tmp_path / "user.slice" / "cgroup.subtree_control").write_text("memory")
    q = CpuQuota(root=tmp_path, proc_cgroup=tmp_path / "self")
    assert not q.available and "cpu controller" in q.why_not  # cpu not delegated
    (tmp_path / "user.slice" / "cgroup.subtree_control").write_text("cpu memory")
    q = CpuQuota(root=tmp_path, proc_cgroup=tmp_path / "self")
    path = q.create("svc-1", 0.5)
    assert path == str(tmp_path / "user.slice" / "kubeinfer-svc-1")
    assert (Path(path) / "cpu.max").read_text() == "50000 100000"
    q.set(path, None)
    assert (Path(path) / "cpu.max").read_text() == "max 100000"
    (Path(path) / "cpu.stat").write_text("usage_usec 10\nnr_periods 40\nnr_throttled 7\nthrottled_usec 250000\n")
    assert CpuQuota.throttled(path) == (7, 0.25)


def test_cpu_quota_in_the_cgroup_v1_cpu_hierarchy(tmp_path: Path) -> None:
    (tmp_path / "self").write_text("4:memory:/x\n2:cpu,cpuacct:/pod\n0::/\n")
    base = tmp_path / "cpu,cpuacct" / "pod"
    base.mkdir(parents=True)
    (base / "cpu.cfs_quota_us").write_text("-1")
    q = CpuQuota(root=tmp_path, proc_cgroup=tmp_path / "self")
    assert q.available and not q.v2
    path = q.create("svc-2", 1.5)
    assert path is not None
    assert (Path(path) / "cpu.cfs_quota_us").read_text() == "150000"
    assert (Path(path) / "cpu.cfs_period_us").read_text() == "100000"
    (Path(path) / "cpu.stat").write_text("nr_periods 10\nnr_throttled 3\nthrottled_time 2000000000\n")
    assert CpuQuota.throttled(path) == (3, 2.0)


def test_a_real_cpu_quota_holds_a_spinning_process_to_its_limit() -> None:
    q = CpuQuota()
    if not q.available:
        pytest.skip(f"no CPU quota on this machine: {q.why_not}")
    path = q.create(f"test-{os.getpid()}", 0.2)
    assert path is not None, q.why_not
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.5:\n    pass\n"
    plan = json.dumps({"cgroups": [path]})
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "kubeinfer.local.launch", plan, "--", sys.executable, "-c", spin + _REPORT],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        used = float(proc.stdout.strip())
        assert used < 0.2 * 1.5 * 1.6, f"{used:.2f} s of CPU in 1.5 s under a 0.2-CPU quota"
        assert CpuQuota.throttled(path)[0] > 0
    finally:
        CgroupV2.remove(path)


_REPORT = "import resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_utime)\n"
