"""Parallel-in-time (Newton / DEER / ParaRNN) vs sequential evaluation: iterations to converge for
random and trained cells, time on this CPU, and a cost-model estimate for an H100.

    .venv/bin/python benchmarks/newton.py          # writes docs/benchmarks/newton.md
    .venv/bin/python benchmarks/newton.py --steps 256

Cells: torch's default-initialised GRU and LSTM (H=64), the same with weights scaled by 3
(strongly nonlinear, the hard case), and the GRU and LSTM of the frame-level voice-activity
model trained on real speech (``tests/speech_model.py``, H=48).  For each, T in {256, 4096},
batch 1, fp32, on this CPU:

* ``iters full`` / ``iters diag``: Newton iterations to convergence with exact / diagonal
  Jacobians (``rnnc.lower.newton``; at most T by construction), empty when it fell back;
* ``seq``: the step loop (``torch.nn`` eager, oneDNN); ``newton``: the faster converged method
  in rnnc's torch reference; ``newton / seq``: seq time / newton time (> 1: parallel wins);
* ``H100 est.``: estimated seq / newton time ratio on nvidia/h100-sxm -- an ESTIMATE from the
  cost model, not a measurement: sequential = the solver's fused-recurrence estimate for the
  layer; Newton = iterations x (Jacobian and scan FLOPs at the fp32 peak + one grid-wide sync,
  costed as a DRAM round trip, per scan level).  No GPU ran here.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import torch
from _common import best_time, fmt_time, markdown_table, page_header, ratio, write_page

import rnnc
from rnnc.constraints import ProblemSpec, solve
from rnnc.ir.printer import layer_cells
from rnnc.lower.newton import NewtonProgram
from rnnc.targets import get

ROOT = Path(__file__).resolve().parents[1]


def cells() -> list[tuple[str, torch.nn.Module]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from speech_model import train_vad

    out = []
    for kind, cls in (("gru", torch.nn.GRU), ("lstm", torch.nn.LSTM)):
        torch.manual_seed(0)
        out.append((f"{kind} H=64 random", cls(32, 64, batch_first=True)))
        torch.manual_seed(0)
        hard = cls(32, 64, batch_first=True)
        with torch.no_grad():
            for p in hard.parameters():
                p.mul_(3.0)
        out.append((f"{kind} H=64 random x3", hard))
    for kind in ("gru", "lstm"):
        out.append((f"{kind} H=48 trained (speech VAD)", train_vad(kind).model.rnn))
    return out


def h100_ratio(kind: str, hidden: int, steps: int, iters: int, method: str) -> float:
    target = get("nvidia/h100-sxm")
    seq = solve(ProblemSpec(kind, hidden, batch=1, dtype="fp32", seq_len=steps), target).estimate.seconds
    dim = hidden * (2 if kind == "lstm" else 1)
    levels = math.ceil(math.log2(max(steps, 2)))
    gates = 4 if kind == "lstm" else 3
    jac_flops = steps * 2 * gates * hidden * hidden * dim  # reverse mode over the step: ~one product per row
    scan_flops = levels * steps * (2 * dim ** 3 if method == "full" else 2 * dim)
    peak = target.peak("fp32") * 1e12
    sync = target.gpu.dram_latency_cycles / (target.clock_mhz * 1e6)
    newton = iters * ((jac_flops + scan_flops) / peak + levels * sync)
    return seq / newton


def point(name: str, rnn: torch.nn.Module, steps: int) -> dict:
    kind = "lstm" if isinstance(rnn, torch.nn.LSTM) else "gru"
    x = torch.randn(1, steps, rnn.input_size, generator=torch.Generator().manual_seed(steps))
    program = rnnc.trace(rnn, (x,))
    keys = list(layer_cells(program))
    row: dict = {"cell": name, "T": steps}
    times = {}
    with torch.no_grad():
        want = rnn(x)[0]
        row["seq"] = best_time(lambda: rnn(x), budget_s=0.5, max_reps=5)
        err = 0.0
        for method in ("full", "diag"):
            runner = NewtonProgram(program, dict.fromkeys(keys, method))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = runner(x)[0]
            info = next(iter(runner.info.values()))
            row[f"iters {method}"] = info.iterations if info.converged else None
            if info.converged:
                err = max(err, float((got - want).abs().max()))
                times[method] = best_time(lambda runner=runner: runner(x), budget_s=0.5, max_reps=3)
    best = min(times, key=times.__getitem__) if times else None
    row["newton"] = times[best] if best else None
    row["method"] = best or "fallback"
    row["newton / seq"] = row["seq"] / row["newton"] if best else None
    row["max err"] = err
    if best:
        row["H100 est."] = h100_ratio(kind, rnn.hidden_size, steps, row[f"iters {best}"], best)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="256,4096")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "newton.md"))
    args = ap.parse_args()
    rows = [point(name, rnn, int(t)) for t in args.steps.split(",") for name, rnn in cells()]
    cols = ["cell", "T", "iters full", "iters diag", "method", "seq", "newton", "newton / seq", "H100 est.",
            "max err"]
    fmt = {"seq": fmt_time, "newton": fmt_time, "newton / seq": ratio, "H100 est.": lambda v: f"{v:.2f}x (est.)",
           "max err": lambda v: f"{v:.0e}"}
    write_page(args.out, [page_header("Parallel-in-time Newton vs sequential evaluation"),
                          "Batch 1, fp32. An empty iteration count: that method did not converge "
                          "(finished step by step).", "",
                          markdown_table(rows, cols, fmt), ""])


if __name__ == "__main__":
    main()
