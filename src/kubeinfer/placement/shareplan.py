"""Online packing of GPU shares guided by the configuration LP of the shares seen so far.

One GPU is a bin of ``capacity`` milli; a pod sharing a GPU is an item of its milli. The configuration LP (minimize
bins such that the bins' fill patterns hold each size's count; columns by a bounded knapsack, :func:`fill_pattern`)
says which multisets of sizes the GPUs should end up holding. :class:`SharePlan` learns the sizes' counts from the
arrivals, re-solves that LP on a doubling schedule, and ranks where the next share should go so that GPUs build its
patterns: the learned-distribution packing of Gupta and Radovanovic ("Interior-point based online stochastic bin
packing", Operations Research 2020). The kubeinfer placement policy (:mod:`kubeinfer.placement.fragmentation`)
decides among the GPUs of one rank; the lower bounds (:mod:`kubeinfer.placement.bound`) price patterns with the
same knapsack.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["PLAN_COLUMNS", "PLAN_MIN_SHARES", "SharePlan", "fill_pattern"]

IntArr = npt.NDArray[np.int64]

PLAN_MIN_SHARES = 64
"""Shares arrived before the first plan is solved (re-solved at 2x, 4x, ... that many)."""
PLAN_COLUMNS = 200
"""Column-generation rounds of the plan's LP at most."""


def fill_pattern(size: IntArr, most: IntArr, value: npt.NDArray[np.float64], capacity: int) -> tuple[float, IntArr]:
    """Bounded knapsack over one bin: the multiset (at most ``most[j]`` of size ``size[j]``, total <= ``capacity``)
    of the largest total ``value``, and that value. Dynamic programme over the capacity, one size at a time."""
    best = np.zeros(capacity + 1)
    take = np.zeros((len(size), capacity + 1), dtype=np.int64)
    for j, (s, m, v) in enumerate(zip(size.tolist(), most.tolist(), value.tolist(), strict=True)):
        if v <= 0:
            continue
        prev = best.copy()
        for c in range(1, m + 1):
            cand = np.full(capacity + 1, -np.inf)
            cand[c * s :] = prev[: capacity + 1 - c * s] + c * v
            better = cand > best
            best[better] = cand[better]
            take[j, better] = c
    # best[capacity] is the optimum (best is non-decreasing in capacity: it starts at 0 everywhere); walk back
    pattern = np.zeros(len(size), dtype=np.int64)
    room = capacity
    for j in range(len(size) - 1, -1, -1):
        c = int(take[j, room])
        pattern[j] = c
        room -= c * int(size[j])
    return float(best[capacity]), pattern


class SharePlan:
    """Which contents of a GPU the shares should build: the patterns of an optimal fractional packing.

    ``shape`` is (nodes, GPUs per node) of the cluster, ``sizes`` every share size the workload may ask for. The LP's
    basic optimum uses at most one pattern per size. Online, a share goes where its GPU's contents stay a part of a
    plan pattern: first where it completes one, then where it continues one, then on an empty GPU (a new pattern),
    and only where nothing on the plan fits somewhere off it (:meth:`ranks`)."""

    def __init__(self, shape: tuple[int, ...], sizes: Sequence[int], capacity: int) -> None:
        self.capacity = capacity
        self.sizes = np.array(sorted(set(int(x) for x in sizes)), dtype=np.int64)
        self.index = {int(v): j for j, v in enumerate(self.sizes.tolist())}
        self.content = np.zeros(shape, dtype=np.int64)  # content id per GPU; 0 = nothing shared on it
        self.vec: list[IntArr] = [np.zeros(len(self.sizes), dtype=np.int64)]
        self.cid: dict[tuple[int, ...], int] = {(): 0}
        self.counts = np.zeros(len(self.sizes))
        self.n = 0
        self.next_solve = PLAN_MIN_SHARES
        self.plan: IntArr | None = None
        self.table = np.full((16, len(self.sizes)), -1, dtype=np.int64)
        """Rank by (content id, size index), -1 until computed; dropped with each new plan."""

    def arrive(self, milli: int) -> None:
        self.counts[self.index[milli]] += 1
        self.n += 1
        if self.n >= self.next_solve:
            self.next_solve *= 2
            self.plan = self._solve()
            self.table[:] = -1

    def _solve(self) -> IntArr:
        from scipy.optimize import linprog

        j = np.flatnonzero(self.counts > 0)
        size, count = self.sizes[j], self.counts[j]
        most = self.capacity // size
        columns: list[IntArr] = [np.eye(len(size), dtype=np.int64)[k] * most[k] for k in range(len(size))]
        x = np.zeros(0)
        for _ in range(PLAN_COLUMNS):
            a = np.array(columns, dtype=np.float64).T
            res = linprog(np.ones(a.shape[1]), A_ub=-a, b_ub=-count, bounds=(0, None), method="highs")
            if res.status != 0:
                break
            x = np.asarray(res.x)
            duals = np.maximum(-np.asarray(res.ineqlin.marginals, dtype=np.float64), 0.0)
            value, pattern = fill_pattern(size, most, duals, self.capacity)
            if value <= 1.0 + 1e-9:
                break
            columns.append(pattern)
        used = [columns[k] for k in np.flatnonzero(x > 1e-9).tolist()]
        plan = np.zeros((len(used), len(self.sizes)), dtype=np.int64)
        for r, col in enumerate(used):
            plan[r, j] = col
        return plan

    def _rank(self, c: int, s: int) -> int:
        assert self.plan is not None
        vec = self.vec[c].copy()
        vec[s] += 1
        inside = (self.plan >= vec[None, :]).all(axis=1)
        if not inside.any():
            return 3
        if c == 0:
            return 2
        return 0 if (self.plan[inside] == vec[None, :]).all(axis=1).any() else 1

    def ranks(self, nodes: IntArr, milli: int, fits: npt.NDArray[np.bool_]) -> IntArr:
        """Per node and GPU: 0 completes a plan pattern, 1 continues one, 2 starts one (empty), 3 off the plan; 9
        where the share does not fit (``fits`` false)."""
        if self.plan is None or not len(self.plan):
            return np.where(fits, 0, 9)
        s = self.index[milli]
        cids = self.content[nodes]
        if len(self.table) < len(self.vec):
            grow = np.full((2 * len(self.vec), len(self.sizes)), -1, dtype=np.int64)
            grow[: len(self.table)] = self.table
            self.table = grow
        todo = np.unique(cids[fits & (self.table[cids, s] < 0)])
        for c in todo.tolist():
            self.table[c, s] = self._rank(c, s)
        return np.where(fits, self.table[cids, s], 9)

    @staticmethod
    def pick(free_row: IntArr, ranks_row: IntArr, value: int) -> int:
        """The GPU of a node a share takes: of the node's best-ranked GPUs, the one of free ``value`` (FGD's choice)
        if it is among them, else the fullest."""
        on = np.flatnonzero(ranks_row == ranks_row.min())
        same = on[free_row[on] == value]
        return int(same[0]) if len(same) else int(on[np.argmin(free_row[on])])

    def place(self, node: int, gpu: int, milli: int) -> None:
        vec = self.vec[int(self.content[node, gpu])].copy()
        vec[self.index[milli]] += 1
        key = tuple(vec.tolist())
        c = self.cid.get(key)
        if c is None:
            c = self.cid[key] = len(self.vec)
            self.vec.append(vec)
        self.content[node, gpu] = c
