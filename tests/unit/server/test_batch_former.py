"""When the batcher runs which requests: an idle model never waits; busy instances let batches grow."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubeinfer.server.batcher import BatchFormer, Dispatch, Wait


def test_lone_request_runs_at_once_on_an_idle_model() -> None:
    f = BatchFormer(max_rows=8, max_delay=0.005, workers=1)
    f.arrive(1, 1, now=10.0)
    assert f.next(10.0) == Dispatch((1,))


def test_arrivals_while_busy_form_one_batch_when_the_model_frees() -> None:
    f = BatchFormer(max_rows=8, max_delay=0.005, workers=1)
    f.arrive(1, 1, 0.0)
    assert f.next(0.0) == Dispatch((1,))
    for k in range(2, 6):
        f.arrive(k, 1, 0.001)
    assert f.next(0.002) is None  # the only instance is busy
    f.done()
    assert f.next(0.003) == Dispatch((2, 3, 4, 5))


def test_batches_respect_max_rows_and_keep_order() -> None:
    f = BatchFormer(max_rows=4, max_delay=0.0, workers=1)
    for k, rows in enumerate([2, 1, 2, 3], start=1):
        f.arrive(k, rows, 0.0)
    assert f.next(0.0) == Dispatch((1, 2))
    f.done()
    assert f.next(0.0) == Dispatch((3,))
    f.done()
    assert f.next(0.0) == Dispatch((4,))


def test_a_request_larger_than_max_rows_runs_alone() -> None:
    f = BatchFormer(max_rows=4, max_delay=0.0, workers=1)
    f.arrive(1, 10, 0.0)
    f.arrive(2, 1, 0.0)
    assert f.next(0.0) == Dispatch((1,))


def test_a_second_instance_waits_at_most_max_delay_for_a_fuller_batch() -> None:
    f = BatchFormer(max_rows=8, max_delay=0.005, workers=2)
    f.arrive(1, 1, 0.0)
    assert f.next(0.0) == Dispatch((1,))
    f.arrive(2, 1, 0.001)
    assert f.next(0.001) == Wait(0.006)
    f.arrive(3, 1, 0.002)
    assert f.next(0.004) == Wait(0.006)
    assert f.next(0.006) == Dispatch((2, 3))


def test_a_burst_is_shared_between_free_instances() -> None:
    # 64 requests in one burst with two idle instances: half now, half to the other instance (it may wait max_delay
    # for more, as any partial batch while another is in flight) -- never all 64 on one instance, the other idle.
    f = BatchFormer(max_rows=64, max_delay=0.002, workers=2)
    for k in range(64):
        f.arrive(k, 1, 0.0)
    assert f.next(0.0) == Dispatch(tuple(range(32)))
    assert f.next(0.001) == Wait(0.002)
    assert f.next(0.002) == Dispatch(tuple(range(32, 64)))
    assert f.next(0.002) is None
    one = BatchFormer(max_rows=64, max_delay=0.002, workers=1)
    for k in range(64):
        one.arrive(k, 1, 0.0)
    assert one.next(0.0) == Dispatch(tuple(range(64)))  # one instance: the whole burst, as before


def test_a_full_batch_does_not_wait() -> None:
    f = BatchFormer(max_rows=2, max_delay=1.0, workers=2)
    f.arrive(1, 1, 0.0)
    f.next(0.0)
    f.arrive(2, 1, 0.0)
    f.arrive(3, 1, 0.0)
    assert f.next(0.0) == Dispatch((2, 3))


def test_removed_requests_never_run() -> None:
    f = BatchFormer(max_rows=8, max_delay=0.0, workers=1)
    f.arrive(1, 1, 0.0)
    f.arrive(2, 1, 0.0)
    assert f.remove(1)
    assert not f.remove(1)
    assert f.next(0.0) == Dispatch((2,))


@given(st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=60), st.integers(1, 16))
def test_every_request_runs_exactly_once_in_arrival_order_within_max_rows(
    ops: list[tuple[int, bool]], max_rows: int
) -> None:
    f = BatchFormer(max_rows=max_rows, max_delay=0.0, workers=1)
    ran: list[int] = []
    rows = {}
    for key, (n, finish) in enumerate(ops):
        f.arrive(key, n, 0.0)
        rows[key] = n
        action = f.next(0.0)
        if isinstance(action, Dispatch):
            assert len(action.items) == 1 or sum(rows[k] for k in action.items) <= max_rows
            ran.extend(action.items)
        if finish and f.busy:
            f.done()
    while len(f):
        if f.busy:
            f.done()
        action = f.next(0.0)
        assert isinstance(action, Dispatch)
        ran.extend(action.items)
    assert ran == list(range(len(ops)))


def test_a_freed_model_waits_for_the_last_batchs_callers_to_come_back() -> None:
    # A closed loop of 8 clients: a batch of 6 runs while 2 more arrive. When it finishes, running the 2 at once
    # would split the load into 6 + 2, turn after turn; the freed model waits up to max_delay for the 6 to return.
    f = BatchFormer(max_rows=8, max_delay=0.002, workers=1)
    for k in range(6):
        f.arrive(k, 1, 0.0)
    assert f.next(0.0) == Dispatch(tuple(range(6)))
    f.arrive(6, 1, 0.001)
    f.arrive(7, 1, 0.001)
    f.done(now=0.030)
    assert f.next(0.030) == Wait(0.032)
    for k in range(8, 11):
        f.arrive(k, 1, 0.031)
    assert f.next(0.031) == Wait(0.032)  # 5 queued: fewer than the 6 rows that ran
    f.arrive(11, 1, 0.0312)
    assert f.next(0.0312) == Dispatch((6, 7, 8, 9, 10, 11))  # as many as ran: no need to wait longer


def test_the_wait_after_a_batch_is_bounded_by_max_delay() -> None:
    f = BatchFormer(max_rows=8, max_delay=0.002, workers=1)
    for k in range(4):
        f.arrive(k, 1, 0.0)
    assert f.next(0.0) == Dispatch((0, 1, 2, 3))
    f.arrive(4, 1, 0.001)
    f.done(now=0.010)
    assert f.next(0.010) == Wait(0.012)
    assert f.next(0.012) == Dispatch((4,))  # the others did not come back: run what is there


def test_no_wait_after_a_batch_without_a_delay_or_when_called_without_a_time() -> None:
    f = BatchFormer(max_rows=8, max_delay=0.0, workers=1)
    f.arrive(0, 1, 0.0)
    f.arrive(1, 1, 0.0)
    assert f.next(0.0) == Dispatch((0, 1))
    f.arrive(2, 1, 0.001)
    f.done(now=0.005)
    assert f.next(0.005) == Dispatch((2,))
    g = BatchFormer(max_rows=8, max_delay=0.002, workers=1)
    g.arrive(0, 1, 0.0)
    g.arrive(1, 1, 0.0)
    assert g.next(0.0) == Dispatch((0, 1))
    g.arrive(2, 1, 0.001)
    g.done()
    assert g.next(0.005) == Dispatch((2,))


def test_a_lone_request_after_a_lone_request_never_waits() -> None:
    # c=1: each batch is one row; the next request alone already matches it.
    f = BatchFormer(max_rows=8, max_delay=0.002, workers=1)
    f.arrive(0, 1, 0.0)
    assert f.next(0.0) == Dispatch((0,))
    f.done(now=0.001)
    f.arrive(1, 1, 0.0012)
    assert f.next(0.0012) == Dispatch((1,))
