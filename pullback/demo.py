"""`pullback demo`: a short tour of what the library does, printed as it runs."""
import numpy as np

import pullback


def _section(title):
    print(f"\n== {title} " + "=" * max(0, 66 - len(title)))


def _show(label, value):
    text = np.array2string(np.asarray(value), precision=4, suppress_small=True)
    print(f"{label:<34}{text}")


def first_order():
    _section("1. A gradient is the pullback of 1 (scalar output only)")

    def rosenbrock(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    x = np.array([-1.2, 1.0, 0.5])
    print("f(x) = sum(100 (x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2), plain NumPy code")
    _show("x", x)
    _show("f(x)", rosenbrock(x))
    _show("grad f(x)", pullback.grad(rosenbrock)(x))

    _section("2. A pullback carries ANY cotangent back: J^T ct")

    def spiral(t):
        return np.stack([np.cos(t) * t, np.sin(t) * t])

    t = np.array([0.5, 1.0, 2.0])
    out, back = pullback.pullback(spiral, t)
    ct = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    _show("t", t)
    print(f"{'out = spiral(t) has shape':<34}{out.shape}")
    print("cotangent ct (shape of out):")
    print(np.array2string(ct, precision=4))
    (t_bar,) = back(ct)
    _show("back(ct) = J^T ct", t_bar)

    _section("3. A Jacobian, row by row: pull back each basis vector e_i")

    def polar_to_cartesian(p):
        r, theta = p[0], p[1]
        return np.stack([r * np.cos(theta), r * np.sin(theta), r ** 2])

    p = np.array([2.0, 0.3])
    out, back = pullback.pullback(polar_to_cartesian, p)
    rows = []
    for i in range(out.size):
        e_i = np.zeros_like(out)
        e_i[i] = 1.0
        (row,) = back(e_i)
        rows.append(row)
        _show(f"back(e_{i}) = row {i} of J", row)
    jac = np.stack(rows)
    agree = np.allclose(jac, pullback.jacobian(polar_to_cartesian)(p))
    print(f"stacked rows == pullback.jacobian(f)(p): {agree}")

    _section("4. grad refuses a vector-valued function (no silent sum)")
    try:
        pullback.grad(polar_to_cartesian)(p)
    except pullback.errors.NonScalarOutputError as error:
        print(f"{type(error).__name__}: {error}")


def main():
    """Run every section of the demo."""
    first_order()


if __name__ == "__main__":
    main()
