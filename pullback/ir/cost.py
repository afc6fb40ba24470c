"""What an optimised program costs to run, estimated from its equations' types, and the
cheapest of several ways to compute one value under `jit`.

A static model rather than timing at compile time: it needs no values (the program is
being staged: there are none yet), keeps the first call of `jit` short, and gives the
same choice on every run. Units are about a nanosecond on a current CPU core: each
equation costs a fixed overhead (a NumPy call from generated code), an elementwise or
moving equation one unit per element it reads and writes, a contraction a fraction of a
unit per multiply-add (BLAS), views nothing beyond the overhead. Sub-programs (loop
bodies, branches) count once per step where the number of steps is a parameter.
"""
from typing import Callable, Sequence

import numpy as np

from ..errors import PullbackError
from ..tree import flatten, unflatten
from .passes import optimize
from .program import Literal, Program
from .staging import StagingTracer, stage

EQUATION_OVERHEAD = 1500.0     # a NumPy call from generated code: about 1.5 µs
PER_ELEMENT = 1.0              # reading or writing one element
PER_MULTIPLY_ADD = 0.15        # one multiply-add of a BLAS contraction


def _size(v) -> int:
    return 1 if type(v) is Literal else int(np.prod(v.aval.shape, dtype=np.int64))


def _contraction_length(eq) -> int:
    """The number of multiply-adds per output element of a matmul or einsum."""
    if eq.primitive.sparsity == "matmul":
        shape = eq.inputs[0].aval.shape if type(eq.inputs[0]) is not Literal else ()
        return shape[-1] if shape else 1
    inputs, output = eq.params["spec"].split("->")
    sizes = {}
    for letters, operand in zip(inputs.split(","), eq.inputs):
        for letter, n in zip(letters, operand.aval.shape):
            sizes[letter] = n
    return int(np.prod([n for letter, n in sizes.items() if letter not in output],
                       dtype=np.int64))


def program_cost(program: Program) -> float:
    """The estimated run time of `program` (about nanoseconds; see the module docstring)."""
    total = 0.0
    for eq in program.equations:
        total += EQUATION_OVERHEAD
        written = sum(_size(v) for v in eq.outputs)
        if eq.primitive.sparsity in ("matmul", "einsum"):
            total += PER_MULTIPLY_ADD * written * _contraction_length(eq)
        elif eq.primitive.fresh_output:
            total += PER_ELEMENT * (written + sum(_size(v) for v in eq.inputs))
        steps = eq.params.get("length", 1)
        for value in eq.params.values():
            if isinstance(value, Program):
                total += program_cost(value) * (steps if isinstance(steps, int) else 1)
    return total


def _abstract_argument(leaf):
    """Zeros of the leaf's type without memory (a Python scalar stays one: weakly typed)."""
    if isinstance(leaf, (bool, int, float, complex)):
        return leaf
    return np.broadcast_to(np.zeros((), leaf.dtype), tuple(leaf.shape))


def staged(args) -> bool:
    """Whether `args` (a pytree) holds values being staged by `jit`."""
    return any(type(leaf) is StagingTracer for leaf in flatten(args)[0])


def cheapest(candidates: Sequence[Callable], args: tuple) -> int | None:
    """The index of the candidate (functions computing the same value from `args`) whose
    optimised program costs least, the first on ties; None where pullback refuses to stage
    one on its own (a `PullbackError`: it reads a value staged outside it, needs values
    where these zeros stand for the arguments, or its mode cannot differentiate the
    program, e.g. reverse mode through a while_loop): the caller keeps its default, whose
    own staging reports any error. Any other error (a bug) propagates."""
    leaves, tree = flatten(args)
    abstract = unflatten(tree, [_abstract_argument(leaf) for leaf in leaves])
    costs = []
    for candidate in candidates:
        try:
            costs.append(program_cost(optimize(stage(candidate, abstract))))
        except PullbackError:       # this candidate cannot be staged here: no choice
            return None
    return int(np.argmin(costs))
