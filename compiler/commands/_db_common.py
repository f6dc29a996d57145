"""Options and output helpers shared by ``rnnc db`` and ``rnnc tune``."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any


def add_db_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="DIR", default=None,
                   help="overlay database directory (default: $RNNC_DB or ~/.cache/rnnc/autotune_db)")
    p.add_argument("--no-shipped", action="store_true", help="ignore the records shipped with rnnc")


def open_db(args: argparse.Namespace) -> Any:
    from rnnc.autotune_db import SHIPPED_DIR, Database

    return Database(overlay=args.db, shipped=None if args.no_shipped else SHIPPED_DIR)


def readable_warnings() -> None:
    """Database warnings as one 'rnnc: warning:' line each, not Python's file:line format."""
    from rnnc.autotune_db import RecordWarning

    default = warnings.showwarning

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(category, RecordWarning):
            print(f"rnnc: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("default", RecordWarning)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"
