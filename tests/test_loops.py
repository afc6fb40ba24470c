"""scan and fori_loop (pullback/loops/): every mode and mix against the unrolled Python loop
and finite differences, every checkpointing policy, staging that keeps loops rolled, and
errors for bad bodies."""
import io

import numpy as np
import pytest

import pullback
from helpers import raises
from pullback import errors
from pullback.testing import check_grads

RNG = np.random.default_rng(0)
W = RNG.normal(size=(3, 3)) / 2
XS = RNG.normal(size=(6, 3)) / 4
POLICIES = ["all", "carry", 2, "sqrt", "auto", "1KB"]


def rnn_step(carry, x):
    """A step with a pytree carry (a state and a running sum) and a pytree of outputs."""
    h, total = carry["h"], carry["total"]
    h = np.tanh(W @ h + x) * carry["scale"]
    return {"h": h, "total": total + np.sum(h ** 2), "scale": carry["scale"]}, (h[0], np.sin(h))


def _loss(outs):
    last, (firsts, sines) = outs
    return np.sum(last["h"] ** 3) + last["total"] + np.sum(firsts * np.arange(6)) + np.sum(sines)


def unrolled(h0, xs=XS, reverse=False):
    carry, firsts, sines = {"h": h0, "total": 0.0, "scale": 1.5}, [], []
    for x in (xs[::-1] if reverse else xs):
        carry, (a, b) = rnn_step(carry, x)
        firsts.append(a)
        sines.append(b)
    if reverse:
        firsts, sines = firsts[::-1], sines[::-1]
    return _loss((carry, (np.stack(firsts), np.stack(sines))))


def scanned(h0, xs=XS, reverse=False, checkpoints="all"):
    init = {"h": h0, "total": 0.0, "scale": 1.5}
    return _loss(pullback.scan(rnn_step, init, xs, reverse=reverse, checkpoints=checkpoints))


H0 = np.array([0.3, -0.2, 0.5])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("checkpoints", POLICIES)
def test_scan_gradient_equals_the_unrolled_loops_in_every_policy(checkpoints, reverse):
    def f(h0, xs):
        return scanned(h0, xs, reverse, checkpoints)
    expected = pullback.grad(unrolled, argnums=(0, 1))(H0, XS, reverse)
    for got in (pullback.grad(f, argnums=(0, 1))(H0, XS),
                pullback.jit(pullback.grad(f, argnums=(0, 1)))(H0, XS)):
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-12, atol=1e-14)
    assert np.isclose(f(H0, XS), unrolled(H0, XS, reverse))


@pytest.mark.parametrize("checkpoints", POLICIES)
def test_checkpointed_gradients_equal_the_store_all_gradient_bit_for_bit(checkpoints):
    def f(h0):
        return scanned(h0, checkpoints=checkpoints)

    def all_(h0):
        return scanned(h0, checkpoints="all")
    assert np.array_equal(pullback.grad(f)(H0), pullback.grad(all_)(H0))


@pytest.mark.parametrize("checkpoints", ["all", "carry", 2])
def test_scan_derivatives_match_finite_differences_to_second_order(checkpoints):
    check_grads(lambda h0, xs: scanned(h0, xs, checkpoints=checkpoints), (H0, XS), order=2)


@pytest.mark.parametrize("mode", ["reverse-over-reverse", "forward-over-reverse",
                                  "reverse-over-forward", "forward-over-forward"])
@pytest.mark.parametrize("checkpoints", ["all", "carry", 3])
def test_scan_hessians_in_every_mode_equal_the_unrolled_loops(mode, checkpoints):
    expected = pullback.hessian(unrolled)(H0)
    got = pullback.hessian(lambda h: scanned(h, checkpoints=checkpoints), mode=mode)(H0)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    jitted = pullback.jit(pullback.hessian(lambda h: scanned(h, checkpoints=checkpoints),
                                           mode=mode))(H0)
    np.testing.assert_allclose(jitted, expected, rtol=1e-10, atol=1e-12)


def test_scan_jvp_and_vmap_equal_the_unrolled_loops():
    t = np.array([1.0, -2.0, 0.5])
    out, tangent = pullback.jvp(scanned, (H0,), (t,))
    expected = pullback.jvp(unrolled, (H0,), (t,))
    np.testing.assert_allclose([out, tangent], expected, rtol=1e-12)
    batch = RNG.normal(size=(4, 3))
    np.testing.assert_allclose(pullback.vmap(scanned)(batch), [unrolled(b) for b in batch],
                               rtol=1e-12)
    xs_batch = RNG.normal(size=(4, 6, 3))
    np.testing.assert_allclose(pullback.vmap(lambda xs: scanned(H0, xs))(xs_batch),
                               [unrolled(H0, xs) for xs in xs_batch], rtol=1e-12)
    per_example = pullback.vmap(pullback.grad(scanned))(batch)
    np.testing.assert_allclose(per_example, [pullback.grad(unrolled)(b) for b in batch],
                               rtol=1e-12)
    jitted = pullback.jit(pullback.vmap(pullback.grad(lambda h: scanned(h, checkpoints=2))))
    np.testing.assert_allclose(jitted(batch), per_example, rtol=1e-12)


def test_fori_loop_equals_the_python_loop_in_every_mode():
    def body(i, x):
        return x * np.cos(x) + 0.1 * i

    def looped(x):
        return np.sum(pullback.fori_loop(1, 5, body, x))

    def python(x):
        for i in range(1, 5):
            x = body(i, x)
        return np.sum(x)
    x = np.array([0.3, 0.7])
    assert np.isclose(looped(x), python(x))
    np.testing.assert_allclose(pullback.grad(looped)(x), pullback.grad(python)(x), rtol=1e-12)
    np.testing.assert_allclose(pullback.hessian(looped)(x), pullback.hessian(python)(x),
                               rtol=1e-12)
    np.testing.assert_allclose(pullback.jit(pullback.grad(looped))(x),
                               pullback.grad(python)(x), rtol=1e-12)
    check_grads(looped, (x,), order=2)


def test_a_jitted_loop_stays_a_python_for_loop_and_its_body_is_staged_once():
    def rk4(y, dt=0.01):
        def step(i, y):
            k1 = np.tanh(W @ y)
            k2 = np.tanh(W @ (y + dt / 2 * k1))
            k3 = np.tanh(W @ (y + dt / 2 * k2))
            k4 = np.tanh(W @ (y + dt * k3))
            return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return np.sum(pullback.fori_loop(0, steps, step, y))
    sizes = []
    for steps in (10, 1000):
        program = pullback.make_ir(pullback.grad(rk4), optimized=True)(H0)
        source = pullback.show(pullback.grad(rk4), H0, file=io.StringIO())
        sizes.append((len(program.equations), source.count("\n")))
        assert "    for " in source and "def step" in source and "def step_reverse" in source
        assert "for" in str(program) and "step_reverse" in str(program)
    assert sizes[0] == sizes[1]


def test_zero_length_scans_return_the_init_and_empty_ys():
    last, ys = pullback.scan(lambda c, x: (c + x, c * x), 1.0, np.zeros(0))
    assert last.shape == () and float(last) == 1.0 and ys.shape == (0,)


def test_bad_loop_bodies_get_a_loop_type_error():
    with raises(errors.LoopTypeError, "changed carry leaf 0", "float64[2]"):
        pullback.scan(lambda c, x: (np.stack([c, c]), None), 1.0, length=3)
    with raises(errors.LoopTypeError, "changed carry leaf 0", "int64"):
        pullback.fori_loop(0, 3, lambda i, c: c * 0.5, 1)
    with raises(errors.LoopTypeError, "structure"):
        pullback.scan(lambda c, x: ((c, c), None), 1.0, length=3)
    with raises(errors.LoopTypeError, "pair"):
        pullback.scan(lambda c, x: c, 1.0, length=3)
    with raises(errors.LoopTypeError, "same length"):
        pullback.scan(lambda c, x: (c, None), 1.0, (np.ones(3), np.ones(4)))
    with raises(errors.CheckpointPolicyError, "not a checkpointing policy"):
        pullback.scan(lambda c, x: (c, None), 1.0, length=3, checkpoints="most")


def test_random_draws_and_outside_changes_in_a_body_are_errors():
    with raises(errors.StagedRandomnessError, "pass the generator state in"):
        pullback.scan(lambda c, x: (c + np.random.normal(), None), 1.0, length=3)
    kept = []

    def leaky(c, x):
        kept.append(c)
        return c, None
    with raises(errors.OutsideStateError, "`leaky` changed state outside itself"):
        pullback.scan(leaky, 1.0, length=3)


def test_a_body_is_staged_once_per_signature(monkeypatch):
    from pullback.loops import bodies
    calls = []
    original = bodies._stage_function

    def counting(*args):
        calls.append(args[-1])
        return original(*args)
    monkeypatch.setattr(bodies, "_stage_function", counting)

    def body(i, x):
        return x * W[0, 0] + i
    for x in (np.ones(3), np.zeros(3), np.ones(3)):
        pullback.fori_loop(0, 4, body, x)
    pullback.fori_loop(0, 4, body, np.ones(2))
    assert calls == ["body", "body"]


@pytest.mark.parametrize("n, c", [(50, 3), (64, 1), (40, 40)])
def test_binomial_checkpointing_takes_griewanks_t_n_c_forward_steps(monkeypatch, n, c):
    from pullback.loops import loop, schedules
    steps = []
    original = loop.loop_runner

    def counting(program, n_consts):
        prepare, step = original(program, n_consts)

        def counted(*args):
            steps.append(1)
            return step(*args)
        return prepare, counted
    monkeypatch.setattr(loop, "loop_runner", counting)
    pullback.grad(lambda x: np.sum(pullback.fori_loop(
        0, n, lambda i, y: np.sin(y) * 1.01, x, checkpoints=c)))(np.ones(2))
    assert len(steps) == n + schedules.forward_steps(n, c)     # the primal pass, then t(n, c)


def test_a_body_reading_another_array_is_staged_again():
    # Python code may read an array's values while the body is staged (`A[0, 0]` is a
    # NumPy scalar, a constant of the program): another array must not reuse the program.
    def run(A):
        return pullback.fori_loop(0, 2, lambda i, x: x * A[0, 0], 1.0)
    assert float(run(np.full((2, 2), 2.0))) == 4.0
    assert float(run(np.full((2, 2), 3.0))) == 9.0
