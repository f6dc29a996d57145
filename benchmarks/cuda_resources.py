"""Predicted vs compiled resources of the CUDA backend's fused LSTM/GRU kernel on every GPU target (issue 10).

    python benchmarks/cuda_resources.py                     # all GPU targets, lstm/gru, H 128..1024, fp32 + bf16
    python benchmarks/cuda_resources.py --out t.md --json t.json
    python benchmarks/cuda_resources.py --quick             # one target, one size, fp32 (< 60 s)
    python benchmarks/cuda_resources.py --targets nvidia/h100-sxm --cells gru --hidden 512 --dtypes float16

Why: the solver's Schedule predicts registers per thread and shared memory per block, and the
CUDA renderer keeps ``register_k`` columns of the recurrent weights in registers under
``__maxnreg__`` at that prediction; only ptxas knows whether it holds.  For each point this runs
:func:`rnnc.backends.cstyle.cuda_fit.fit_cuda_schedule` (solve, render, nvcc for the target's own
architecture, feed spills back as register overhead, re-solve) and reports the first and the
fed-back prediction, what ptxas allocated, spills, and shared memory three ways: the solver's
Schedule, the renderer's ``predict_smem`` (what ``rnnc.lower`` allocates) and the real one (ptxas's
static figure, or the renderer's dynamic size above 48 KiB, which ptxas does not see).
Points where the solver finds no schedule list its one-line reason.  nvcc results are cached by
source hash (``rnnc.backends.cstyle.build``), so a rerun only compiles what changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import page_header  # noqa: E402  (benchmarks/ is the script's folder)

CELLS = ("lstm", "gru")
HIDDEN = (128, 256, 512, 1024)
DTYPES = ("float32", "bfloat16")
SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
QUICK = ("nvidia/h100-sxm", "gru", 128, "float32")
#: ptxas registers this far from the prediction (relative) count as a miss in the summary
TOLERANCE = 0.10


def gpu_targets() -> list[str]:
    """Every GPU target YAML in ``rnnc.targets`` (CPUs have no CUDA kernel)."""
    from rnnc.targets import get, list_tags

    return [t for t in list_tags() if getattr(get(t), "gpu", None) is not None]


def measure(tag: str, kind: str, hidden: int, dtype: str) -> dict[str, Any]:
    """One row; ``infeasible`` holds the solver's reason when it finds no schedule."""
    from rnnc.backends.cstyle.cuda_fit import arch_of, fit_cuda_schedule
    from rnnc.backends.cstyle.dialects import CudaDialect
    from rnnc.errors import InfeasibleError
    from rnnc.kernels import CELLS as MODULES
    from rnnc.lower.knobs import DTYPE_BYTES, predict_smem
    from rnnc.targets import get

    target = get(tag)
    row: dict[str, Any] = {"target": tag, "arch": arch_of(target), "cell": kind, "hidden": hidden, "dtype": dtype}
    cell, _ = MODULES[kind].load_module_class()(hidden, hidden).rnnc_layer()  # input size = hidden
    start = time.perf_counter()
    try:
        fit = fit_cuda_schedule(cell, target, dtype, f"{kind}_h{hidden}")
    except InfeasibleError as exc:
        row["infeasible"] = reason(str(exc))
        return row
    kn, res = fit.kernel.meta["knobs"], fit.resources
    dialect = CudaDialect(fit.kernel, dtype)
    row.update(
        first_pred=fit.rounds[0]["predicted_registers"] if fit.rounds else None,
        pred=fit.schedule.resources.registers_per_thread if fit.schedule is not None else None,
        solver_smem=fit.schedule.resources.shared_memory_per_block if fit.schedule is not None else None,
        cap=kn.get("max_registers", 0), regs=res.registers, spills=res.spill_stores + res.spill_loads,
        pred_smem=predict_smem(hidden, fit.kernel.meta["gates"], kn["tile_hidden"], kn["batch_block"],
                               DTYPE_BYTES[dtype], 1, kn["register_k"]),
        smem=dialect.smem_bytes if dialect.dynamic else res.shared_bytes, dynamic=dialect.dynamic,
        register_k=kn["register_k"], tile=kn["tile_hidden"], threads=kn["threads"],
        blocks=hidden // kn["tile_hidden"], rounds=len(fit.rounds), note=fit.note,
        seconds=round(time.perf_counter() - start, 1))
    return row


def reason(message: str) -> str:
    """One line from an InfeasibleError: its headline plus the resources that bind ("needs at least")
    and the first of the solver's "smallest changes that fit" (the headline alone says "no tiling fits")."""
    lines = [" ".join(line.split()) for line in message.splitlines()]
    binding = [line.lstrip("- ") for line in lines if "needs at least" in line]
    changes = lines.index("Smallest changes that fit:") if "Smallest changes that fit:" in lines else -1
    fix = [f"fits with {lines[changes + 1].lstrip('- ')}"] if 0 <= changes < len(lines) - 1 else []
    return "; ".join([lines[0], *binding, *fix])


def within(row: dict[str, Any]) -> bool:
    """ptxas registers within :data:`TOLERANCE` of the (fed-back) prediction."""
    return bool(row.get("pred")) and abs(row["regs"] - row["pred"]) <= TOLERANCE * row["pred"]


def smem_ok(row: dict[str, Any]) -> bool:
    """Shared memory as predicted: ptxas's static figure may lack the last array's 16-byte padding."""
    return 0 <= row["pred_smem"] - row["smem"] < 16


def fmt_row(r: dict[str, Any]) -> str:
    if "infeasible" in r:
        return f"| {r['target']} | {r['arch']} | {r['cell']} | {r['hidden']} | {SHORT[r['dtype']]} | " \
               + "| " * 10 + f"no schedule: {r['infeasible']} |"
    cap = r["cap"] or "none"
    smem = f"{r['solver_smem']} / {r['pred_smem']} / {r['smem']}{' (dyn)' if r['dynamic'] else ''}"
    return (f"| {r['target']} | {r['arch']} | {r['cell']} | {r['hidden']} | {SHORT[r['dtype']]} | {r['first_pred']} "
            f"| {r['pred']} / {cap} | {r['regs']} | {r['spills']} | {smem} | {r['register_k']} / {r['hidden']} "
            f"| {r['tile']} | {r['threads']} | {r['blocks']} | {r['rounds']} | {r['note'] or ''} |")


HEAD = ("| target | arch | cell | H | dtype | solver regs | fed back / cap | ptxas regs | spills B "
        "| smem B solver / renderer / real | register_k / K | tile | threads | blocks | rounds | note |")


def summary(rows: list[dict[str, Any]]) -> str:
    done = [r for r in rows if "infeasible" not in r]
    return (f"{len(done)} points compiled, {sum(r['spills'] == 0 for r in done)} spill-free, "
            f"{sum(within(r) for r in done)} within {TOLERANCE:.0%} of the register prediction, "
            f"{sum(smem_ok(r) for r in done)} with shared memory as predicted, "
            f"{len(rows) - len(done)} infeasible (no schedule).")


def table(rows: list[dict[str, Any]]) -> str:
    lines = [HEAD, "|" + "---|" * (HEAD.count("|") - 1), *map(fmt_row, rows)]
    return "\n".join(lines) + "\n\n" + summary(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", help="comma-separated GPU target tags (default: every GPU target)")
    ap.add_argument("--cells", default=",".join(CELLS), help="comma-separated, from lstm,gru")
    ap.add_argument("--hidden", help="comma-separated hidden sizes (default: 128,256,512,1024)")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated, from float32,bfloat16,float16")
    ap.add_argument("--quick", action="store_true", help=f"only {'/'.join(map(str, QUICK))}")
    ap.add_argument("--jobs", type=int, default=2, help="points fitted in parallel (nvcc runs as a subprocess)")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    ap.add_argument("--json", type=Path, help="also write every row here")
    args = ap.parse_args(argv)
    from rnnc.backends.cstyle.build import nvcc_path
    from rnnc.errors import RnncError

    if nvcc_path() is None:  # not a failure of rnnc: `rnnc bench` on a machine without the CUDA toolkit
        text = "Skipped: nvcc is not on PATH (this benchmark compiles CUDA kernels; it needs no GPU).\n"
        sys.stdout.write(text)
        if args.out:
            args.out.write_text(text)
        return 0
    gpus = gpu_targets()
    try:
        targets = args.targets.split(",") if args.targets else gpus
        hidden = tuple(int(h) for h in args.hidden.split(",")) if args.hidden else HIDDEN
    except ValueError:
        ap.error("--hidden takes comma-separated integers")
    cells, dtypes = args.cells.split(","), args.dtypes.split(",")
    for what, given, known in (("targets", targets, gpus), ("cells", cells, CELLS), ("dtypes", dtypes, SHORT)):
        if set(given) - set(known):
            ap.error(f"unknown {what} {sorted(set(given) - set(known))}; choose from {', '.join(known)}")
    points = [QUICK] if args.quick else [(t, c, h, d) for t in targets for c in cells for h in hidden for d in dtypes]
    start = time.perf_counter()

    def one(p: tuple[str, str, int, str]) -> dict[str, Any]:
        try:
            row = measure(*p)
        except RnncError as exc:  # a renderer/nvcc failure is a finding, not a crash of the sweep
            row = {"target": p[0], "arch": "?", "cell": p[1], "hidden": p[2], "dtype": p[3],
                   "infeasible": f"error: {' '.join(str(exc).split())[:200]}"}
        short = row.get("infeasible") or (f"regs {row['regs']} pred {row['pred']} spills {row['spills']} "
                                          f"smem {row['smem']}/{row['pred_smem']} {row['seconds']} s")
        print(f"[{time.perf_counter() - start:6.0f} s] {p[0]} {p[1]} H={p[2]} {SHORT[p[3]]}: {short}",
              file=sys.stderr, flush=True)
        return row

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(one, points))
    text = page_header("CUDA kernels: predicted vs ptxas resources") + table(rows) + \
        f"\nnvcc -O3 --resource-usage for each target's own arch, batch 1; {len(points)} points " \
                         f"in {time.perf_counter() - start:.0f} s.\n"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
