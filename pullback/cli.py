"""The `pullback` command line.

    pullback demo
    pullback show path/to/file.py:function [--grad | --hessian | --hvp V] --at ARG [--at ARG ...]

`show` prints the Python source pullback generates for a function of your file
(or for its gradient, Hessian or Hessian-vector product) at the given arguments;
each `--at` is a Python literal for one positional argument, e.g. "[1.0, 2.0]".
"""
import argparse
import ast
import functools
import importlib.util
import inspect
import os
import sys


def _load_function(spec: str):
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise SystemExit(f"pullback show: expected path/to/file.py:function, got {spec!r}")
    if not os.path.isfile(path):
        raise SystemExit(f"pullback show: no such file: {path}")
    module_spec = importlib.util.spec_from_file_location(
        os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    module_spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise SystemExit(f"pullback show: {path} defines no function {name!r}")
    return getattr(module, name)


def _literal(text: str):
    import numpy as np
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise SystemExit(f"pullback show: --at {text!r} is not a Python literal") from None
    return np.asarray(value, dtype=float) if isinstance(value, (list, tuple)) else float(value)


def show_command(args) -> None:
    import pullback
    f = _load_function(args.function)
    at = [_literal(text) for text in args.at]
    parameters = list(inspect.signature(f).parameters)
    result_names = None
    if args.grad:
        target = pullback.grad(f)
        result_names = [f"grad_{parameters[0]}" if parameters else "grad"]
    elif args.hessian:
        target, result_names = pullback.hessian(f), ["hessian"]
    elif args.hvp is not None:
        v = _literal(args.hvp)

        @functools.wraps(f)             # keeps f's parameter names for the generated code
        def hvp(x, *rest):
            return pullback.hvp(lambda x: f(x, *rest), x, v)
        hvp.__name__ = f"{f.__name__}_hvp"
        target, result_names = hvp, ["hvp"]
    else:
        target = f
    pullback.show(target, *at, result_names=result_names)


def main(argv=None) -> int:
    """Entry point of the `pullback` console command and of `python -m pullback`."""
    parser = argparse.ArgumentParser(prog="pullback", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a short tour: gradients, pullbacks, Jacobians, "
                                            "Hessians, generated derivative code")
    demo.add_argument("--dask", action="store_true",
                      help="instead, a Hessian-vector product at n = 10^8 on a local Dask "
                           "cluster (needs pip install 'pullback[dask]')")
    demo.add_argument("--n", type=int, default=10**8, help="the size of the --dask problem")
    show = commands.add_parser("show", help="print the generated source of a function or of "
                                            "its derivatives")
    show.add_argument("function", help="path/to/file.py:function")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--grad", action="store_true", help="show the gradient's program")
    which.add_argument("--hessian", action="store_true", help="show the Hessian's program")
    which.add_argument("--hvp", metavar="V", help="show the Hessian-vector product with V")
    show.add_argument("--at", action="append", required=True,
                      help="a Python literal for one positional argument (repeat for more)")
    args = parser.parse_args(argv)
    if args.command == "demo" and args.dask:
        from .demo import dask_hvp
        dask_hvp(n=args.n, chunk=min(5 * 10**6, max(args.n // 8, 1)))
    elif args.command == "demo":
        from .demo import main as demo
        demo()
    else:
        show_command(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
