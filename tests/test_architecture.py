"""The layers run one way: the package's import graph, read from its source.

Folders (and top-level modules) have ranks; an import may only run from a higher rank to
a lower one, or between peers of one rank that do not import each other in a circle. No
module imports itself back through others. Function-local imports count like any other.
"""
import ast
import os

import pytest

import pullback

PACKAGE = os.path.dirname(pullback.__file__)

# errors, tree < core < transforms < primitives < ir < {numpy, custom rules, operators,
# testing} < {minimize, sparse} < the public package and what sits on it.
RANKS = {"errors": 0, "tree": 0, "core": 1, "transforms": 2, "primitives": 3, "ir": 4,
         "numpy": 5, "custom": 5, "loops": 5, "operators": 5, "testing": 5, "minimize": 6,
         "sparse": 6, "scipy": 6, "array_api": 6,
         "__init__": 7, "demo": 8, "cli": 9, "__main__": 10}


def _modules():
    """Module name (dotted, relative to the package) -> its path."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, PACKAGE)[:-3].split(os.sep)
                if parts[-1] == "__init__" and len(parts) > 1:
                    parts = parts[:-1]
                out[".".join(parts)] = path
    return out


def _imports(module, path, modules):
    """The package modules `module` imports (top-level and function-local alike)."""
    is_package = path.endswith("__init__.py")
    base = module.split(".") if is_package and module != "__init__" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[:len(base) - node.level + 1] if node.level > 1 else list(base)
                target = parts + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "pullback":
                target = node.module.split(".")[1:]
            else:
                continue
            candidates = [".".join(target + [alias.name]) for alias in node.names] + [".".join(target)]
        elif isinstance(node, ast.Import):
            candidates = [".".join(a.name.split(".")[1:]) for a in node.names
                          if a.name.split(".")[0] == "pullback"]
        else:
            continue
        for candidate in candidates:
            name = candidate or "__init__"
            if name in modules and name != module:
                found.add(name)
                break
    return found


def _unit(module):
    return module.split(".")[0]


GRAPH = {m: _imports(m, p, _modules()) for m, p in _modules().items()}


def test_every_folder_and_top_level_module_has_a_rank():
    assert {_unit(m) for m in GRAPH} == set(RANKS)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_run_down_the_layers(module):
    for target in GRAPH[module]:
        a, b = _unit(module), _unit(target)
        assert a == b or RANKS[a] >= RANKS[b], f"{module} imports {target}, a higher layer"


def test_no_circles():
    """No module reaches itself through imports (so no circle spans folders either)."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in GRAPH[module]:
            assert state.get(target) != "open", " -> ".join(path + [target])
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"
    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
