"""Checkpointing schedules on their own (pullback/loops/schedules.py): every step reversed
exactly once, in order, with at most c snapshots, in Griewank's t(n, c) forward steps."""
import pytest

from helpers import raises
from pullback.errors import CheckpointPolicyError
from pullback.loops import schedules


def _simulate(actions, n, held, current):
    """Run a reversal on positions: (forward steps, most snapshots held at once)."""
    held, steps, reversed_steps, peak = set(held), 0, [], len(held)
    for action in actions:
        kind, position = action[0], action[1]
        if kind == "advance":
            assert position == current < action[2], action
            steps, current = steps + action[2] - position, action[2]
        elif kind == "store":
            assert position == current and position not in held, action
            held.add(position)
            peak = max(peak, len(held))
        elif kind == "restore":
            assert position in held, action
            current = position
        elif kind == "free":
            held.remove(position)
        else:
            assert kind == "reverse" and position == current, (action, current)
            reversed_steps.append(position)
            current = None
    assert reversed_steps == list(range(n - 1, -1, -1))
    assert not held
    return steps, peak


def _binomial(n, c):
    segments = schedules.initial_sweep(n, c)
    steps, peak = _simulate(schedules.reversal(segments, n), n, [p for p, _ in segments], n - 1)
    return n - 1 + steps, peak          # the first sweep advances to the state at n - 1


@pytest.mark.parametrize("ns, cs", [(range(1, 121), range(1, 41)),
                                    ([500, 1999, 2000], [1, 2, 3, 7, 30, 40])])
def test_binomial_schedules_reverse_every_step_once_with_c_snapshots_in_t_n_c_steps(ns, cs):
    for n in ns:
        for c in cs:
            steps, peak = _binomial(n, c)
            assert peak <= c, (n, c)
            assert steps == schedules.forward_steps(n, c), (n, c)


def test_the_binomial_recursion_is_revolve_optimal_for_every_n_to_2000_and_c_to_40():
    # `_segment` (simulated above) advances split(n, c) steps, reverses the rest with one
    # snapshot fewer, then the first part: its cost is t(n, c) exactly when every split
    # satisfies this recursion, which then holds for all (n, c) by induction.
    t = schedules.forward_steps
    for c in range(1, 41):
        for n in range(2, 2001):
            m = schedules.split(n, c)
            assert 1 <= m < n and (c >= 2 or n - m == 1), (n, c, m)
            assert t(n, c) == m + t(n - m, c - 1) + t(m, c), (n, c, m)


def test_griewanks_t_is_the_minimum_over_every_way_to_split():
    # Brute force: reversing n steps from a held state with c snapshots either reverses
    # the one step, or advances m steps, stores, reverses the rest with c - 1, then the
    # first m with c.
    best = {}
    for c in range(1, 7):
        for n in range(1, 61):
            best[n, c] = 0 if n == 1 else min(
                m + (best[n - m, c - 1] if n - m > 1 else 0) + best[m, c]
                for m in range(1, n) if c > 1 or n - m == 1)
            assert schedules.forward_steps(n, c) == best[n, c], (n, c)
    assert schedules.forward_steps(10, 1) == 45 and schedules.repetitions(10**4, 30) == 4


@pytest.mark.parametrize("budget", [lambda steps: steps.bit_length() + 8, lambda steps: 3])
def test_online_schedule_keeps_its_budget_and_reverses_every_step(budget):
    for n in list(range(1, 200)) + [1000, 2000]:
        online = schedules.Online(budget)
        for position in range(1, n):          # the loop offers each state it reaches
            online.offer(position)
            assert len(online.positions) <= max(budget(position), 1)
        segments = online.segments(n)
        steps, peak = _simulate(schedules.reversal(segments, n), n,
                                [p for p, _ in segments], n - 1)
        assert peak <= max(budget(n), len(segments)) and len(segments) <= budget(n)


def test_policies_give_their_snapshot_counts():
    budget = schedules.snapshot_budget
    assert budget(7, 100, 8) == 7
    assert budget("sqrt", 100, 8) == 10 and budget("sqrt", 101, 8) == 11
    assert budget("auto", 10**4, 8) == 14
    assert budget("1KB", 100, 100) == 10 and budget("1 KiB", 100, 1) == 1024
    assert budget("10B", 100, 100) == 1


@pytest.mark.parametrize("policy", ["some", 0, -2, True, 1.5, "12XB", None])
def test_unknown_policies_are_refused(policy):
    with raises(CheckpointPolicyError, "is not a checkpointing policy", "auto"):
        schedules.checked_policy(policy)
