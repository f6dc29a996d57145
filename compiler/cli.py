"""The one ``rnnc`` command line.

Subcommands live in ``rnnc.commands.<name>``; each module defines ``register(subparsers)`` that
adds its parser and sets ``func`` (a callable taking the parsed namespace and returning an exit
code).  Modules are discovered, so adding a subcommand never touches this file.  Errors that
users can cause are ``RnncError``s: printed as one line, no traceback, exit code 1 or 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from rnnc import __version__
from rnnc.errors import RnncError


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="rnnc",
        description="rnnc: compile, export, quantize and tune recurrent neural network kernels.",
    )
    parser.add_argument("--version", action="version", version=f"rnnc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import rnnc.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"rnnc.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RnncError as exc:
        print(f"rnnc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rnnc: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `rnnc targets | head`: the reader left; silence the flush at exit, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
