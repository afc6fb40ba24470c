"""Sixth correctness review: what a scientist relying on gradients, Jacobians, Hessians and
Hessian-vector products would meet in the newest fast paths (the reverse tracer's own
operators, in-place cotangent sums, jit's snapshot) and the families reviewed least (sparse
plans, loops, vmap, linear algebra, custom rules). Each test is named after the defect it
pins down."""
import numpy as np
import pytest

import pullback
from helpers import raises
from pullback import cond, fori_loop, scan, switch, while_loop
from pullback.errors import CustomRuleError


# ------------------------------------ loops


_PARAMETERS = None     # a global array that a loop body reads

_LOOPS = {
    "fori_loop": lambda x, step: fori_loop(0, 2, lambda i, c: step(c), x),
    "scan": lambda x, step: scan(lambda c, t: (step(c), c), x, None, length=2)[0],
    "while_loop": lambda x, step: while_loop(lambda v: v[1] < 2,
                                             lambda v: (step(v[0]), v[1] + 1), (x, 0))[0],
    "cond": lambda x, step: cond(True, step, lambda c: c, x),
    "switch": lambda x, step: switch(1, [lambda c: c, step], x),
    "checkpoint": lambda x, step: pullback.checkpoint(step)(x),
}


@pytest.mark.parametrize("size", [2, 10_000])         # (kept whole, kept as a digest)
@pytest.mark.parametrize("loop", sorted(_LOOPS))
def test_item1_a_loop_body_reading_an_array_written_into_since_is_staged_again(loop, size,
                                                                              monkeypatch):
    """A body's program was cached by the identity of the arrays it reads, but Python code
    in the body may read their values while it is staged (`W[0]` is then a constant of the
    program): after the user wrote into the array, fori_loop, scan, while_loop, cond and
    switch kept computing with the old value, their results and gradients silently stale
    (4.0 for 9.0). Arrays are now compared by content before a program is reused, and a body
    reading an unchanged array is still staged once."""
    global _PARAMETERS
    _PARAMETERS = parameters = np.full(size, 2.0)   # updated in place between calls

    def step(c):
        return c * _PARAMETERS[0]

    def f(x):
        return np.sum(_LOOPS[loop](x, step))
    x = np.array([1.0, 0.5])
    power = 1 if loop in ("cond", "switch", "checkpoint") else 2
    for a in (2.0, 3.0, 2.0):
        parameters[0] = a
        np.testing.assert_allclose(f(x), 1.5 * a ** power)
        np.testing.assert_allclose(pullback.grad(f)(x), [a ** power] * 2)
        np.testing.assert_allclose(pullback.jacfwd(f)(x), [a ** power] * 2)
    from pullback.loops import bodies
    stagings = []
    original = bodies._stage_function
    monkeypatch.setattr(bodies, "_stage_function",
                        lambda *args: stagings.append(args) or original(*args))
    for _ in range(2):
        f(x)
    assert len(stagings) <= (2 if loop == "checkpoint" else 1)   # (checkpoint: at each call)


# ------------------------------------ custom rules


def test_item2_custom_vjp_rule_with_a_constant_cotangent_term_is_refused_in_forward_mode():
    """A bwd rule that is not linear in the cotangent (here ct cos(x) + 1) gave jacrev
    cos(x) + 1 in every entry but jacfwd diag(cos(x)): forward mode transposes bwd at zero
    cotangents, where the constant is invisible. bwd's results there are now checked (where
    known), as a custom_jvp rule's tangents are in reverse mode."""
    @pullback.custom_vjp
    def affine(a):
        return np.sin(a)
    affine.defvjp(lambda a: (np.sin(a), np.cos(a)), lambda c, ct: (ct * c + 1.0,))
    x = np.array([0.5, 1.0])
    with raises(CustomRuleError, "nonzero cotangents for zero output cotangents"):
        pullback.jacfwd(affine)(x)
    with raises(CustomRuleError, "linear in the output cotangents"):
        pullback.pushforward(affine, (x,), (x,))

    @pullback.custom_vjp
    def linear(a):
        return np.sin(a)
    linear.defvjp(lambda a: (np.sin(a), np.cos(a)), lambda c, ct: (ct * c,))
    np.testing.assert_allclose(pullback.jacfwd(linear)(x), np.diag(np.cos(x)))
