"""Trace sources: the Azure timestamp format, per-interval counts, generators, time scaling, service costs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kubeinfer.sim import ServiceModel, TraceError, generate, load_trace, parse_generator

REPO = Path(__file__).resolve().parents[3]
AZURE = REPO.parent / "shared" / "data" / "azure_llm_inference_2023_conv.csv"


def test_azure_timestamps_parse_to_seconds_from_the_start_with_token_columns(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n"
        "2023-11-16 18:15:46.1805900,10,1\n"
    )
    tr = load_trace(f)
    np.testing.assert_allclose(tr.arrivals, [0.0, 0.5, 4.814579], atol=1e-6)
    np.testing.assert_array_equal(tr.columns["ContextTokens"], [10, 374, 396])  # reordered with the times
    ms = ServiceModel(fixed_ms=100, cost_ms={"GeneratedTokens": 10}).service_times(tr)
    np.testing.assert_allclose(ms, [0.11, 0.54, 1.19])


@pytest.mark.skipif(not AZURE.exists(), reason="shared data set not present")
def test_the_real_azure_conversation_trace_loads_as_is() -> None:
    tr = load_trace(AZURE)
    assert len(tr) > 19_000
    assert 3000 < tr.duration < 4000
    assert set(tr.columns) == {"ContextTokens", "GeneratedTokens"}
    assert np.all(np.diff(tr.arrivals) >= 0)


def test_per_interval_counts_become_poisson_arrivals_in_their_intervals(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("time,count\n0,100\n60,0\n120,300\n")
    tr = load_trace(f, seed=1)
    assert len(tr) == pytest.approx(400, abs=60)
    assert tr.duration == 180
    assert not np.any((tr.arrivals >= 60) & (tr.arrivals < 120))


def test_generators_follow_their_rate_curves_and_are_seeded() -> None:
    a = generate("step", {"base": 10, "high": 100, "at": 100, "duration": 200}, seed=5)
    b = generate("step", {"base": 10, "high": 100, "at": 100, "duration": 200}, seed=5)
    np.testing.assert_array_equal(a.arrivals, b.arrivals)
    per = a.per_second()
    assert per[:100].mean() == pytest.approx(10, rel=0.2)
    assert per[100:].mean() == pytest.approx(100, rel=0.1)
    d = parse_generator("gen:diurnal,base=10,peak=110,period=1000,duration=1000", seed=1).per_second()
    assert d[450:550].mean() > 5 * d[:50].mean()
    s = parse_generator("gen:spike,base=10,high=200,at=100,length=50,duration=300").per_second()
    assert s[110:150].mean() > 150 and s[200:].mean() < 20
    o = parse_generator("gen:onoff,rate=50,on=10,off=10,duration=100").per_second()
    assert o[10:20].sum() == 0 and o[0:10].sum() > 300


def test_time_scale_compresses_the_trace() -> None:
    tr = generate("poisson", {"rate": 10, "duration": 100}, seed=2)
    fast = tr.scaled(0.5)
    assert fast.duration == 50 and fast.mean_rate == pytest.approx(2 * tr.mean_rate)


@pytest.mark.parametrize(
    ("text", "message"),
    [("gen:nope", "unknown generator"), ("gen:step,at", "key=value"), ("gen:step,speed=3", "no parameter")],
)
def test_bad_generator_strings_say_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        parse_generator(text)


def test_a_cost_on_a_missing_column_names_the_columns() -> None:
    tr = generate("poisson", {"rate": 1, "duration": 10})
    with pytest.raises(TraceError, match="GeneratedTokens"):
        ServiceModel(cost_ms={"GeneratedTokens": 1}).service_times(tr)
