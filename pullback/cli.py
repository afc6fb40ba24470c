"""The `pullback` command line: `pullback demo`."""
import argparse
import sys


def main(argv=None) -> int:
    """Entry point of the `pullback` console command and of `python -m pullback`."""
    parser = argparse.ArgumentParser(prog="pullback", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="a short tour: gradients, pullbacks, Jacobians, errors")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo
        demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
