"""Pytrees: nested tuples, lists and dicts whose leaves are arrays and scalars.

`flatten(tree) -> (leaves, treedef)` and `unflatten(treedef, leaves)` are inverse.
Nodes are tuples, lists, namedtuples, dicts and OrderedDicts (PyTorch state dicts);
`None` is an empty subtree (no leaves), as in JAX. Dict keys are sorted, so that two
dicts with the same keys flatten the same way (keys of mixed types sort by type name
first); an OrderedDict keeps its own order.
"""
from collections import OrderedDict
from typing import Any, Callable, NamedTuple

MAPPINGS = (dict, OrderedDict)


class TreeDef(NamedTuple):
    """The structure of a pytree without its leaves."""
    kind: Any            # "leaf", "none", tuple, list, dict or a namedtuple class
    meta: Any            # dict keys, or None
    children: tuple      # child TreeDefs

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __repr__(self):
        return f"TreeDef({describe(self)})"


LEAF = TreeDef("leaf", None, ())
NONE = TreeDef("none", None, ())


_NODES = frozenset({tuple, list, dict, OrderedDict, type(None)})
_LEAF_TUPLES: dict[int, TreeDef] = {}       # n -> the structure of a tuple of n leaves


def leaf_tuple(n: int) -> TreeDef:
    """The structure of a tuple of n leaves (one object per n)."""
    td = _LEAF_TUPLES.get(n)
    if td is None:
        td = _LEAF_TUPLES[n] = TreeDef(tuple, None, (LEAF,) * n)
    return td


ONE_ARGUMENT = leaf_tuple(1)          # the structure of `(x,)`: one array argument


def flatten(tree: Any) -> tuple[list, TreeDef]:
    """Leaves in a fixed order, and the structure that puts them back."""
    t = type(tree)
    if t not in _NODES and not isinstance(tree, tuple):      # one leaf: the commonest tree
        return [tree], LEAF
    if t is tuple:                                           # the arguments of a function
        for c in tree:
            if type(c) in _NODES or isinstance(c, tuple):
                break
        else:
            return list(tree), _LEAF_TUPLES.get(len(tree)) or leaf_tuple(len(tree))
    leaves: list = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree, leaves):
    t = type(tree)
    if t is tuple or t is list:
        children = tuple(_flatten(c, leaves) for c in tree)
        if t is tuple and all(c is LEAF for c in children):
            return leaf_tuple(len(children))
        return TreeDef(t, None, children)
    if t is dict or t is OrderedDict:
        keys = tuple(keys_in_order(tree))
        return TreeDef(t, keys, tuple(_flatten(tree[k], leaves) for k in keys))
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):   # namedtuple
        return TreeDef(t, None, tuple(_flatten(c, leaves) for c in tree))
    if tree is None:
        return NONE
    leaves.append(tree)
    return LEAF


def keys_in_order(mapping) -> list:
    """The keys of a dict node in flattening order (an OrderedDict's own order)."""
    if type(mapping) is OrderedDict:
        return list(mapping)
    try:
        return sorted(mapping)
    except TypeError:                  # keys of mixed types (1 and "a"): by type, then value
        return sorted(mapping, key=lambda k: (type(k).__name__, repr(k)))


def unflatten(treedef: TreeDef, leaves) -> Any:
    """Rebuild a pytree of structure `treedef` from `leaves`."""
    if type(leaves) is list or type(leaves) is tuple:        # fast paths, the commonest trees
        if treedef is LEAF and len(leaves) == 1:
            return leaves[0]
        if len(leaves) == len(treedef.children) and treedef is _LEAF_TUPLES.get(len(leaves)):
            return tuple(leaves)
    it = iter(leaves)
    out = _unflatten(treedef, it)
    return out


def _unflatten(td, it):
    if td.kind == "leaf":
        return next(it)
    if td.kind == "none":
        return None
    children = [_unflatten(c, it) for c in td.children]
    if td.kind in MAPPINGS:
        return td.kind(zip(td.meta, children))
    if td.kind is tuple or td.kind is list:
        return td.kind(children)
    return td.kind(*children)


def tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    """Apply `fn` leaf by leaf to one or more pytrees of the same structure."""
    leaves, td = flatten(tree)
    others = [flatten(r) for r in rest]
    for leaves_r, td_r in others:
        if td_r != td:
            raise ValueError(f"pytree structures differ: {describe(td)} vs {describe(td_r)}")
    return unflatten(td, [fn(*xs) for xs in zip(leaves, *(l for l, _ in others))])


def describe(td: TreeDef) -> str:
    """A short human-readable picture of a structure, e.g. `(*, {a: *, b: [*, *]})`."""
    if td.kind == "leaf":
        return "*"
    if td.kind == "none":
        return "None"
    inner = [describe(c) for c in td.children]
    if td.kind in MAPPINGS:
        text = "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(td.meta, inner)) + "}"
        return text if td.kind is dict else f"OrderedDict({text})"
    if td.kind is list:
        return "[" + ", ".join(inner) + "]"
    if td.kind is tuple:
        return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"
    return f"{td.kind.__name__}(" + ", ".join(inner) + ")"
