"""The registry is the one source of facts about primitives: each has the slots it needs,
and each is reachable from NumPy where NumPy has the function.

(That declared `fresh_output` primitives never return views is checked on their
implementations in test_primitives.py.)
"""
import inspect

import numpy as np
import pytest

import pullback.numpy as pnp
from pullback.core.primitive import REGISTRY


def _numpy_function(prim):
    """NumPy's function of the primitive's name (np.sum for `sum`, np.linalg.det ...)."""
    for module in (np, np.linalg):
        f = getattr(module, prim.name, None)
        if callable(f) and not isinstance(f, type):
            return f
    return None


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_primitive_has_the_slots_it_needs(name):
    prim = REGISTRY[name]
    assert callable(prim.impl) and callable(prim.shape) and callable(prim.batch), name
    if prim.differentiable:
        assert prim.jvp is not None and (prim.vjp or prim.value_and_vjp) is not None, name
    if prim.partials is not None:
        assert prim.family == "elementwise" and len(prim.partials) in (1, 2, 3), name
        for partial in prim.partials:
            assert isinstance(partial, (int, float)) or callable(partial), name
    assert all(callable(f) for f in prim.numpy_functions), name
    assert prim.transpose_kind in (None, "uniform", "embedding"), name
    if prim.commutative:
        assert prim.partials is None or len(prim.partials) == 2, name
    if prim.python_operator is not None:
        assert prim.python_operator.count("{}") in (1, 2), name
    if prim.emit is not None:
        assert "args" in inspect.signature(prim.emit).parameters, name
    if prim.family in ("elementwise", "linalg"):   # the tests' sample inputs come from it
        assert prim.domain is not None, name


@pytest.mark.parametrize("name", sorted(n for n, p in REGISTRY.items() if p.numpy_functions))
def test_the_numpy_functions_a_primitive_answers_for_reach_it(name):
    prim = REGISTRY[name]
    for f in prim.numpy_functions:       # (SciPy's expm1 ... through wrappers that convert)
        assert (pnp.UFUNC_PRIMITIVES[f] if f in pnp.UFUNC_PRIMITIVES
                else pnp.UFUNCS[f].__wrapped__) is prim


@pytest.mark.parametrize("name", sorted(n for n, p in REGISTRY.items() if _numpy_function(p)))
def test_every_primitive_numpy_has_is_reachable_from_numpy(name):
    f = _numpy_function(REGISTRY[name])
    assert f in pnp.DISPATCH or f in pnp.UFUNCS, f"np.{name} does not reach pullback.numpy"
