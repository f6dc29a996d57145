"""``rnnc cells``: list the registered recurrent cells."""

from __future__ import annotations

import argparse
import json

from rnnc.kernels import CELLS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cells", help="list the recurrent cells rnnc knows",
                       description="List the cell registry: name, recurrence class, nn.Module, summary. "
                                   "'linear' cells can run as a parallel scan; 'nonlinear' ones need a time loop.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = [{"name": c.name, "recurrence": c.recurrence, "module": f"{c.package}.module.{c.module_class}",
             "summary": c.summary} for c in CELLS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'cell':<8} {'recurrence':<10} summary")
    for r in rows:
        print(f"{r['name']:<8} {r['recurrence']:<10} {r['summary']}")
    return 0
