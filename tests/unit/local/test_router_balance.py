"""Token-aware balancing and affinity (``local/router/balance.py``): what a request weighs, least outstanding tokens,
rendezvous homes under a load bound; and the router charging and discharging each try's tokens."""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeinfer.local.router import Backend, Router
from kubeinfer.local.router.balance import RoutingPolicy, Work, choose, estimate, rendezvous_home
from kubeinfer.spec import validate_spec


@dataclass(eq=False)
class B:
    id: str
    tokens: int = 0
    outstanding: int = 0


TOKENS = RoutingPolicy()
SESSION = RoutingPolicy(affinity="session")
PREFIX = RoutingPolicy(affinity="prefix", prefix_chars=8)


def http(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[bytes, bytes, int]:
    """(url, data, body_size) as the HTTP front hands them to ``estimate``."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    head = f"POST {url} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return url.encode(), head.encode() + b"\r\n" + raw, len(raw)


# -- estimate ----------------------------------------------------------------------------------------------------
def test_completion_weighs_its_prompt_bytes_over_four_plus_max_tokens() -> None:
    assert estimate(TOKENS, *http("/v1/completions", {"prompt": "x" * 40, "max_tokens": 100})) == Work(110)


def test_completion_without_max_tokens_counts_openais_default_of_16() -> None:
    assert estimate(TOKENS, *http("/v1/completions", {"prompt": "abcd"})).tokens == 1 + 16


def test_chat_counts_every_message_and_max_completion_tokens_first() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "a" * 30},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        "max_tokens": 5,
        "max_completion_tokens": 50,
    }
    w = estimate(TOKENS, *http("/v1/chat/completions", body))
    assert 50 + 9 <= w.tokens <= 50 + 12  # "system:" + 30 + "user:hi" with separators, over 4


def test_chat_without_max_tokens_uses_the_policys_default() -> None:
    w = estimate(
        RoutingPolicy(default_max_tokens=500),
        *http("/v1/chat/completions", {"messages": [{"role": "user", "content": "hey"}]}),
    )
    assert 500 < w.tokens < 510


def test_token_id_prompts_weigh_their_length_and_n_multiplies_the_generation() -> None:
    assert estimate(TOKENS, *http("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 10, "n": 3})).tokens == 33
    two = estimate(TOKENS, *http("/v1/completions", {"prompt": [[1, 2], [3, 4, 5]], "max_tokens": 10}))
    assert two.tokens == 5 + 20


def test_oip_generate_reads_text_input_and_parameters() -> None:
    url = "/v2/models/tiny/generate_stream"
    assert estimate(TOKENS, *http(url, {"text_input": "abcdefgh", "parameters": {"max_tokens": 30}})).tokens == 32
    assert estimate(TOKENS, *http(url, {"text_input": "abcd", "max_tokens": 7})).tokens == 8


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v2/models/tiny/infer", {"inputs": []}),
        ("/v1/completions", b"{not json"),
        ("/v1/completions", [1, 2]),
        ("/v1/completions", b""),
        ("/v1/completions", {"prompt": "x", "max_tokens": "many"}),
    ],
)
def test_other_paths_and_bodies_the_replica_will_refuse_weigh_one_or_their_valid_part(url: str, body: object) -> None:
    """Never raises: a bad body is the replica's to answer (400), the router only needs a weight."""
    w = estimate(TOKENS, *http(url, body))
    assert 1 <= w.tokens <= 17 and w.key is None


def test_session_key_is_the_header_then_the_user_field() -> None:
    body = {"prompt": "x", "user": "alice"}
    assert estimate(SESSION, *http("/v1/completions", body, {"X-Session-Id": "s-1"})).key == b"s-1"
    assert estimate(SESSION, *http("/v1/completions", body)).key == b"alice"
    assert estimate(SESSION, *http("/v1/completions", {"prompt": "x"})).key is None
    # the header works on any path (a non-generative request of a session goes home too)
    assert estimate(SESSION, *http("/v2/models/m/infer", b"{}", {"x-session-id": "s-2"})) == Work(1, b"s-2")


def test_prefix_key_is_the_prompts_first_characters() -> None:
    a = estimate(PREFIX, *http("/v1/completions", {"prompt": "You are a helpful bot. Q1"}))
    b = estimate(PREFIX, *http("/v1/completions", {"prompt": "You are a helpful bot. Q2"}))
    assert a.key == b.key == b"You are "
    chat = estimate(PREFIX, *http("/v1/chat/completions", {"messages": [{"role": "system", "content": "rules"}]}))
    assert chat.key == b"system:r"


# -- choose: least outstanding tokens ------------------------------------------------------------------------------
def test_choose_takes_the_one_with_fewer_tokens_not_fewer_requests() -> None:
    busy = B("a", tokens=2000, outstanding=1)
    many = B("b", tokens=300, outstanding=10)
    assert choose([busy, many], Work(50), random.random) == (many, "balance")


def test_choose_avoids_tried_backends_while_another_is_left() -> None:
    a, b = B("a", 0), B("b", 999)
    assert choose([a, b], Work(1), random.random, exclude=[a])[0] is b
    assert choose([a], Work(1), random.random, exclude=[a])[0] is a
    assert choose([], Work(1), random.random) == (None, "balance")


@given(
    weights=st.lists(st.integers(1, 4000), min_size=1, max_size=300),
    draws=st.lists(st.floats(0, 1, exclude_max=True), min_size=2, max_size=2),
)
def test_two_backends_never_differ_by_more_than_the_largest_request(weights: list[int], draws: list[float]) -> None:
    """With two replicas, P2C on tokens is least tokens: the gap stays within one request, whatever the draws."""
    bs = [B("a"), B("b")]
    for w in weights:
        chosen, _ = choose(bs, Work(w), lambda: draws[0])
        assert chosen is not None
        chosen.tokens += w
        assert abs(bs[0].tokens - bs[1].tokens) <= max(weights)


@given(
    n=st.integers(2, 8),
    weights=st.lists(st.integers(1, 4000), min_size=50, max_size=400),
    seed=st.integers(0, 2**32),
    ends=st.lists(st.booleans(), min_size=50, max_size=400),
)
def test_load_spreads_over_many_backends_with_arrivals_and_ends(
    n: int, weights: list[int], seed: int, ends: list[bool]
) -> None:
    """The strictly heaviest backend never gets the next request, and with random draws no backend runs far
    above the mean (power of two choices keeps the gap within a few requests)."""
    rng = random.Random(seed)
    bs = [B(str(i)) for i in range(n)]
    live: list[tuple[B, int]] = []
    for k, w in enumerate(weights):
        if k < len(ends) and ends[k] and live:  # a request ends: its tokens leave its backend
            b, old = live.pop(rng.randrange(len(live)))
            b.tokens -= old
        top = max(b.tokens for b in bs)
        strict_top = [b for b in bs if b.tokens == top]
        chosen, how = choose(bs, Work(w), rng.random)
        assert chosen is not None and how == "balance"
        assert not (len(strict_top) == 1 and chosen is strict_top[0] and min(b.tokens for b in bs) < top)
        chosen.tokens += w
        live.append((chosen, w))
    mean = sum(b.tokens for b in bs) / n
    assert max(b.tokens for b in bs) <= mean + 8 * max(weights)


# -- choose: affinity ----------------------------------------------------------------------------------------------
KEYS = st.lists(st.binary(min_size=1, max_size=16), min_size=1, max_size=60, unique=True)


@given(keys=KEYS, n=st.integers(1, 8), seed=st.integers(0, 1000))
def test_a_key_has_one_home_whatever_the_order_of_the_replicas(keys: list[bytes], n: int, seed: int) -> None:
    bs = [B(f"tiny-r1-{i}") for i in range(n)]
    shuffled = bs[:]
    random.Random(seed).shuffle(shuffled)
    for k in keys:
        assert choose(bs, Work(10, k), random.random) == (rendezvous_home(shuffled, k), "home")


@given(keys=KEYS, n=st.integers(2, 8), gone=st.integers(0, 7))
def test_a_replica_leaving_moves_only_its_own_keys(keys: list[bytes], n: int, gone: int) -> None:
    bs = [B(f"svc-r1-{i}") for i in range(n)]
    leaving = bs[gone % n]
    before = {k: rendezvous_home(bs, k) for k in keys}
    rest = [b for b in bs if b is not leaving]
    for k in keys:
        after = rendezvous_home(rest, k)
        if before[k] is not leaving:
            assert after is before[k]
    # and one joining takes keys only for itself
    joined = [*bs, B("svc-r2-9")]
    for k in keys:
        assert rendezvous_home(joined, k) in (before[k], joined[-1])


def test_keys_spread_over_the_replicas() -> None:
    bs = [B(f"r{i}") for i in range(4)]
    homes = [rendezvous_home(bs, f"user-{i}".encode()).id for i in range(4000)]
    assert all(800 <= homes.count(b.id) <= 1200 for b in bs)


@given(
    n=st.integers(2, 6),
    requests=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 3000)), min_size=1, max_size=200),
    factor=st.floats(1.05, 3.0),
)
def test_a_home_past_the_load_bound_spills_to_the_least_loaded(
    n: int, requests: list[tuple[int, int]], factor: float
) -> None:
    """Consistent hashing with bounded loads: a keyed request goes home only while its home is below factor x the
    average (the request counted); otherwise to the least loaded. So no replica is ever chosen above the bound
    unless it is the least loaded."""
    bs = [B(f"b{i}") for i in range(n)]
    for key, w in requests:
        total = sum(b.tokens for b in bs) + w
        home = rendezvous_home(bs, b"k%d" % key)
        chosen, how = choose(bs, Work(w, b"k%d" % key), random.random, load_factor=factor)
        assert chosen is not None
        if how == "home":
            assert chosen is home and home.tokens < factor * total / n
        else:
            assert how == "spill" and home.tokens >= factor * total / n
            assert chosen.tokens == min(b.tokens for b in bs)
        chosen.tokens += w


def test_one_hot_session_cannot_overload_its_home() -> None:
    a, b = B("a"), B("b")
    home = rendezvous_home([a, b], b"hot")
    outcomes = []
    for _ in range(100):
        chosen, how = choose([a, b], Work(100, b"hot"), random.random)
        assert chosen is not None
        chosen.tokens += 100
        outcomes.append(how)
    assert home.tokens <= 0.625 * (a.tokens + b.tokens) + 100  # 1.25 x the average of two
    assert "home" in outcomes and "spill" in outcomes


def test_a_retry_of_a_keyed_request_goes_to_the_next_replica_in_its_order() -> None:
    bs = [B(f"r{i}") for i in range(3)]
    home = rendezvous_home(bs, b"s")
    second = rendezvous_home([b for b in bs if b is not home], b"s")
    assert choose(bs, Work(1, b"s"), random.random, exclude=[home]) == (second, "home")


def test_policy_rejects_bad_values_naming_them() -> None:
    with pytest.raises(ValueError, match="load_factor must be > 1"):
        RoutingPolicy(load_factor=1.0)
    with pytest.raises(ValueError, match="affinity must be one of"):
        RoutingPolicy(affinity="sticky")  # type: ignore[arg-type]


# -- from the spec ---------------------------------------------------------------------------------------------------
def _spec(fmt: str, routing: str = "") -> object:
    model = {"format": fmt, "uri": "m"} if fmt != "python" else {"format": "python", "className": "m:C"}
    doc: dict[str, object] = {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceService"}
    doc["metadata"] = {"name": "s"}
    doc["spec"] = {"model": model, **({"routing": orjson.loads(routing)} if routing else {})}
    return validate_spec(doc, "s.yaml").spec


def test_llm_services_balance_by_tokens_by_default_and_others_by_requests() -> None:
    assert RoutingPolicy.from_spec(_spec("llm")) == RoutingPolicy()
    assert RoutingPolicy.from_spec(_spec("sklearn")) is None
    assert RoutingPolicy.from_spec(_spec("llm", '{"balance": "requests"}')) is None
    p = RoutingPolicy.from_spec(_spec("python", '{"affinity": "session", "sessionHeader": "X-User"}'))
    assert p == RoutingPolicy(tokens=False, affinity="session", session_header=b"x-user")


def test_a_bad_routing_field_is_named_in_the_spec_error() -> None:
    from kubeinfer.spec import SpecError

    with pytest.raises(SpecError, match=r"spec\.routing\.affinity"):
        _spec("llm", '{"affinity": "sticky"}')
    with pytest.raises(SpecError, match=r"spec\.routing\.loadFactor"):
        _spec("llm", '{"loadFactor": 1.0}')


# -- the router's accounting -----------------------------------------------------------------------------------------
def _router(n: int, policy: RoutingPolicy | None) -> Router:
    r = Router()
    r.set_routing(policy)
    r.set_backends([Backend(f"r{i}", "127.0.0.1", 9000 + i, None) for i in range(n)])
    return r


@given(ops=st.lists(st.tuples(st.booleans(), st.integers(1, 5000), st.sampled_from([None, b"a", b"b"])), max_size=150))
def test_router_charges_each_try_its_tokens_until_it_ends(ops: list[tuple[bool, int, bytes | None]]) -> None:
    """A backend's tokens are the sum of its tries in flight, whatever order they end in; zero once all end."""
    r = _router(3, RoutingPolicy(affinity="session"))
    live = []
    for end, w, key in ops:
        if end and live:
            st_, work = live.pop(w % len(live))
            r.end_try(st_, work)
        else:
            work = Work(w, key)
            chosen = r.begin_try((), work=work)
            assert chosen is not None
            live.append((chosen, work))
        for b in r.stats().backends.values():
            assert b.tokens == sum(wk.tokens for s, wk in live if s.id == b.id)
            assert b.outstanding == sum(1 for s, _ in live if s.id == b.id)
    for s, work in live:
        r.end_try(s, work)
    assert all(b.tokens == 0 and b.outstanding == 0 for b in r.stats().backends.values())


def test_router_estimates_only_with_a_policy_and_exposes_tokens_in_metrics() -> None:
    r = _router(2, None)
    url, data, size = http("/v1/completions", {"prompt": "abcd", "max_tokens": 99})
    assert r.request_work(url, data, size) is None
    r.set_routing(RoutingPolicy(affinity="session"))
    work = r.request_work(url, data, size)
    assert work == Work(100)
    st_ = r.begin_try((), work=work)
    assert st_ is not None
    text = r._metrics()[1].decode()
    assert f'kubeinfer_router_backend_outstanding_tokens{{backend="{st_.id}"}} 100.0' in text
    r.end_try(st_, work)
    r.begin_try((), work=Work(5, b"k"))
    text = r._metrics()[1].decode()
    assert 'kubeinfer_router_affinity_requests_total{outcome="home"} 1.0' in text
    assert f'kubeinfer_router_backend_outstanding_tokens{{backend="{st_.id}"}} 100.0' not in text
