"""Checkpointing schedules: which loop states to keep, and how to reverse every step with them.

Reverse mode through an n-step loop needs the state before each step, in reverse order.
Keeping all n states costs memory; keeping c "snapshots" and recomputing the others costs
forward steps. This module decides, as plain data, knowing nothing of arrays:

- `forward_steps(n, c)`: Griewank's minimum t(n, c) of forward steps needed to reverse n
  steps with c snapshots (the state at 0 held in one of them), and `repetitions(n, c)`;
- `reversal(segments, n)`: the actions of a reversal (yielded one at a time: a list of
  them would hold O(n) tuples, more than the snapshots), from last step to first, where
  `segments` are the snapshot positions the forward sweep kept with the number of
  snapshots each segment may use; inside a segment the binomial (Revolve) recursion
  splits where Griewank's formula says, so that `initial_sweep(n, c)` followed by the
  reversal of its segments takes exactly t(n, c) forward steps (Revolve-optimal);
- `Online`: snapshot positions kept while the number of steps is unknown (a `while`
  loop): every d-th state, d doubling whenever the budget is exceeded;
- `checked_policy(policy)` and `snapshot_budget(policy, n, state_bytes)`: the c a policy
  means for n steps.

Actions are tuples: ("advance", i, j) runs steps i..j-1 from the current state (at i) to
the state at j; ("store", i) keeps the current state (at i) as a snapshot; ("restore", i)
makes the snapshot at i current; ("free", i) drops it; ("reverse", i) reverses step i
from the current state (at i): recomputes what the step's derivative reads, and pulls the
cotangent back through it. The state at 0 and the snapshots given in `segments` are held
before the reversal starts; the current state is then the one at n - 1.

Reference: A. Griewank and A. Walther, "Algorithm 799: Revolve", ACM TOMS 26 (2000), and
"Evaluating Derivatives" (2nd ed., SIAM 2008), section 12.3, for t(n, c).
"""
import math
import re
from math import comb

import numpy as np

from ..errors import CheckpointPolicyError


def beta(c: int, r: int) -> int:
    """The most steps c snapshots reverse with r repetitions: binomial(c + r, c)."""
    return comb(c + r, c) if r >= 0 else 0


def repetitions(n: int, c: int) -> int:
    """The least r with beta(c, r) >= n: how many times the worst step is recomputed."""
    if n < 1 or c < 1 and n > 1:
        raise ValueError(f"cannot reverse {n} steps with {c} snapshots")
    r, steps = 0, 1                     # steps = beta(c, r)
    while steps < n:
        r += 1
        steps = steps * (c + r) // r
    return r


def forward_steps(n: int, c: int) -> int:
    """Griewank's t(n, c) = r n - binomial(c + r, c + 1): the fewest forward steps that
    reverse n steps with c snapshots (the one holding the initial state included)."""
    r = repetitions(n, c)
    return r * n - beta(c + 1, r - 1)


def split(n: int, c: int) -> int:
    """Where the binomial recursion splits n steps held by c snapshots: it advances m
    steps, keeps that state, reverses the last n - m steps with c - 1 snapshots, then the
    first m with c. Any m with n - m in [beta(c-1, r-1), beta(c-1, r)] and m in
    [beta(c, r-2), beta(c, r-1)] costs t(n, c) in total (Pascal's rule); the largest
    such m (the interval is never empty), so the recursion goes deep on the right."""
    r = repetitions(n, c)
    return min(n - beta(c - 1, r - 1), beta(c, r - 1), n - 1)


def _segment(start: int, stop: int, c: int):
    """Yield the actions reversing steps start..stop-1, from the current state at `start`,
    which is held as a snapshot; at most c snapshots (that one included) at any time.
    The binomial recursion, run with a stack of the enclosing segments (a recursive
    generator would pass each action up through every level: Python time per step)."""
    enclosing = []                       # (start, c) of the segments waiting for an inner one
    while True:
        while stop - start > 1:
            m = start + split(stop - start, c)
            yield ("advance", start, m)
            if stop - m == 1:            # one step: reversed from the current state
                yield ("reverse", m)
                yield ("restore", start)
                stop = m
            else:                        # reverse m..stop-1 from a snapshot at m, c - 1 left
                yield ("store", m)
                enclosing.append((start, c))
                start, c = m, c - 1
        yield ("reverse", start)
        if not enclosing:
            return
        inner = start                    # the inner segment is reversed: back to its parent
        yield ("free", inner)
        start, c = enclosing.pop()
        yield ("restore", start)
        stop = inner


def initial_sweep(n: int, c: int) -> list:
    """The snapshot positions Revolve's first forward sweep keeps (0 first), each with the
    number of snapshots its segment may use: the segments between them are reversed last
    to first. The state at n - 1 is current after the sweep."""
    segments, start = [(0, c)], 0
    while n - start > 1:
        m = start + split(n - start, c)
        if n - m == 1:
            break
        c -= 1
        segments.append((m, c))
        start = m
    return segments


def reversal(segments: list, n: int):
    """Yield the actions reversing steps n-1..0 after a forward sweep that kept `segments`
    ((position, snapshots the segment may use), increasing, 0 first) and left the state at
    n - 1 current. Each segment's snapshot is freed once its segment is reversed."""
    stops = [p for p, _ in segments[1:]] + [n]
    for j in range(len(segments) - 1, -1, -1):
        (start, c), stop = segments[j], stops[j]
        if j == len(segments) - 1:           # the state at n - 1 is current
            yield ("reverse", n - 1)
            stop = n - 1
        if stop > start:
            yield ("restore", start)
            yield from _segment(start, stop, c)
        yield ("free", start)


# ------------------------------------------------------------------ online

class Online:
    """Snapshot positions for a loop whose length is unknown while it runs.

    The states at multiples of `stride` are kept; when more than `budget(steps)` would be
    held, the stride doubles and the states off it are dropped, so the kept ones stay
    evenly spread. The reversal then shares `budget(n)` snapshots (`segments`).
    """

    def __init__(self, budget):
        self.budget, self.stride, self.positions = budget, 1, [0]

    def offer(self, position: int) -> bool:
        """Whether to keep the state at `position` (the next one, > 0); afterwards, the
        states kept before are those at multiples of `stride`."""
        if position % self.stride:
            return False
        self.positions.append(position)
        if len(self.positions) > self.budget(position):
            self.stride *= 2
            self.positions = [p for p in self.positions if not p % self.stride]
        return not position % self.stride

    def segments(self, n: int) -> list:
        """(position, snapshots its segment may use) for the reversal of n steps."""
        c = max(self.budget(n), len(self.positions))
        return [(p, c - j) for j, p in enumerate(self.positions)]


POLICIES = ("all", "carry", "sqrt", "auto")


def checked_policy(policy):
    """The policy if it is one (see `snapshot_budget`; "all" and "carry" keep residuals and
    carries without a schedule); CheckpointPolicyError otherwise."""
    if isinstance(policy, bool) or not (isinstance(policy, (int, np.integer)) and policy >= 1
                                        or policy in POLICIES or _parsed_bytes(policy)):
        raise CheckpointPolicyError(
            f"checkpoints={policy!r} is not a checkpointing policy. Use \"all\" (keep every "
            "step's residuals), \"carry\" (keep one carry per step), \"sqrt\", \"auto\" "
            "(about log2(n) snapshots), a number of snapshots (an int >= 1), or a memory "
            "budget such as \"256MB\".")
    return int(policy) if isinstance(policy, (int, np.integer)) else policy


def snapshot_budget(policy, n: int, state_bytes: int) -> int:
    """The number of snapshots a checkpointing policy means for n steps of states of
    `state_bytes` bytes: an int itself, "sqrt" ceil(sqrt n), "auto" bit_length(n) (the floor
    ceil(log2 n) + 16 states leaves room for a step's temporaries),
    a memory budget ("256MB") as many states as fit. At least 1."""
    if isinstance(policy, (int, np.integer)):
        return int(policy)
    if policy == "sqrt":
        return max(1, math.isqrt(max(n - 1, 0)) + 1)
    if policy == "auto":
        return n.bit_length()
    return max(1, _parsed_bytes(policy) // max(state_bytes, 1))


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30}


def _parsed_bytes(text) -> int:
    """A memory size written as "500MB", "1.5GiB" or "4096" (bytes); 0 if it is none."""
    match = isinstance(text, str) and re.fullmatch(
        r"\s*(\d+(?:\.\d*)?)\s*([kKmMgG]i?[bB]|[bB])?\s*", text)
    if not match:
        return 0
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
