"""Which sequences run in the next step of continuous batching: a sans-I/O state machine, no torch, no clock.

Continuous (iteration-level) batching, as Orca (Yu et al., OSDI '22) introduced and vLLM serves: the batch is formed
again at every decode step, so a sequence joins as soon as there is room and leaves the step it finishes, instead of
waiting for the whole batch. Each step decodes one token of every running sequence, then admits waiting sequences
first come, first served while both limits hold:

- ``max_num_seqs``: sequences running at once (the batch's rows; vLLM's ``max_num_seqs``);
- ``max_num_batched_tokens``: tokens computed in one step: one per running sequence plus the whole prompt of each
  admitted one (vLLM's ``max_num_batched_tokens``, without chunked prefill: a prompt longer than it is refused).

Admission stops at the first waiting sequence that does not fit rather than skipping to a smaller one behind it, so a
long prompt is never starved by a stream of short ones.

Prefills go before decodes within a step, as vLLM's scheduler does without chunked prefill: the joining sequences'
prompts are computed first and their first tokens go out before the running batch decodes, so a new request waits for
at most the step in progress, not for the step after it. Sequences that arrive while a step's prefill pass runs may
still join that step (:meth:`Scheduler.join`, once per step, within what is left of both limits): under load, requests
arrive while earlier ones are being prefilled, and without it they would wait for the running batch's decode pass and
the next step's prefill. Once per step bounds what prefills can add to the running sequences' step (two prefill passes
at most), so a stream of arrivals does not stall decoding.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["Plan", "Scheduler", "SchedulerConfig"]


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 4096

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError(f"maxNumSeqs must be an integer >= 1, not {self.max_num_seqs}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"maxNumBatchedTokens ({self.max_num_batched_tokens}) must be at least maxNumSeqs "
                f"({self.max_num_seqs}): every running sequence decodes one token per step"
            )


@dataclass(frozen=True, slots=True)
class Plan:
    """One step: the sequences whose prompts are computed (they join the batch) and those that decode one token."""

    prefill: tuple[int, ...]
    decode: tuple[int, ...]

    @property
    def empty(self) -> bool:
        return not self.prefill and not self.decode


class Scheduler:
    """Waiting and running sequences by id; :meth:`schedule` forms the next step, :meth:`finish` and :meth:`abort`
    free a place. The caller runs the plan and reports back; nothing here blocks or keeps time."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.waiting: deque[tuple[int, int]] = deque()  # (id, prompt tokens), in arrival order
        self.running: list[int] = []
        # what the step being run has left of both limits, for :meth:`join` (nothing before the first step)
        self._budget = 0
        self._room = 0

    def fits(self, prompt_tokens: int) -> bool:
        """Whether a prompt this long can ever be scheduled (it must fit one step's token budget)."""
        return 0 < prompt_tokens <= self.config.max_num_batched_tokens

    def add(self, seq_id: int, prompt_tokens: int) -> None:
        if not self.fits(prompt_tokens):
            raise ValueError(
                f"a prompt of {prompt_tokens} tokens does not fit maxNumBatchedTokens "
                f"({self.config.max_num_batched_tokens})"
            )
        self.waiting.append((seq_id, prompt_tokens))

    def schedule(self) -> Plan:
        """The next step: every running sequence decodes; waiting ones join while both limits hold (FCFS)."""
        decode = tuple(self.running)
        self._budget = self.config.max_num_batched_tokens - len(decode)
        self._room = self.config.max_num_seqs - len(decode)
        return Plan(self._admit(), decode)

    def join(self) -> tuple[int, ...]:
        """Waiting sequences that join the step :meth:`schedule` formed last, before its decode pass: those that
        arrived since, FCFS within what the step has left of both limits. The caller computes their prompts in a
        second prefill pass of the step (and asks once per step)."""
        return self._admit()

    def _admit(self) -> tuple[int, ...]:
        prefill: list[int] = []
        while self.waiting and self._room > 0:
            seq_id, tokens = self.waiting[0]
            if tokens > self._budget:
                break
            self.waiting.popleft()
            prefill.append(seq_id)
            self._budget -= tokens
            self._room -= 1
        self.running.extend(prefill)
        return tuple(prefill)

    def finish(self, seq_id: int) -> None:
        """A running sequence is done: its place is free for the next step."""
        self.running.remove(seq_id)

    def abort(self, seq_id: int) -> bool:
        """Drop a sequence wherever it is; ``False`` if it was not there (already finished)."""
        if seq_id in self.running:
            self.running.remove(seq_id)
            return True
        for i, (sid, _) in enumerate(self.waiting):
            if sid == seq_id:
                del self.waiting[i]
                return True
        return False

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)
