"""scan and fori_loop (pullback/loops/): every mode and mix against the unrolled Python loop
and finite differences, every checkpointing policy, staging that keeps loops rolled, and
errors for bad bodies."""
import io
import tracemalloc

import numpy as np
import pytest

import pullback
from helpers import benchmark_module, raises
from pullback import errors
from pullback.ir.codegen import compile_program
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
        generated = compile_program(program).source       # jit calls the bodies; show inlines
        assert "    for " in source and source.count("def ") == 1
        assert "def step_forward(" in generated and "def step_reverse(" in generated
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
    # The primal pass keeps the first sweep's snapshots (its n - 1 steps are t(n, c)'s
    # first), and runs the last step too: t(n, c) + 1 steps in all.
    assert len(steps) == schedules.forward_steps(n, c) + 1


def test_item1_a_pullback_called_twice_sweeps_again_and_gives_the_same_gradient():
    x = np.linspace(0.1, 1.0, 5)
    _, back = pullback.vjp(lambda x: pullback.fori_loop(
        0, 30, lambda i, y: np.sin(y) * 1.01, x, checkpoints=3), x)
    first, second = back(np.ones(5)), back(np.ones(5))
    assert np.array_equal(first[0], second[0])


def test_a_body_reading_another_array_is_staged_again():
    # Python code may read an array's values while the body is staged (`A[0, 0]` is a
    # NumPy scalar, a constant of the program): another array must not reuse the program.
    def run(A):
        return pullback.fori_loop(0, 2, lambda i, x: x * A[0, 0], 1.0)
    assert float(run(np.full((2, 2), 2.0))) == 4.0
    assert float(run(np.full((2, 2), 3.0))) == 9.0


# ------------------------------------------------------------------ while_loop

def newton_sqrt(a, checkpoints="auto"):
    def improve(state):
        x, steps = state
        return 0.5 * (x + a / x), steps + 1
    x, _ = pullback.while_loop(lambda state: np.abs(state[0] ** 2 - a) > 1e-12 * a, improve,
                               (a, 0), checkpoints=checkpoints)
    return x


def python_sqrt(a):
    x = a
    while np.abs(x ** 2 - a) > 1e-12 * a:
        x = 0.5 * (x + a / x)
    return x


# Dormand-Prince 5(4): the nodes' coefficients, the 5th-order weights (the last stage's
# coefficients: first same as last) and the error weights (5th minus 4th order).
DOPRI_A = [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
           [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
           [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
           [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]]
DOPRI_E = [71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40]


def dopri_step(mu, state, end=2.0, tolerance=1e-6):
    """One attempted Dormand-Prince step on Van der Pol (y0' = y1, y1' = mu (1 - y0^2) y1
    - y0) with step-size control: accepted when the error estimate is below tolerance,
    the next step size from it either way (so the number of steps depends on the data)."""
    t, h, y = state

    def f(y):
        return np.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])
    k = [f(y)]
    for row in DOPRI_A[1:]:
        k.append(f(y + h * sum(a * ki for a, ki in zip(row, k) if a)))
    y5 = y + h * sum(a * ki for a, ki in zip(DOPRI_A[-1], k) if a)
    error = np.max(np.abs(h * sum(e * ki for e, ki in zip(DOPRI_E, k) if e))) + 1e-300
    accept = error < tolerance
    y = np.where(accept, y5, y)
    t = np.where(accept, t + h, t)
    h = np.minimum(h * np.clip(0.9 * (tolerance / error) ** 0.2, 0.2, 5.0), end - t)
    return t, h, y


def van_der_pol_end(mu, y0, checkpoints="auto"):
    """y(2) of Van der Pol by the adaptive Dormand-Prince integrator, through while_loop."""
    _, _, y = pullback.while_loop(lambda s: s[0] < 2.0 - 1e-12, lambda s: dopri_step(mu, s),
                                  (0.0, 0.1, y0), checkpoints=checkpoints)
    return np.sum(y ** 2)


def python_van_der_pol_end(mu, y0):
    """The same integrator as a Python while loop."""
    state = (0.0, 0.1, y0)
    while state[0] < 2.0 - 1e-12:
        state = dopri_step(mu, state)
    return np.sum(state[2] ** 2)


def test_item7_dormand_prince_takes_a_data_dependent_number_of_steps():
    counts = []
    for mu in (0.5, 3.0):
        state, steps = (0.0, 0.1, Y0), 0
        while state[0] < 2.0 - 1e-12:
            state, steps = dopri_step(mu, state), steps + 1
        counts.append(steps)
    assert counts[0] != counts[1] and min(counts) > 5
    assert np.isclose(van_der_pol_end(0.5, Y0), python_van_der_pol_end(0.5, Y0), rtol=1e-14)


Y0 = np.array([1.0, 0.5])


@pytest.mark.parametrize("checkpoints", ["auto", "all", 1, 3])
def test_while_loop_gradients_through_a_data_dependent_trip_count_equal_python_while(checkpoints):
    sqrt_grad = pullback.grad(lambda a: newton_sqrt(a, checkpoints))
    for a in (2.0, 7.0, 1e6):
        expected = pullback.grad(python_sqrt)(a)
        for grad in (sqrt_grad, pullback.jit(sqrt_grad)):
            assert np.isclose(grad(a), expected, rtol=1e-14)
    expected = pullback.grad(python_van_der_pol_end, argnums=(0, 1))(1.5, Y0)
    vdp_grad = pullback.grad(lambda mu, y: van_der_pol_end(mu, y, checkpoints), argnums=(0, 1))
    for grad in (vdp_grad, pullback.jit(vdp_grad)):
        got = grad(1.5, Y0)
        assert np.isclose(got[0], expected[0], rtol=1e-12)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-12)


def test_while_loop_checkpointed_gradients_equal_the_store_all_gradient_bit_for_bit():
    expected = pullback.grad(van_der_pol_end, argnums=(0, 1))(1.5, Y0, "all")
    for checkpoints in ("auto", 1, 2, "sqrt"):
        got = pullback.grad(van_der_pol_end, argnums=(0, 1))(1.5, Y0, checkpoints)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_while_loop_keeps_about_log2_n_snapshots(monkeypatch):
    from pullback.loops import whiles
    tapes = []
    original = whiles._record_impl

    def keeping(*args, **params):
        outs = original(*args, **params)
        tapes.append(outs[-1][()])
        return outs
    monkeypatch.setattr(whiles.while_record, "impl", keeping)
    grad = pullback.grad(lambda x: pullback.while_loop(lambda c: c[1] < 3000,
                                                       lambda c: (np.sin(c[0]), c[1] + 1),
                                                       (x, 0))[0])
    assert np.isclose(grad(0.5), pullback.grad(lambda x: pullback.fori_loop(
        0, 3000, lambda i, y: np.sin(y), x))(0.5), rtol=1e-12)
    assert tapes[0].steps == 3000 and len(tapes[0].snapshots) <= 3000 .bit_length()


@pytest.mark.parametrize("mode", ["reverse-over-reverse", "forward-over-reverse",
                                  "reverse-over-forward", "forward-over-forward"])
def test_while_loop_hessians_in_every_mode_equal_python_while(mode):
    expected = pullback.hessian(python_van_der_pol_end, argnums=1)(1.5, Y0)
    got = pullback.hessian(lambda y: van_der_pol_end(1.5, y), mode=mode)(Y0)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    if mode.endswith("forward"):
        jitted = pullback.jit(pullback.hessian(lambda y: van_der_pol_end(1.5, y), mode=mode))
        np.testing.assert_allclose(jitted(Y0), expected, rtol=1e-9, atol=1e-12)


def test_while_loop_jvp_and_vmap_over_different_trip_counts_equal_a_loop():
    out, tangent = pullback.jvp(newton_sqrt, (7.0,), (1.0,))
    assert np.isclose(out, np.sqrt(7.0)) and np.isclose(tangent, 0.5 / np.sqrt(7.0))
    values = np.array([2.0, 9.0, 1e6, 0.25])
    for f in (pullback.vmap(newton_sqrt), pullback.jit(pullback.vmap(newton_sqrt))):
        np.testing.assert_array_equal(f(values), [python_sqrt(v) for v in values])
    per_example = [pullback.grad(python_sqrt)(v) for v in values]
    for f in (pullback.vmap(pullback.grad(newton_sqrt)),
              pullback.jit(pullback.vmap(pullback.grad(newton_sqrt))),
              pullback.grad(lambda v: np.sum(pullback.vmap(newton_sqrt)(v)))):
        np.testing.assert_allclose(f(values), per_example, rtol=1e-14)
    mus = np.array([0.5, 1.5, 3.0])
    np.testing.assert_allclose(pullback.vmap(pullback.grad(van_der_pol_end))(mus, np.tile(Y0, (3, 1))),
                               [pullback.grad(python_van_der_pol_end)(m, Y0) for m in mus],
                               rtol=1e-12)


def test_a_jitted_while_loop_is_a_python_while():
    source = pullback.show(pullback.grad(newton_sqrt), 7.0, file=io.StringIO())
    assert ".append(" in source and " in reversed(" in source and "while_re" not in source
    source = pullback.show(newton_sqrt, 7.0, file=io.StringIO())
    generated = compile_program(pullback.make_ir(newton_sqrt, optimized=True)(7.0)).source
    assert "    while " in source and source.count("def ") == 1 and "def improve(" in generated


def test_bad_while_loops_get_a_loop_type_error():
    with raises(errors.LoopTypeError, "one boolean scalar"):
        pullback.while_loop(lambda x: x < np.ones(2), lambda x: x * 2.0, np.ones(2))
    with raises(errors.LoopTypeError, "one boolean scalar"):
        pullback.while_loop(lambda x: x, lambda x: x * 2.0, 1.0)
    with raises(errors.LoopTypeError, "changed carry leaf 0"):
        pullback.while_loop(lambda x: x < 3, lambda x: x * 1.5, 1)
    with raises(errors.LoopTypeError, "differentiated again under jit", "fori_loop"):
        pullback.jit(pullback.hessian(newton_sqrt))(7.0)


# ------------------------------------------------------------------ cond and switch

def branchy(x):
    return pullback.cond(np.sum(x) > 0, lambda x: np.log(x) * 2, lambda x: np.sin(x) * x, x)


def python_branchy(x):
    return np.log(x) * 2 if np.sum(x) > 0 else np.sin(x) * x


def pieces(k, x, W=W[:2, :2]):
    return pullback.switch(k, [lambda x: W @ x, lambda x: np.tanh(x) ** 2, np.exp], x)


def python_pieces(k, x, W=W[:2, :2]):
    return [lambda x: W @ x, lambda x: np.tanh(x) ** 2, np.exp][min(max(k, 0), 2)](x)


POINTS = [np.array([0.5, 2.0]), np.array([-0.5, -2.0])]


def test_cond_and_switch_equal_python_branches_in_every_mode():
    for x in POINTS:
        np.testing.assert_allclose(branchy(x), python_branchy(x), rtol=1e-15)
        expected = pullback.jacobian(python_branchy)(x)
        for jac in (pullback.jacobian(branchy), pullback.jit(pullback.jacobian(branchy)),
                    pullback.jacfwd(branchy)):
            np.testing.assert_allclose(jac(x), expected, rtol=1e-14)
        for mode in ("reverse-over-reverse", "forward-over-reverse", "reverse-over-forward",
                     "forward-over-forward"):
            np.testing.assert_allclose(
                pullback.hessian(lambda x: np.sum(branchy(x) ** 2), mode=mode)(x),
                pullback.hessian(lambda x: np.sum(python_branchy(x) ** 2))(x), rtol=1e-12)
        check_grads(branchy, (x,), order=2)
    for k in (-1, 0, 1, 2, 5):
        x = POINTS[0]
        np.testing.assert_allclose(pieces(k, x), python_pieces(k, x), rtol=1e-15)
        np.testing.assert_allclose(pullback.jit(pullback.jacobian(pieces, argnums=1))(k, x),
                                   pullback.jacobian(python_pieces, argnums=1)(k, x),
                                   rtol=1e-14)


def test_batched_cond_selects_without_nan_from_the_untaken_branch():
    xs = np.stack(POINTS)                    # log of the second row is NaN
    loss = lambda x: np.sum(branchy(x))                                       # noqa: E731
    expected = [pullback.grad(lambda x: np.sum(python_branchy(x)))(x) for x in xs]
    for f in (pullback.vmap(pullback.grad(loss)), pullback.jit(pullback.vmap(pullback.grad(loss))),
              pullback.grad(lambda xs: np.sum(pullback.vmap(branchy)(xs)))):
        got = f(xs)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, rtol=1e-14)
    ks = np.array([0, 2, 1, 7])
    rows = np.tile(POINTS[0], (4, 1)) * np.arange(1, 5)[:, None]
    np.testing.assert_allclose(pullback.vmap(pieces)(ks, rows),
                               [python_pieces(k, r) for k, r in zip(ks, rows)], rtol=1e-15)


@pytest.mark.filterwarnings("ignore:invalid value encountered in log")
def test_item5_a_branch_no_example_takes_sends_no_nan_to_shared_or_batched_consts():
    # Every x > 0 takes the first branch; in the second, log(-x) is NaN, and so is its
    # derivative with respect to the shared c and the batched d: 0 * NaN reached them.
    def f(c, d, x):
        return pullback.cond(x > 0, lambda x: c * x * d, lambda x: c * np.log(-x) * d, x)

    def python_f(c, d, x):
        return c * x * d if x > 0 else c * np.log(-x) * d
    c, xs, ds = np.float64(1.5), np.array([0.5, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])
    expected = [pullback.grad(python_f, argnums=(0, 1))(c, d, x) for d, x in zip(ds, xs)]
    batched = pullback.vmap(pullback.grad(f, argnums=(0, 1)), in_axes=(None, 0, 0))
    for run in (batched, pullback.jit(batched)):
        got = run(c, ds, xs)
        np.testing.assert_array_equal(got[0], [e[0] for e in expected])
        np.testing.assert_array_equal(got[1], [e[1] for e in expected])
    for run in (pullback.grad, lambda f, argnums: pullback.jit(pullback.grad(f, argnums=argnums))):
        total = run(lambda c, d: np.sum(pullback.vmap(f, in_axes=(None, 0, 0))(c, d, xs)),
                    argnums=(0, 1))(c, ds)
        assert total[0] == np.sum(xs * ds) and np.array_equal(total[1], c * xs)


def test_a_jitted_cond_is_a_python_if():
    source = pullback.show(branchy, POINTS[0], file=io.StringIO())
    assert "    if " in source and "    else:" in source


def test_bad_branches_get_a_loop_type_error():
    with raises(errors.LoopTypeError, "boolean scalar"):
        pullback.cond(np.ones(2) > 0, np.sin, np.cos, 1.0)
    with raises(errors.LoopTypeError, "return different types"):
        pullback.cond(True, lambda x: x, lambda x: np.stack([x, x]), 1.0)
    with raises(errors.LoopTypeError, "integer scalar"):
        pullback.switch(1.5, [np.sin, np.cos], 1.0)
    with raises(errors.ConcretizationError, "pullback.cond"):
        pullback.jit(python_branchy)(POINTS[0])


# ------------------------------------------------------------------ checkpoint

def layers(x):
    for _ in range(10):
        x = np.sin(x) * 1.1
    return x


def test_checkpoint_equals_the_function_in_every_mode():
    step = pullback.checkpoint(layers)
    x = np.array([0.3, -1.2, 2.0])
    loss = lambda f: (lambda x: np.sum(f(f(x)) ** 2))                        # noqa: E731
    np.testing.assert_array_equal(step(x), layers(x))
    np.testing.assert_array_equal(pullback.grad(loss(step))(x), pullback.grad(loss(layers))(x))
    np.testing.assert_allclose(pullback.jvp(step, (x,), (x,))[1],
                               pullback.jvp(layers, (x,), (x,))[1], rtol=1e-14)
    batch = np.stack([x, x * 2])
    np.testing.assert_allclose(pullback.vmap(pullback.grad(loss(step)))(batch),
                               [pullback.grad(loss(layers))(b) for b in batch], rtol=1e-14)
    for mode in ("reverse-over-reverse", "forward-over-reverse", "reverse-over-forward",
                 "forward-over-forward"):
        np.testing.assert_allclose(pullback.hessian(loss(step), mode=mode)(x),
                                   pullback.hessian(loss(layers))(x), rtol=1e-12)
    np.testing.assert_allclose(pullback.jit(pullback.grad(loss(step)))(x),
                               pullback.grad(loss(layers))(x), rtol=1e-14)
    with raises(errors.CheckpointPolicyError, "not a checkpoint policy"):
        pullback.checkpoint(layers, policy="some")


def test_a_python_loop_over_a_checkpointed_step_keeps_one_carry_per_step():
    import tracemalloc
    x = np.linspace(0.1, 1.0, 50_000)

    def peak(step):
        def loss(x):
            for _ in range(8):
                x = step(x)
            return np.sum(x)
        tracemalloc.start()
        pullback.grad(loss)(x)
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return result / x.nbytes
    kept_all, checkpointed = peak(layers), peak(pullback.checkpoint(layers))
    assert kept_all > 8 * 10            # every layer's residuals
    assert checkpointed < 8 + 40        # a carry per step, one step's residuals at a time


def test_checkpointing_policies_bound_reverse_mode_memory():
    import tracemalloc
    x = np.linspace(0.1, 1.0, 2_000)

    def peak(checkpoints):
        grad = pullback.grad(lambda x: np.sum(pullback.fori_loop(
            0, 500, lambda i, y: np.sin(y) * 1.001, x, checkpoints=checkpoints)))
        grad(x)                                         # staged and compiled once
        tracemalloc.start()
        grad(x)
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return result / x.nbytes                        # in states
    assert peak("all") > 500 and 500 < peak("carry") < 2 * 500 + 16
    assert peak("auto") <= 500 .bit_length() + 16
    assert peak(30) <= 30 + 16


def test_the_body_cache_keeps_no_array_alive():
    import gc
    import weakref
    A = np.ones((100, 100))
    pullback.fori_loop(0, 2, lambda i, x: x * A[0, 0], 1.0)
    ref = weakref.ref(A)
    del A
    gc.collect()
    assert ref() is None


def test_a_loop_allocates_its_stacked_outputs_once():
    """The ys array is allocated at the first step, in the values' dtypes: one array of n
    rows, not two (the reverse loop's "carry" policy stacks every carry this way)."""
    y0, steps = np.linspace(-1.0, 1.0, 1000), 200
    pullback.scan(lambda c, x: (c + x, c * 0.5), y0, np.zeros(3))        # stage the body
    tracemalloc.start()
    last, ys = pullback.scan(lambda c, x: (c + x, c * 0.5), y0, np.zeros(steps))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ys.shape == (steps, 1000)
    assert peak / y0.nbytes < 1.2 * steps


def _rk4_peak_states(w, steps, checkpoints):
    """Peak memory of the gradient through `steps` RK4 steps of y' = tanh(W y), in states
    (after a warm-up that stages and compiles the body)."""
    y0 = np.linspace(-1.0, 1.0, w.shape[0])

    def step(i, y):
        k1 = np.tanh(w @ y)
        k2 = np.tanh(w @ (y + 0.005 * k1))
        k3 = np.tanh(w @ (y + 0.005 * k2))
        k4 = np.tanh(w @ (y + 0.01 * k3))
        return y + 0.01 / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    grad = pullback.grad(lambda y: np.sum(pullback.fori_loop(0, steps, step, y,
                                                             checkpoints=checkpoints)))
    grad(y0)
    tracemalloc.start()
    grad(y0)
    result = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result / y0.nbytes


def test_item1_checkpointed_rk4_gradients_meet_the_memory_floors():
    # W (512 states) is read through W.T on the way back: hoisting it copied it (the
    # invariants' outputs own their buffers); fori_loop's counter (8 bytes a step), the
    # schedule's list of actions and its list of rows grew with n.
    # Measured here at D = 512 (the floors' benchmark: D = 1000), where the step's
    # temporaries and Python objects weigh more per state: 30 snapshots peak at about 47.
    n, d = 1000, 512
    w = np.random.default_rng(0).normal(size=(d, d)) / np.sqrt(d)
    assert _rk4_peak_states(w, n, "carry") <= n + 16
    assert _rk4_peak_states(w, n, 30) <= 30 + 18
    assert _rk4_peak_states(w, n, "auto") <= int(np.ceil(np.log2(n))) + 16


def test_item1_scan_passes_no_xs_its_body_ignores():
    program = pullback.make_ir(lambda y: pullback.fori_loop(0, 5, lambda i, y: y * 2.0, y))(1.0)
    loop = next(eq for eq in program.equations if eq.primitive.name == "loop")
    assert len(loop.inputs) == 1 and len(loop.params["body"].invars) == 1
    program = pullback.make_ir(lambda y: pullback.fori_loop(0, 5, lambda i, y: y * i, y))(1.0)
    loop = next(eq for eq in program.equations if eq.primitive.name == "loop")
    assert len(loop.inputs) == 2


def test_item3_common_subexpressions_inside_a_body_are_computed_once():
    def step(i, y):
        return np.sin(y) * 2.0 + np.sin(y) * 2.0
    program = pullback.make_ir(lambda y: pullback.fori_loop(0, 5, step, y), optimized=True)(1.0)
    body = next(eq for eq in program.equations if eq.primitive.name == "loop").params["body"]
    assert [eq.primitive.name for eq in body.equations].count("sin") == 1
    assert [eq.primitive.name for eq in body.equations].count("multiply") == 1


def test_item1_invariant_views_stay_in_the_body_and_computations_are_hoisted():
    # (A user's body computes what reads only outside values outside it; derived bodies,
    # such as the reverse loop's, read W.T of their own input W.)
    from pullback.core.primitive import ShapeDtype
    from pullback.loops.bodies import hoisted, stage_flat
    f64 = np.dtype(np.float64)
    body = stage_flat(lambda w, y: [np.exp(w) @ y + w.T @ y],
                      [ShapeDtype((3, 3), f64), ShapeDtype((3,), f64)])
    head, rest = hoisted(body, 1)
    assert [eq.primitive.name for eq in head.equations] == ["exp"]
    assert "transpose" in [eq.primitive.name for eq in rest.equations]


@pytest.mark.parametrize("checkpoints", [3, "auto"])
def test_item4_vmap_over_a_binomial_reversal_keeps_its_schedule(monkeypatch, checkpoints):
    from pullback.loops import loop as loop_module
    w = np.array([[0.9, 0.2], [-0.3, 0.8]])
    xs = np.linspace(0.1, 1.0, 8).reshape(4, 2)

    def f(y, scale):
        return np.sum(pullback.fori_loop(0, 40, lambda i, y: np.tanh(w @ y) * scale, y,
                                         checkpoints=checkpoints) ** 2)
    scales = np.array([1.0, 1.1, 0.9, 1.2])
    expected = [pullback.grad(f, argnums=(0, 1))(x, s) for x, s in zip(xs, scales)]
    fallback = []
    monkeypatch.setattr(loop_module, "_reversal_by_loops", lambda *a, **k: fallback.append(1))
    for run in (pullback.vmap(pullback.grad(f, argnums=(0, 1))),
                pullback.jit(pullback.vmap(pullback.grad(f, argnums=(0, 1))))):
        got = run(xs, scales)
        np.testing.assert_allclose(got[0], [e[0] for e in expected], rtol=1e-13)
        np.testing.assert_allclose(got[1], [e[1] for e in expected], rtol=1e-13)
    assert not fallback            # the "carry" loops (memory n states) were not used


def _equations(program, name):
    return [eq for eq in program.equations if eq.primitive.name == name]


@pytest.mark.parametrize("checkpoints", ["all", "carry"])
def test_item1_a_gradient_program_drops_the_primal_only_carries_and_ys(checkpoints):
    # The gradient needs neither the running total's value nor the ys (their cotangents
    # need no residual): the forward loop carries h alone; the values are unchanged.
    def f(h0):
        (h, total, count), ys = pullback.scan(
            lambda c, x: ((np.tanh(W @ c[0] + x), c[1] + np.sum(c[0] ** 2), c[2] + 1),
                          np.sin(c[0])), (h0, 0.0, 0), XS, checkpoints=checkpoints)
        return np.sum(h ** 3) + total + np.sum(ys)
    program = pullback.make_ir(pullback.grad(f), optimized=True)(H0)
    forward = _equations(program, "loop")[0]
    assert forward.params["n_carry"] == 1 and len(forward.params["body"].invars) == 3
    assert "sin" not in [eq.primitive.name for eq in forward.params["body"].equations]
    np.testing.assert_allclose(pullback.jit(pullback.grad(f))(H0), pullback.grad(f)(H0),
                               rtol=1e-14, atol=1e-15)


def test_item1_every_output_alone_keeps_only_what_it_needs_and_its_value():
    # Each output of a scan, a while_loop and a switch used alone: the loop keeps the
    # carries and inputs that output depends on (every pruning primitive: scan, fori_loop,
    # while_loop, cond/switch), and jit gives the eager value.
    def scan_all(h0):
        return pullback.scan(rnn_step, {"h": h0, "total": 0.0, "scale": 1.5}, XS)

    def while_all(h0):
        return pullback.while_loop(lambda c: c[1] < 4, lambda c: (np.sin(c[0]), c[1] + 1,
                                                                 c[2] + W @ c[0], c[3] * 2.0),
                                   (h0, 0, h0, h0[0]))

    def switch_all(h0):
        return pullback.cond(np.sum(h0) > 0, lambda h: (np.sin(h), W @ h, h * 2.0),
                             lambda h: (np.cos(h), h, W.T @ h), h0)
    kept = {}
    for name, fn in (("loop", scan_all), ("while_loop", while_all), ("switch", switch_all)):
        n_leaves = len(pullback.tree.flatten(fn(H0))[0])
        for k in range(n_leaves):
            def leaf(h0, fn=fn, k=k):
                return pullback.tree.flatten(fn(h0))[0][k]
            np.testing.assert_allclose(pullback.jit(leaf)(H0), leaf(H0), rtol=1e-15)
            kept[name, k] = [(len(eq.outputs), len(eq.inputs)) for eq in _equations(
                pullback.make_ir(leaf, optimized=True)(H0), name)]
    # scan leaves: h, scale (a loop carrying it alone: folded), total, firsts, sines
    assert [kept["loop", k] for k in range(5)] == [[(2, 4)], [], [(3, 5)], [(3, 4)], [(3, 4)]]
    assert [kept["while_loop", k] for k in range(4)] == [[(2, 2)], [], [(3, 4)], [(2, 2)]]
    assert [kept["switch", k] for k in range(3)] == [[(1, 2)], [(1, 3)], [(1, 3)]]


def test_item3_a_steady_loop_body_calls_no_reshape_around_a_1d_matmul():
    # A 1-d `@` is staged as reshape, matmul, reshape (the primitive takes matrices); its
    # generated code is NumPy's own 1-d product, the same values: in a 10^4-step loop at
    # D = 64 the two np.reshape calls per product cost 1.65x a hand-written loop.
    stack = RNG.normal(size=(2, 3, 3))
    for fn, x in ((lambda y: W @ y, H0), (lambda y: y @ W, H0), (lambda y: stack @ y, H0),
                  (lambda y: np.tanh(W @ np.sin(y)) @ W.T, H0)):
        source = compile_program(pullback.make_ir(fn, optimized=True)(x)).source
        assert "reshape" not in source and "@" in source, source
        assert np.array_equal(pullback.jit(fn)(x), fn(x))
    step = benchmark_module("loops_floors").rk4_step(W)
    program = pullback.make_ir(lambda y: pullback.fori_loop(0, 100, step, y), optimized=True)(H0)
    assert "reshape" not in compile_program(program).source


@pytest.mark.parametrize("checkpoints", ["carry", 30, "auto"])
def test_item2_reverse_mode_memory_grows_only_by_what_the_policy_keeps(checkpoints):
    # fori_loop's counter was an array of n int64 (8 bytes a step: 10 states at D = 1000,
    # n = 10^4), allocated even for a body ignoring it and alive while the snapshots were
    # taken: the peak grew with n beyond the carries the policy keeps.
    d = 16
    w = np.random.default_rng(1).normal(size=(d, d)) / 4

    def excess_bytes(n):
        kept = {"carry": n, 30: 30, "auto": n.bit_length()}[checkpoints]
        return (_rk4_peak_states(w, n, checkpoints) - kept) * d * 8
    assert excess_bytes(2000) - excess_bytes(200) < 4000


def test_item5_what_a_branch_computes_from_outside_values_alone_stays_in_the_branch():
    # np.log(d - d) read only the captured d: it ran outside the branch whichever branch
    # was taken, and its inf reached d's cotangent as 0 * inf = NaN in every mode.
    def f(d):
        return np.sum(pullback.cond(np.sum(d) > 100, lambda x: np.log(d - d) + x,
                                    lambda x: x * d, d))
    d, batch = np.array([0.5, 2.0]), np.array([[0.5, 2.0], [1.0, 3.0]])
    with np.errstate(divide="raise"):     # the untaken branch never runs unbatched
        for grad in (pullback.grad(f), pullback.jit(pullback.grad(f))):
            np.testing.assert_array_equal(grad(d), 2 * d)
        np.testing.assert_array_equal(pullback.hessian(f)(d), 2 * np.eye(2))
    with np.errstate(divide="ignore", invalid="ignore"):    # batched: both run, then a select
        for run in (pullback.vmap(pullback.grad(f)), pullback.jit(pullback.vmap(pullback.grad(f)))):
            np.testing.assert_array_equal(run(batch), 2 * batch)


@pytest.mark.parametrize("checkpoints", [2, "auto"])
def test_item2_reversals_drop_the_cotangents_nobody_uses_and_an_unread_tape(checkpoints):
    # The gradients with respect to (w, h0), of which only h0's is used: the checkpointed
    # reversal (scan) and the while reversal no longer differentiate w (no outer product
    # summed per step), with the values of eager mode. A while_record whose tape nothing
    # reads (the primal of a vjp) is a plain while_loop.
    def scan_loss(w, h0):
        h, _ = pullback.scan(lambda h, x: (np.tanh(w @ h + x), None), h0, XS,
                             checkpoints=checkpoints)
        return np.sum(h ** 2)

    def while_loss(w, h0):
        h, _ = pullback.while_loop(lambda c: c[1] < 5, lambda c: (np.tanh(w @ c[0]), c[1] + 1),
                                   (h0, 0), checkpoints=checkpoints)
        return np.sum(h ** 2)
    for loss, name in ((scan_loss, "checkpointed_reversal"), (while_loss, "while_reversal")):
        def h0_grad(w, h0, loss=loss):
            return pullback.grad(loss, argnums=(0, 1))(w, h0)[1]
        (reversal,) = _equations(pullback.make_ir(h0_grad, optimized=True)(W, H0), name)
        assert len(reversal.outputs) == 1 and not reversal.params["differentiated"][0]
        np.testing.assert_allclose(pullback.jit(h0_grad)(W, H0), h0_grad(W, H0), rtol=1e-14)

    def primal(h0):
        return pullback.vjp(lambda h: while_loss(W, h), h0)[0]
    program = pullback.make_ir(primal, optimized=True)(H0)
    assert not _equations(program, "while_record") and len(_equations(program, "while_loop")) == 1
    assert pullback.jit(primal)(H0) == primal(H0)


def test_item3_the_heat_equations_reverse_body_calls_no_scatter_primitive():
    # The transpose of the stencil's concatenate adds slices of the cotangent into the
    # reverse body's input, which fast code must not overwrite: it called the scatter_add
    # primitive (~20 us a step, of 10^5) where `t = x.copy(); t[...] += ...` does the same.
    def loss(u0):
        def step(u, _):
            lap = np.concatenate([u[:1] * 0, u[2:] - 2 * u[1:-1] + u[:-2], u[:1] * 0])
            return u + 0.2 * lap, None
        return np.sum(pullback.scan(step, u0, None, length=50)[0] ** 2)
    u0 = np.sin(np.linspace(0.0, np.pi, 20))
    source = compile_program(pullback.make_ir(pullback.grad(loss), optimized=True)(u0)).source
    assert "scatter_add" not in source and ".copy()" in source and "] += " in source
    np.testing.assert_allclose(pullback.jit(pullback.grad(loss))(u0), pullback.grad(loss)(u0),
                               rtol=1e-13)


def test_item2_a_reverse_loop_that_never_reads_its_carries_stacks_none():
    # The reverse loop of a linear step (the heat equation's) with checkpoints="carry"
    # never reads the stacked carries: dead-code elimination prunes an equation whose
    # outputs are all used too (here its unread input), so the forward loop stacks nothing.
    def loss(u0):
        def step(u, _):
            return u + 0.2 * np.concatenate([u[:1] * 0, u[2:] - 2 * u[1:-1] + u[:-2],
                                             u[:1] * 0]), None
        return np.sum(pullback.scan(step, u0, None, length=50, checkpoints="carry")[0] ** 2)
    u0 = np.sin(np.linspace(0.0, np.pi, 20))
    forward, backward = _equations(pullback.make_ir(pullback.grad(loss), optimized=True)(u0),
                                   "loop")
    assert len(forward.outputs) == 1 and len(backward.inputs) == 1
    np.testing.assert_allclose(pullback.jit(pullback.grad(loss))(u0), pullback.grad(loss)(u0),
                               rtol=1e-13)


@pytest.mark.parametrize("checkpoints", [3, "auto"])
def test_item1_a_linear_step_is_reversed_without_advancing_to_its_states(monkeypatch,
                                                                        checkpoints):
    # A step whose derivative reads no carry (the heat equation's stencil) needs no state
    # to be reversed: the binomial reversals (scan and while_loop) run no advance, only the
    # primal pass's n steps; the gradients are those of "all" bit for bit.
    from pullback.loops import loop, whiles
    steps = []

    def counting(original):
        def runner(program, n_consts):
            prepare, step = original(program, n_consts)
            return prepare, lambda *args: steps.append(1) or step(*args)
        return runner
    monkeypatch.setattr(loop, "loop_runner", counting(loop.loop_runner))
    monkeypatch.setattr(whiles, "loop_runner", counting(whiles.loop_runner))
    x = np.linspace(0.1, 1.0, 5)

    def by_scan(x, checkpoints=checkpoints):
        return np.sum(pullback.fori_loop(0, 40, lambda i, y: 1.01 * y + y[::-1], x,
                                         checkpoints=checkpoints) ** 2)

    def by_while(x, checkpoints=checkpoints):
        y, _ = pullback.while_loop(lambda c: c[1] < 40, lambda c: (1.01 * c[0] + c[0][::-1],
                                                                  c[1] + 1), (x, 0),
                                   checkpoints=checkpoints)
        return np.sum(y ** 2)
    for f in (by_scan, by_while):
        steps.clear()
        gradient = pullback.grad(f)(x)
        assert len(steps) == 40
        assert np.array_equal(gradient, pullback.grad(lambda x: f(x, "all"))(x))
