"""The continuous-batching scheduler and the incremental text of a sequence (pure: no model)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeinfer.runtimes.llm import Scheduler, SchedulerConfig, TextTail
from kubeinfer.runtimes.llm.scheduler import Plan


def test_running_sequences_decode_and_waiting_ones_join_within_max_num_seqs() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=2, max_num_batched_tokens=100))
    for i, n in enumerate([5, 6, 7]):
        s.add(i, n)
    plan = s.schedule()
    assert (plan.prefill, plan.decode) == ((0, 1), ())
    plan = s.schedule()
    assert (plan.prefill, plan.decode) == ((), (0, 1))
    s.finish(0)  # a place frees: the next waiting sequence joins at the next step, beside the running one
    plan = s.schedule()
    assert (plan.prefill, plan.decode) == ((2,), (1,))


def test_prompt_tokens_and_decode_tokens_share_max_num_batched_tokens() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=10))
    s.add(0, 6)
    s.add(1, 4)
    s.add(2, 3)
    assert s.schedule().prefill == (0, 1)  # 6 + 4 = 10; 3 more would exceed
    plan = s.schedule()  # two decode tokens leave room for 8 prompt tokens
    assert (plan.prefill, plan.decode) == ((2,), (0, 1))


def test_admission_is_first_come_first_served_a_long_prompt_is_not_overtaken() -> None:
    s2 = Scheduler(SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=10))
    s2.add(0, 5)
    s2.schedule()
    s2.add(1, 10)  # does not fit beside the running sequence's decode token
    s2.add(2, 1)
    assert s2.schedule().prefill == ()  # the short one, which would fit, waits behind the long one
    s2.finish(0)
    assert s2.schedule().prefill == (1,)


def test_arrivals_during_a_steps_prefill_join_it_within_what_the_step_has_left() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=12))
    s.add(0, 3)
    s.schedule()
    s.add(1, 4)
    assert s.schedule() == Plan((1,), (0,))  # 1 decode + 4 prompt tokens of 12: 7 left, 2 places
    s.add(2, 5)
    s.add(3, 3)
    s.add(4, 1)
    assert s.join() == (2,)  # 5 of the 7 tokens left; 3 needs 3 of the 2 left, and 4 waits behind it (FCFS)
    assert s.join() == ()
    plan = s.schedule()  # the next step: 3 decodes, 3's prompt takes the last place, 4 waits
    assert (plan.prefill, plan.decode) == ((3,), (0, 1, 2))


def test_a_prompt_longer_than_the_token_budget_is_refused() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=2, max_num_batched_tokens=8))
    with pytest.raises(ValueError, match="does not fit maxNumBatchedTokens"):
        s.add(0, 9)


def test_abort_drops_a_sequence_wherever_it_is() -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=1, max_num_batched_tokens=100))
    s.add(0, 3)
    s.add(1, 3)
    s.schedule()
    assert s.abort(1) and s.num_waiting == 0
    assert s.abort(0) and s.num_running == 0
    assert not s.abort(0)


def test_config_errors_name_the_arguments() -> None:
    with pytest.raises(ValueError, match="maxNumSeqs"):
        SchedulerConfig(max_num_seqs=0)
    with pytest.raises(ValueError, match="maxNumBatchedTokens"):
        SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=4)


@given(
    st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=30),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=20, max_value=40),
    st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_every_step_stays_within_both_limits_and_every_sequence_runs(
    prompts: list[int], seqs: int, tokens: int, finishes: list[bool]
) -> None:
    s = Scheduler(SchedulerConfig(max_num_seqs=seqs, max_num_batched_tokens=tokens))
    for i, n in enumerate(prompts):
        s.add(i, n)
    admitted: list[int] = []
    for step in range(10_000):
        plan = s.schedule()
        assert len(plan.prefill) + len(plan.decode) <= seqs
        assert sum(prompts[i] for i in plan.prefill) + len(plan.decode) <= tokens
        admitted += plan.prefill
        for i in plan.decode:
            if finishes[(i + step) % len(finishes)] or step > 50:
                s.finish(i)
        if not s.num_waiting and not s.num_running:
            break
    assert admitted == list(range(len(prompts)))  # first come, first served


def _decoder(pieces: dict[int, str]):  # type: ignore[no-untyped-def]
    return lambda ids: "".join(pieces[i] for i in ids)


def test_text_is_emitted_as_it_settles_and_a_stop_string_never_leaks() -> None:
    tail = TextTail(_decoder({1: "Hel", 2: "lo", 3: " wo", 4: "rld", 5: "!"}), stop=["world"])
    assert tail.push(1) == ("Hel", False)
    assert tail.push(2) == ("lo", False)
    assert tail.push(3) == (" ", False)  # "wo" may be the start of "world": held back
    assert tail.push(4) == ("", True)  # the stop string ends the sequence and is not emitted
    tail2 = TextTail(_decoder({1: "Hel", 2: "lo", 3: " wo", 4: "ve"}), stop=["world"])
    for t in (1, 2, 3):
        tail2.push(t)
    assert tail2.push(4) == ("wove", False)  # not a stop after all: released


def test_stop_string_inside_one_token_cuts_the_text_there() -> None:
    tail = TextTail(_decoder({1: "abc", 2: "dSTOPef"}), stop=["STOP"])
    assert tail.push(1) == ("abc", False)
    assert tail.push(2) == ("d", True)


def _bytes_decoder(pieces: dict[int, bytes]):  # type: ignore[no-untyped-def]
    """A byte-level decoder like a BPE tokenizer's: a token may hold part of a UTF-8 character."""
    return lambda ids: b"".join(pieces[i] for i in ids).decode("utf-8", "replace")


def test_an_incomplete_character_waits_for_its_next_byte() -> None:
    tail = TextTail(_bytes_decoder({1: b"caf", 2: b"\xc3", 3: b"\xa9", 4: b"!"}), stop=[])
    assert tail.push(1) == ("caf", False)
    assert tail.push(2) == ("", False)  # half of "é"
    assert tail.push(3) == ("é", False)
    assert tail.push(4) == ("!", False)


def test_an_incomplete_character_at_the_end_is_flushed_as_a_replacement() -> None:
    tail = TextTail(_bytes_decoder({1: b"ab", 2: b"\xc3"}), stop=[])
    tail.push(1)
    assert tail.push(2) == ("", False)
    assert tail.flush() == "\ufffd"


def test_incremental_text_equals_decoding_the_whole_output() -> None:
    pieces = {i: bytes([0x61 + i % 26]) if i % 7 else b"\xe2\x82" for i in range(1, 60)}
    pieces[61] = b"\xac"  # completes the euro sign
    decode = _bytes_decoder(pieces)
    tail = TextTail(decode, stop=[])
    ids = [*range(1, 14), 61, *range(20, 30)]
    text = "".join(tail.push(i)[0] for i in ids) + tail.flush()
    assert text == decode(ids)


def test_flush_releases_text_held_back_at_the_end() -> None:
    tail = TextTail(_decoder({1: "ab", 2: "wor"}), stop=["world"])
    tail.push(1)
    assert tail.push(2) == ("", False)
    assert tail.flush() == "wor"
