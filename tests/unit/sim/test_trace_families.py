"""Trace families: Markov-modulated and batch arrivals, flash crowds, noisy curves, token columns -- seeded, at the
rates they are asked for, and as bursty as they claim."""

from __future__ import annotations

import numpy as np
import pytest

from kubeinfer.sim import TraceError, parse_generator
from kubeinfer.sim.traces import TOKEN_MIXES, generate


def _dispersion(per_second: np.ndarray) -> float:
    """Variance / mean of per-second counts: 1 for Poisson, more for bursty traffic."""
    return float(per_second.var() / per_second.mean())


@pytest.mark.parametrize(
    "text",
    [
        "gen:mmpp,low=2,high=12,quiet=300,burst=60,duration=7200",
        "gen:batch,rate=3,alpha=1.3,max=80,duration=7200",
        "gen:flash,base=2,peak=20,at=600,duration=3600",
        "gen:diurnal,base=1,peak=6,period=7200,duration=7200,noise=0.3",
    ],
)
def test_every_family_is_seeded_and_the_seed_matters(text: str) -> None:
    a, b, c = parse_generator(text, 1), parse_generator(text, 1), parse_generator(text, 2)
    assert np.array_equal(a.arrivals, b.arrivals)
    assert not np.array_equal(a.arrivals, c.arrivals)
    assert np.all(np.diff(a.arrivals) >= 0) and a.arrivals.max(initial=0) < a.duration


@pytest.mark.parametrize("seed", range(4))
def test_batch_arrivals_keep_their_mean_rate_and_land_many_requests_in_one_second(seed: int) -> None:
    tr = parse_generator("gen:batch,rate=3,alpha=1.3,max=80,duration=14400", seed)
    assert tr.mean_rate == pytest.approx(3.0, rel=0.25)  # a heavy tail: a few big batches move the mean
    per = tr.per_second()
    assert per.max() >= 30 and _dispersion(per) > 5
    poisson = generate("poisson", {"rate": 3, "duration": 14400}, seed).per_second()
    assert _dispersion(poisson) == pytest.approx(1.0, abs=0.1)
    assert per.max() <= 80 + 3 * 8  # a batch is capped at max (other batches may share its second)


@pytest.mark.parametrize("seed", range(3))
def test_mmpp_alternates_between_its_two_rates(seed: int) -> None:
    tr = parse_generator("gen:mmpp,low=2,high=20,quiet=300,burst=100,duration=36000", seed)
    # Long-run mean: (2 * 300 + 20 * 100) / 400 = 6.5 req/s; minutes sit near one rate or the other.
    assert tr.mean_rate == pytest.approx(6.5, rel=0.2)
    minutes = np.add.reduceat(tr.per_second(), np.arange(0, 36000, 60)) / 60
    assert np.mean(minutes < 5) > 0.5 and np.mean(minutes > 12) > 0.1


def test_a_flash_crowd_jumps_then_decays_back_to_its_base() -> None:
    tr = parse_generator("gen:flash,base=2,peak=40,at=600,rise=30,decay=300,duration=3600", 0)
    per = tr.per_second()
    before, peak, late = per[:600].mean(), per[630:660].mean(), per[3000:].mean()
    assert before == pytest.approx(2, rel=0.3) and peak == pytest.approx(40, rel=0.2) and late < 4


def test_noise_keeps_the_mean_and_spreads_the_minutes() -> None:
    quiet = parse_generator("gen:poisson,rate=50,duration=36000", 3)
    noisy = parse_generator("gen:poisson,rate=50,duration=36000,noise=0.4", 3)
    assert noisy.mean_rate == pytest.approx(50, rel=0.1)
    q, n = (np.add.reduceat(t.per_second(), np.arange(0, 36000, 60)) for t in (quiet, noisy))
    assert n.std() > 5 * q.std()
    assert "noise=0.4" in noisy.name


def test_conv_tokens_follow_the_public_trace_and_long_ones_are_long() -> None:
    conv = parse_generator("gen:poisson,rate=20,duration=3600,tokens=conv", 0)
    long = parse_generator("gen:poisson,rate=20,duration=3600,tokens=long", 0)
    # The Azure 2023 conversation trace: mean 1,155 context and 211 generated tokens, medians 1,020 and 129.
    assert conv.columns["ContextTokens"].mean() == pytest.approx(1155, rel=0.08)
    assert np.median(conv.columns["GeneratedTokens"]) == pytest.approx(129, rel=0.15)
    assert long.columns["ContextTokens"].mean() > 1.7 * conv.columns["ContextTokens"].mean()
    assert long.columns["GeneratedTokens"].mean() < 0.3 * conv.columns["GeneratedTokens"].mean()
    for tr in (conv, long):
        assert len(tr.columns["ContextTokens"]) == len(tr) and tr.columns["GeneratedTokens"].min() >= 1
    assert set(TOKEN_MIXES) == {"conv", "long"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gen:mmpp,rate=3", "no parameter 'rate'"),
        ("gen:batch,rate=3,tokens=chat", "unknown token mix 'chat'"),
        ("gen:batch,alpha=0", "alpha must be > 0"),
        ("gen:poisson,noise=-1", "noise must be >= 0"),
        ("gen:mmpp,noise=0.2", "no parameter 'noise'"),
        ("gen:tidal", "unknown generator 'tidal'"),
    ],
)
def test_bad_family_strings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        parse_generator(text)


@pytest.mark.parametrize("seed", [1, 4, 9])
def test_mmpp_states_is_the_state_path_the_arrivals_were_drawn_from(seed: int) -> None:
    from kubeinfer.sim.traces import mmpp_states

    params = {"low": 2.0, "high": 20.0, "quiet": 300.0, "burst": 100.0, "duration": 36000.0}
    tr = parse_generator("gen:mmpp," + ",".join(f"{k}={v:g}" for k, v in params.items()), seed)
    starts, widths, rates = mmpp_states(params, seed)
    assert starts[0] == 0 and rates[0] == 2.0  # starts quiet
    assert np.allclose(starts[1:], (starts + widths)[:-1]) and np.isclose((starts + widths)[-1], 36000.0)
    assert set(rates[::2]) == {2.0} and set(rates[1::2]) == {20.0}  # alternates
    counts = np.histogram(tr.arrivals, bins=np.append(starts, 36000.0))[0]
    hot = rates == 20.0
    # Each state's arrivals come at its own rate (Poisson: within a few percent over hours of each).
    assert counts[hot].sum() / widths[hot].sum() == pytest.approx(20.0, rel=0.05)
    assert counts[~hot].sum() / widths[~hot].sum() == pytest.approx(2.0, rel=0.05)
    # Another seed's path is another draw.
    assert not np.array_equal(starts, mmpp_states(params, seed + 1)[0])
