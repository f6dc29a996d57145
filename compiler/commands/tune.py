"""``rnnc tune``: measure solver-ranked tilings of a model's recurrent layers and record the best.

    rnnc tune model.py --input-shape 1,100,40 --target cpu/host --batch 8 --seq-len 100
    rnnc tune --cell lstm --input-size 40 --hidden 256 --target nvidia/h100-sxm --backend cuda
    rnnc tune ... --max-candidates 16 --time-budget 600 --ray              # local Ray
    rnnc tune ... --ray ray://head:10001                                   # a cluster
    rnnc tune --ci --models models.yaml --targets cpu/host [--refresh] [--remeasure]

Exit codes: 0 every layer has a verified record (CI: every model x target is covered and
current), 1 otherwise, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rnnc.commands._db_common import add_db_options, open_db, readable_warnings
from rnnc.commands._load import MODEL_HELP
from rnnc.errors import UserInputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="autotune recurrent layers for a target and record the winners",
                       description="Rank the feasible tilings of every recurrent layer with the solver's cost "
                                   "model, then compile, check against the IR interpreter and time the top "
                                   "candidates; verified kernels go to the record database. GPU targets without "
                                   "the GPU are compiled only and recorded as estimated.")
    p.add_argument("model", nargs="?", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--input-shape", action="append", metavar="SHAPE", help="example input shape for MODEL")
    p.add_argument("--cell", help="tune one built-in cell instead of a model (with --input-size, --hidden)")
    p.add_argument("--input-size", type=int, help="input size of --cell")
    p.add_argument("--hidden", type=int, help="hidden size of --cell")
    p.add_argument("--target", default="cpu/host", help="target tag (default cpu/host)")
    p.add_argument("--backend", default=None,
                   help="backend (default: c for CPU targets, cuda for GPUs); 'all': every tunable backend that can "
                        "be measured or estimated for the target, so rnnc.compile can take the fastest")
    p.add_argument("--batch", type=int, default=1, help="batch size to tune for (default 1)")
    p.add_argument("--seq-len", type=int, default=64, help="sequence length to tune for (default 64)")
    p.add_argument("--max-candidates", type=int, default=8, help="distinct candidates per layer (default 8)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS", help="stop after this long")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per candidate (median; default 5)")
    p.add_argument("--no-resume", action="store_true", help="re-measure candidates already in the database")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="fan candidates out over Ray: a local one, or the cluster at ADDRESS")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    ci = p.add_argument_group("CI mode")
    ci.add_argument("--ci", action="store_true", help="check that every model x target has a current record")
    ci.add_argument("--models", metavar="YAML", help="models.yaml listing the models CI must cover")
    ci.add_argument("--targets", nargs="+", metavar="TAG", help="targets (TAG or TAG:BACKEND), overrides the YAML")
    ci.add_argument("--refresh", action="store_true", help="tune what is missing, stale or regressed")
    ci.add_argument("--remeasure", action="store_true", help="re-time recorded kernels and fail on regressions")
    ci.add_argument("--threshold", type=float, default=0.25, help="allowed slow-down for --remeasure (0.25 = 25%%)")
    add_db_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=run)


def tunable_backends(target: Any) -> list[str]:
    """Every tunable backend whose adapter accepts ``target`` (``--backend all``)."""
    from rnnc.errors import UnsupportedError
    from rnnc.tune.protocol import ADAPTERS, tunable

    able = []
    for name in ADAPTERS:
        try:
            tunable(name).mode(target)
        except (UnsupportedError, ImportError):
            continue
        able.append(name)
    if not able:
        raise UserInputError(f"no tunable backend can measure or estimate kernels for {target.tag}")
    return able


def run(args: argparse.Namespace) -> int:
    readable_warnings()
    db = open_db(args)
    progress = not args.no_progress and not args.json and sys.stderr.isatty()
    if args.ci:
        from rnnc.tune.ci import run_ci

        if not args.models:
            raise UserInputError("--ci needs --models models.yaml")
        report = run_ci(args.models, args.targets, db, refresh=args.refresh, remeasure=args.remeasure,
                        threshold=args.threshold, max_candidates=args.max_candidates, time_budget=args.time_budget,
                        progress=progress, ray=args.ray)
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True) if args.json else report.text())
        return 0 if report.ok else 1
    from rnnc.targets import get
    from rnnc.tune import Tuner, cell_layers, layers_of
    from rnnc.tune.ci import DEFAULT_BACKENDS

    if args.cell:
        if args.model or not args.input_size or not args.hidden:
            raise UserInputError("--cell needs --input-size and --hidden (and no MODEL)")
        layers = cell_layers(args.cell, args.input_size, args.hidden, args.batch, args.seq_len)
    elif args.model:
        from rnnc.commands._load import load_model
        from rnnc.commands.trace import example_inputs
        from rnnc.frontend import trace

        if not args.input_shape:
            raise UserInputError("MODEL needs --input-shape (e.g. --input-shape 1,100,40)")
        program = trace(load_model(args.model), example_inputs(args.input_shape, None))
        layers = layers_of(program, args.batch, args.seq_len)
    else:
        raise UserInputError("give a MODEL, --cell, or --ci --models models.yaml")
    target = get(args.target)
    backends = [args.backend or DEFAULT_BACKENDS[target.kind]]
    if args.backend == "all":
        backends = tunable_backends(target)
    reports = []
    for backend in backends:
        tuner = Tuner(target, backend, db=db, max_candidates=args.max_candidates, time_budget=args.time_budget,
                      repeats=args.repeats, progress=progress, ray=args.ray, resume=not args.no_resume)
        reports.append(tuner.tune(layers))
    if args.json:
        data = [r.to_dict() for r in reports]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2, sort_keys=True))
    else:
        print("\n".join(r.text() for r in reports))
    return 0 if all(r.ok for r in reports) else 1
