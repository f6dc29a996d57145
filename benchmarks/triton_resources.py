"""Predicted vs compiled resources of the Triton backend's fused kernels (issue 4's README table).

    python benchmarks/triton_resources.py                  # Markdown table on stdout
    python benchmarks/triton_resources.py --out table.md   # also write it to a file
    python benchmarks/triton_resources.py --quick          # H=16 and 64 only
    python benchmarks/triton_resources.py --cells lstm,gru --hidden 128,256,512,1024   # a subset

Why: the solver's Schedule predicts registers per thread and shared memory per block; only the
real compiler knows.  For all nine cells x hidden {16, 32, 64, 128, 256} (lstm/gru also 512
and 1024, which only the multi-block kernel reaches) x sm_80
(``nvidia/a100-80gb``), sm_86 (``nvidia/rtx-3090``), sm_89 (``nvidia/rtx-4090``), sm_90
(``nvidia/h100-sxm``), sm_100 (``nvidia/b200``), fp32, batch 4, this asks the solver for a
schedule (``fused_recurrence`` for lstm/gru/elman/slstm: single-block when the weights fit one
block, else multi-block with a grid sync per step; ``chunked_scan`` for the linear cells),
AOT-compiles the rendered kernel(s) without a GPU (Triton's code generator, the wheel's ptxas)
and runs :func:`rnnc.backends.triton.aot.fit_schedule`: where ptxas reports
spills or registers more than 10 % off the prediction, that is fed back into the solver
(``min_warps`` / ``register_overhead``) and the kernel recompiled.  The table shows the first
prediction, the fed-back one and what was compiled; points without a schedule are listed with
the solver's reason.  slstm/mlstm use 4 heads; mamba has D = H channels with N = 16 states each;
lru has N = H states; for a scan cell the registers/shared memory are the largest over its
scan components (mlstm: 3 kernels).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import page_header  # noqa: E402  (benchmarks/ is the script's folder)

TARGETS = {80: "nvidia/a100-80gb", 86: "nvidia/rtx-3090", 89: "nvidia/rtx-4090", 90: "nvidia/h100-sxm",
           100: "nvidia/b200"}
CELLS = ("lstm", "gru", "elman", "slstm", "mingru", "minlstm", "lru", "mamba", "mlstm")
HIDDEN = (16, 32, 64, 128, 256)
#: larger sizes for the cells realistic models use them with (multi-block kernels only)
LARGE = {"lstm": (512, 1024), "gru": (512, 1024)}
BATCH = 4


def make_cell(kind: str, hidden: int) -> Any:
    """The IR cell of rnnc's ``kind`` layer module at ``hidden`` (input size = hidden)."""
    import torch

    from rnnc.ir import rnn_program
    from rnnc.kernels import CELLS as MODULES

    torch.manual_seed(0)
    extra = {"num_heads": 4} if kind in ("slstm", "mlstm") else {}
    state = 16 if kind == "mamba" else hidden  # Mamba: D = hidden channels, N = 16 states each
    cell, weights = MODULES[kind].load_module_class()(hidden, state, **extra).rnnc_layer()
    return rnn_program([cell], [[weights]]).rnn_nodes()[0].attr("cells")[0]


def measure(kind: str, hidden: int, cc: int) -> dict[str, Any]:
    """One table row (``declined`` set with the reason when there is no spill-free schedule)."""
    from rnnc.backends.triton import schedule_for
    from rnnc.backends.triton.aot import allocated, fit_schedule
    from rnnc.errors import RnncError
    from rnnc.targets import get

    row: dict[str, Any] = {"cell": kind, "hidden": hidden, "arch": f"sm_{cc}", "target": TARGETS[cc]}
    cell, target = make_cell(kind, hidden), get(TARGETS[cc])
    start = time.perf_counter()
    try:
        first = schedule_for(cell, target, BATCH)
        fit = fit_schedule(cell, target, cc, BATCH)
    except RnncError as exc:
        row["declined"] = " ".join(str(exc).split())[:220]
        return row
    r, m = fit.schedule.resources, fit.measured
    sp = dict(fit.schedule.params)
    if fit.schedule.kernel == "chunked_scan":
        knobs = f"chunk {sp['chunk']}, channel tile {sp['channel_tile']}"
    elif sp["blocks_per_head"] > 1:  # multi-block: hidden tile x blocks, grid sync per step
        knobs = (f"batch tile {sp['batch_tile']}, hidden tile {sp['hidden_tile']} x {sp['blocks_per_head']} "
                 f"blocks ({fit.schedule.resources.blocks} programs, grid sync)")
    else:
        knobs = f"batch tile {sp['batch_tile']}"
    row.update(first_warps=first.param("warps"), first_regs=first.resources.registers_per_thread,
               warps=fit.schedule.param("warps"), knobs=knobs,
               pred_regs=r.registers_per_thread, regs=m.registers_per_thread,
               alloc=allocated(m.registers_per_thread),
               pred_smem=r.shared_memory_per_block, smem=m.shared_memory_per_block,
               spills=m.spill_stores + m.spill_loads, rounds=len(fit.rounds), converged=fit.converged,
               overhead=fit.rounds[-1]["register_overhead"], seconds=round(time.perf_counter() - start, 1))
    return row


def pct(measured: int, predicted: int) -> str:
    return f"{100 * (measured - predicted) / predicted:+.0f} %" if predicted else "n/a"


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table plus the list of declined points."""
    head = ("| cell | H | arch | solver first: warps / regs | fed back: warps / regs | tiling "
            "| compiled regs (allocated) | regs Δ | predicted smem B | compiled smem B | smem Δ | spills B | rounds |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    declined = []
    for r in rows:
        if "declined" in r:
            declined.append(f"- {r['cell']} H={r['hidden']} {r['arch']} ({r['target']}): {r['declined']}")
            continue
        lines.append(f"| {r['cell']} | {r['hidden']} | {r['arch']} | {r['first_warps']} / {r['first_regs']} "
                     f"| {r['warps']} / {r['pred_regs']} | {r['knobs']} | {r['regs']} ({r['alloc']}) "
                     f"| {pct(r['alloc'], r['pred_regs'])} "
                     f"| {r['pred_smem']} | {r['smem']} | {pct(r['smem'], r['pred_smem'])} | {r['spills']} "
                     f"| {r['rounds']}{'' if r['converged'] else ' (not converged)'} |")
    if declined:
        lines += ["", "Declined (no spill-free schedule):", "", *declined]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    ap.add_argument("--quick", action="store_true", help="H=16 and 64 only")
    ap.add_argument("--jobs", type=int, default=2, help="points compiled in parallel (each in a subprocess)")
    ap.add_argument("--cells", help="comma-separated cells (default: all nine)")
    ap.add_argument("--hidden", help="comma-separated hidden sizes (default: all the script's sizes)")
    ap.add_argument("--arch", help="comma-separated compute capabilities, e.g. 80,90 (default: all five)")
    args = ap.parse_args(argv)
    cells = tuple(args.cells.split(",")) if args.cells else CELLS
    unknown = sorted(set(cells) - set(CELLS))
    if unknown:
        ap.error(f"unknown cells {unknown}; choose from {', '.join(CELLS)}")
    try:
        wanted = {int(h) for h in args.hidden.split(",")} if args.hidden else None
        archs = sorted({int(a) for a in args.arch.split(",")}) if args.arch else sorted(TARGETS)
    except ValueError:
        ap.error("--hidden and --arch take comma-separated integers")
    if set(archs) - set(TARGETS):
        ap.error(f"unknown architectures {sorted(set(archs) - set(TARGETS))}; choose from {sorted(TARGETS)}")
    points = []
    for c in cells:
        sizes = (16, 64) if args.quick else (*HIDDEN, *LARGE.get(c, ()))
        points += [(c, h, cc) for h in sizes if wanted is None or h in wanted for cc in archs]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda p: measure(*p), points))
    text = page_header("Triton kernels: AOT resources") + table(rows) + (
        f"\nfp32, batch {BATCH}, triton AOT + ptxas --verbose; {len(points)} points in "
                          f"{time.perf_counter() - start:.0f} s.\n")
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
