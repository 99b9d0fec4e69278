"""Pure state machines of the local platform: back-off, probes, replica lifecycle, rollout planning."""

from __future__ import annotations

import signal

import pytest

from kubeinfer.lifecycle import probes, replica
from kubeinfer.lifecycle.backoff import BackoffConfig, BackoffState, next_delay
from kubeinfer.lifecycle.rollout import Plan, ReplicaView, RolloutProgress, deletion_order, plan, resolve_fenceposts
from kubeinfer.spec.service import ProbeSpec, ProbesSpec

# -- CrashLoopBackOff ----------------------------------------------------------------------------------------


def test_backoff_doubles_from_10s_to_a_5_minute_cap() -> None:
    cfg, state, delays = BackoffConfig(), BackoffState(), []
    for _ in range(8):
        d, state = next_delay(cfg, state, ran_for=1.0)
        delays.append(d)
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


def test_backoff_resets_after_ten_minutes_of_good_running() -> None:
    cfg = BackoffConfig()
    _, state = next_delay(cfg, BackoffState(), 1.0)
    _, state = next_delay(cfg, state, 1.0)
    d, state = next_delay(cfg, state, 600.0)
    assert d == 10 and state.crashes == 1


def test_backoff_base_is_configurable() -> None:
    cfg = BackoffConfig(base=0.5, cap=2.0)
    state, out = BackoffState(), []
    for _ in range(4):
        d, state = next_delay(cfg, state, 0.1)
        out.append(d)
    assert out == [0.5, 1.0, 2.0, 2.0]


def test_backoff_rejects_a_cap_below_the_base() -> None:
    with pytest.raises(ValueError, match="base <= cap"):
        BackoffConfig(base=10, cap=1)


# -- probes ----------------------------------------------------------------------------------------------

FAST = ProbesSpec(
    startup=ProbeSpec(initialDelaySeconds=1, periodSeconds=1, failureThreshold=3),
    readiness=ProbeSpec(periodSeconds=1, failureThreshold=2, successThreshold=2),
    liveness=ProbeSpec(periodSeconds=1, failureThreshold=3),
)


def kinds(actions: list[probes.ProbeAction]) -> list[str]:
    return [a.kind for a in actions if isinstance(a, probes.RunProbe)]


def test_startup_waits_for_its_initial_delay_and_gates_the_others() -> None:
    p = probes.Prober(FAST, started_at=0.0)
    assert p.step(probes.Tick(), 0.5) == []
    assert kinds(p.step(probes.Tick(), 1.0)) == ["startup"]
    assert p.step(probes.Tick(), 1.5) == []  # in flight: no second probe
    out = p.step(probes.ProbeResult("startup", True), 1.6)
    assert out == [probes.Started()]
    assert sorted(kinds(p.step(probes.Tick(), 1.6))) == ["liveness", "readiness"]


def test_readiness_needs_success_threshold_and_flips_back_after_failure_threshold() -> None:
    p = probes.Prober(FAST, started_at=0.0)
    p.step(probes.Tick(), 1.0)
    p.step(probes.ProbeResult("startup", True), 1.0)
    p.step(probes.Tick(), 1.0)
    assert p.step(probes.ProbeResult("readiness", True), 1.0) == []  # 1 of 2 successes
    p.step(probes.Tick(), 2.0)
    assert p.step(probes.ProbeResult("readiness", True), 2.0) == [
        probes.ReadyChanged(True, "readiness probe succeeded")
    ]
    p.step(probes.Tick(), 3.0)
    assert p.step(probes.ProbeResult("readiness", False, "HTTP 503"), 3.0) == []
    p.step(probes.Tick(), 4.0)
    out = p.step(probes.ProbeResult("readiness", False, "HTTP 503"), 4.0)
    assert out == [probes.ReadyChanged(False, "readiness probe failed 2 times: HTTP 503")]
    assert not p.dead  # readiness never kills


@pytest.mark.parametrize(("kind", "threshold"), [("startup", 3), ("liveness", 3)])
def test_startup_and_liveness_failures_kill_at_the_threshold(kind: probes.ProbeKind, threshold: int) -> None:
    p = probes.Prober(FAST, started_at=0.0)
    t = 1.0
    if kind == "liveness":
        p.step(probes.Tick(), t)
        p.step(probes.ProbeResult("startup", True), t)
    killed: list[probes.ProbeAction] = []
    for i in range(threshold):
        p.step(probes.Tick(), t + i)
        out = p.step(probes.ProbeResult(kind, False, "timeout"), t + i)
        killed += [a for a in out if isinstance(a, probes.Killed)]
        assert bool(killed) == (i == threshold - 1)
    assert p.dead and p.step(probes.Tick(), 100.0) == []


def test_a_success_resets_the_failure_count() -> None:
    p = probes.Prober(FAST, started_at=0.0)
    p.step(probes.Tick(), 1.0)
    p.step(probes.ProbeResult("startup", True), 1.0)
    for t, ok in [(1, False), (2, False), (3, True), (4, False), (5, False)]:
        p.step(probes.Tick(), float(t))
        p.step(probes.ProbeResult("liveness", ok), float(t))
    assert not p.dead


def test_kubernetes_default_probe_timing() -> None:
    p = probes.Prober(ProbesSpec(), started_at=0.0)
    assert p.next_due() == 0.0
    assert [a for a in p.step(probes.Tick(), 0.0)] == [probes.RunProbe("startup", 1.0)]
    p.step(probes.ProbeResult("startup", False), 0.1)
    assert p.next_due() == 2.0  # period 2 s


# -- replica lifecycle -------------------------------------------------------------------------------------

BACKOFF = BackoffConfig(base=1.0, cap=4.0, reset_after=60.0)


def machine(now: float = 0.0) -> replica.ReplicaMachine:
    return replica.ReplicaMachine("svc-1", 1, FAST, BACKOFF, grace=5.0, now=now)


def running(m: replica.ReplicaMachine, t: float = 0.0) -> None:
    assert m.step(probes.Tick(), t) == [replica.Spawn()]
    m.step(replica.Spawned(123), t)
    m.step(probes.Tick(), t + 1)
    m.step(probes.ProbeResult("startup", True), t + 1)
    m.step(probes.Tick(), t + 1)
    m.step(probes.ProbeResult("readiness", True), t + 1)
    m.step(probes.Tick(), t + 2)
    m.step(probes.ProbeResult("readiness", True), t + 2)
    assert m.phase == "Running" and m.ready


def test_a_spawn_is_not_repeated_while_it_is_in_progress() -> None:
    m = machine()
    assert m.step(probes.Tick(), 0.0) == [replica.Spawn()]
    assert m.step(probes.Tick(), 0.1) == []


def test_a_crash_waits_the_backoff_then_restarts_in_place() -> None:
    m = machine()
    running(m)
    out = m.step(replica.Exited(1, "Error"), 10.0)
    assert replica.SetReady(False) in out
    assert m.phase == "CrashLoopBackOff" and m.restarts == 1 and "back-off 1 s" in m.message
    assert m.step(probes.Tick(), 10.5) == []
    assert m.step(probes.Tick(), 11.0) == [replica.Spawn()]
    m.step(replica.Spawned(124), 11.0)
    m.step(replica.Exited(1, "Error"), 11.1)
    assert m.restart_at == pytest.approx(13.1)  # doubled


def test_liveness_failure_kills_with_sigterm_then_sigkill_and_restarts() -> None:
    m = machine()
    running(m)
    actions: list[replica.ReplicaAction] = []
    for t in (3.0, 4.0, 5.0):
        m.step(probes.Tick(), t)
        actions += m.step(probes.ProbeResult("liveness", False, "timeout"), t)
    assert replica.Signal(signal.SIGTERM) in actions and replica.SetReady(False) in actions
    assert any(isinstance(a, replica.Emit) and a.reason == "Killing" and "liveness" in a.message for a in actions)
    assert m.step(probes.Tick(), 9.9) == []
    out = m.step(probes.Tick(), 10.0)
    assert replica.Signal(signal.SIGKILL) in out
    m.step(replica.Exited(-9, "Killed"), 10.1)
    assert m.phase == "CrashLoopBackOff" and m.restarts == 1


def test_a_stop_drains_and_ends_without_restart() -> None:
    m = machine()
    running(m)
    out = m.step(replica.Stop("scaled down"), 3.0)
    assert out[0] == replica.SetReady(False) and replica.Signal(signal.SIGTERM) in out
    m.step(replica.Exited(0, "Completed"), 3.5)
    assert m.phase == "Terminated" and m.restarts == 0


def test_a_stop_during_backoff_ends_at_once() -> None:
    m = machine()
    running(m)
    m.step(replica.Exited(1, "Error"), 3.0)
    m.step(replica.Stop("scaled down"), 3.1)
    assert m.phase == "Terminated"


@pytest.mark.parametrize(
    ("code", "kw", "expected"),
    [
        (0, {}, "Completed"),
        (1, {}, "Error"),
        (-9, {"we_killed": True}, "Killed"),
        (-9, {"memory_limit": 100.0, "rss": 95.0}, "OOMKilled"),
        (-9, {"memory_limit": 100.0, "rss": 10.0}, "Error"),
        (1, {"memory_limit": 100.0, "log_tail": "MemoryError"}, "OOMKilled"),
        (1, {"memory_limit": 100.0, "log_tail": "Traceback ...\n    x = [0] * n\nMemoryError: \n\n"}, "OOMKilled"),
        # The word in a logged line (a client can put it there) is not an out-of-memory exit.
        (1, {"memory_limit": 100.0, "log_tail": "error on POST /v2/models/MemoryError/infer\nboom\n"}, "Error"),
        (-9, {"oom_kills": 1, "we_killed": True}, "OOMKilled"),
    ],
)
def test_exit_classification(code: int, kw: dict[str, object], expected: str) -> None:
    kw.setdefault("we_killed", False)
    assert replica.classify_exit(code, **kw) == expected  # type: ignore[arg-type]


# -- rollout planner ---------------------------------------------------------------------------------------


def v(rid: str, rev: int, ready: bool = True, **kw: object) -> ReplicaView:
    return ReplicaView(rid, rev, ready, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("surge", "unavail", "desired", "expected"),
    [(1, 0, 3, (1, 0)), ("25%", "25%", 10, (3, 2)), (0, 0, 3, (0, 1)), ("0%", "10%", 5, (0, 1))],
)
def test_fenceposts_round_surge_up_and_unavailable_down(
    surge: int | str, unavail: int | str, desired: int, expected: tuple[int, int]
) -> None:
    assert resolve_fenceposts(surge, unavail, desired) == expected


@pytest.mark.parametrize(
    ("replicas", "desired", "surge", "unavail", "expected"),
    [
        # steady state scaling
        ([v("a", 2)], 3, 1, 0, Plan(2, (), "scale up")),
        ([v("a", 2), v("b", 2, False), v("c", 2)], 2, 1, 0, Plan(0, ("b",), "scale down")),
        # maxSurge 1, maxUnavailable 0: one new first; no old removed until it is ready
        ([v("a", 1), v("b", 1)], 2, 1, 0, Plan(1, (), "rolling update")),
        ([v("a", 1), v("b", 1), v("n", 2, False)], 2, 1, 0, Plan(0, (), "rolling update")),
        ([v("a", 1), v("b", 1), v("n", 2)], 2, 1, 0, Plan(0, ("a",), "rolling update")),
        ([v("b", 1), v("n", 2)], 2, 1, 0, Plan(1, (), "rolling update")),
        # maxSurge 0, maxUnavailable 1: remove one old first
        ([v("a", 1), v("b", 1)], 2, 0, 1, Plan(0, ("a",), "rolling update")),
        # old replicas that are not ready go first (within maxScaledDown, as cleanupUnhealthyReplicas)
        ([v("a", 1, False), v("b", 1), v("n", 2, False)], 2, 1, 0, Plan(0, (), "rolling update")),
        ([v("a", 1, False), v("b", 1), v("n", 2)], 2, 1, 0, Plan(0, ("a",), "rolling update")),
    ],
)
def test_plan(replicas: list[ReplicaView], desired: int, surge: int, unavail: int, expected: Plan) -> None:
    assert plan(replicas, 2, desired, surge, unavail) == expected


def test_rollback_removes_the_broken_revision_and_keeps_the_old_one() -> None:
    reps = [v("a", 1), v("b", 1), v("n", 2, False)]
    assert plan(reps, 1, 2, 1, 0) == Plan(0, ("n",), "rolling update")


def test_deletion_order_prefers_not_running_unready_restarted_newest() -> None:
    reps = [
        v("ok-old", 1, created_at=1.0),
        v("ok-new", 1, created_at=5.0),
        v("restarted", 1, restarts=3),
        v("unready", 1, False),
        v("down", 1, False, running=False),
    ]
    assert [r.id for r in deletion_order(reps)] == ["down", "unready", "restarted", "ok-new", "ok-old"]


def test_progress_deadline_counts_from_the_last_progress() -> None:
    p = RolloutProgress(2, 1, started_at=0.0, last_progress_at=0.0)
    assert not p.deadline_exceeded(10, 9.0)
    p = p.observe(1, 8.0)
    assert not p.deadline_exceeded(10, 17.0) and p.deadline_exceeded(10, 18.5)
    assert RolloutProgress.complete([v("n", 2), v("m", 2)], 2, 2)
    assert not RolloutProgress.complete([v("n", 2), v("a", 1)], 2, 1)


def test_a_model_that_fails_to_load_is_the_replicas_reason_until_a_new_process_starts() -> None:
    m = machine()
    assert m.step(probes.Tick(), 0.0) == [replica.Spawn()]
    m.step(replica.Spawned(123), 0.0)
    detail = "GET /startupz: HTTP 503 (model 'svc' failed to load: ModelError: model file /m.joblib does not exist)"
    actions: list[replica.ReplicaAction] = []
    for t in (1.0, 2.0):
        m.step(probes.Tick(), t)
        actions += m.step(probes.ProbeResult("startup", False, detail), t)
    warnings = [a for a in actions if isinstance(a, replica.Emit) and a.type == "Warning"]
    assert [(w.reason, w.message) for w in warnings] == [("Failed", f"Error: {detail}")]  # once, not per probe
    assert m.reason == "ModelLoadFailed" and m.phase == "Starting"
    m.step(replica.Exited(0, "Completed"), 3.0)
    assert m.phase == "CrashLoopBackOff" and "(ModelLoadFailed)" in m.message and m.reason == "ModelLoadFailed"
    m.step(probes.Tick(), 5.0)
    m.step(replica.Spawned(124), 5.0)
    assert m.reason == ""


def test_a_probe_failure_that_is_not_a_load_failure_sets_no_reason() -> None:
    m = machine()
    m.step(probes.Tick(), 0.0)
    m.step(replica.Spawned(123), 0.0)
    m.step(probes.Tick(), 1.0)
    out = m.step(probes.ProbeResult("startup", False, "GET /startupz: HTTP 503 (loading)"), 1.0)
    assert m.reason == "" and not any(isinstance(a, replica.Emit) for a in out)
