"""``rnnc solve``: the best tiling of one recurrent layer on one target, or why none fits.

    rnnc solve --cell lstm --hidden 768 --heads 1 --batch 16 --dtype bf16 --target nvidia/h100-sxm
    rnnc solve ... --solver cpsat --json
    rnnc solve --cell lstm --hidden 4096 --dtype fp32 --target nvidia/t4 --single-block   # exit 1

Exit codes: 0 a schedule was found, 1 nothing fits (the explanation is printed), 2 bad input.
"""

from __future__ import annotations

import argparse
import json

from rnnc.constraints import CELLS, SOLVERS, InfeasibleTiling, ProblemSpec, solve
from rnnc.targets import DTYPE_BYTES

HELP = "find the best tiling of a recurrent layer for a target (or explain why none fits)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "solve",
        help=HELP,
        description="Solve the integer tiling problem of one recurrent layer on one target and print the "
        "Schedule: chosen parameters, predicted registers/shared memory/occupancy and a roofline time "
        "estimate (an estimate, not a measurement). When nothing fits, print which resource is short, "
        "by how much, and the smallest changes that would fit (exit code 1).",
    )
    p.add_argument("--cell", required=True, help=f"cell type: {', '.join(CELLS)}")
    p.add_argument("--hidden", type=int, required=True, help="hidden size (all heads together)")
    p.add_argument("--heads", type=int, default=1, help="number of heads (default 1)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPE_BYTES), help="weight/activation dtype")
    p.add_argument("--target", required=True, help="target tag (see `rnnc targets`) or a target YAML path")
    p.add_argument("--solver", default="rnnc", choices=sorted(SOLVERS), help="rnnc (default) or cpsat")
    p.add_argument("--seq-len", type=int, default=1024, help="sequence length for the estimate (default 1024)")
    p.add_argument("--state-size", type=int, default=16, help="Mamba state size N (default 16)")
    p.add_argument("--input-size", type=int, default=None, help="input size (default: hidden)")
    p.add_argument("--single-block", action="store_true",
                   help="one block per head: no multi-block split with a grid sync")
    p.add_argument("--no-register-weights", action="store_true",
                   help="keep recurrent weights in shared memory only (kernels without register caching)")
    p.add_argument("--family", choices=["fused", "scan"], default=None, help="kernel family of a custom cell")
    p.add_argument("--gates", type=int, default=None, help="gate matrices of a custom fused cell")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = ProblemSpec(
        cell=args.cell,
        hidden=args.hidden,
        heads=args.heads,
        batch=args.batch,
        dtype=args.dtype,
        input_size=args.input_size,
        state_size=args.state_size,
        seq_len=args.seq_len,
        grid_sync=not args.single_block,
        register_weights=not args.no_register_weights,
        family=args.family,
        gates=args.gates,
    )
    try:
        schedule = solve(spec, args.target, solver=args.solver)
    except InfeasibleTiling as exc:
        if args.json:
            print(json.dumps(exc.explanation.to_dict(), indent=2))
        else:
            print(exc.explanation.text)
        return 1
    if args.json:
        print(json.dumps({"feasible": True, **schedule.to_dict()}, indent=2, sort_keys=True))
    else:
        print(schedule.describe())
    return 0
