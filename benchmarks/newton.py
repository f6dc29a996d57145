"""Parallel-in-time (Newton / DEER / ParaRNN) vs sequential evaluation: iterations to converge for
random and trained cells, time on this CPU, and a cost-model estimate for an H100.

    .venv/bin/python benchmarks/newton.py          # writes docs/benchmarks/newton.md
    .venv/bin/python benchmarks/newton.py --steps 256

Cells: torch's default-initialised GRU and LSTM (H=64), the same with weights scaled by 3
(strongly nonlinear, the hard case), and the GRU and LSTM of the frame-level voice-activity
model trained on real speech (``tests/speech_model.py``, H=48).  For each, T in {256, 4096},
batch 1, fp32, on this CPU:

* ``iters full`` / ``iters diag`` / ``iters block``: Newton iterations to convergence with exact,
  diagonal and block-diagonal (an LSTM unit's (h, c) pair; for a GRU the same as diag) Jacobians
  (``rnnc.lower.newton``; at most T by construction), empty when it fell back;
* ``seq``: the step loop (``torch.nn`` eager, oneDNN); ``newton``: the fastest converged method in
  rnnc's torch reference; ``newton C scan``: the same method with each step's linear recurrence in
  C over this CPU's threads (``rnnc.lower.newton_scan``); ``newton / seq``: seq time / newton time
  (> 1: parallel wins);
* ``H100 est.`` and ``64-core est.``: seq / Newton time ratio that the cost model
  (``rnnc.constraints.newton``) predicts on nvidia/h100-sxm and cpu/x86-avx2 (a 64-core EPYC) for
  that method and iteration count -- ESTIMATES from datasheet peaks, not measurements (no GPU ran
  here).  The model costs kernels that form the Jacobians from the step's matrices; the torch
  reference runs the cell's IR Jacobian graph (``rnnc.ir.jvp``) as torch calls on ``[T*B, D, ...]``
  tensors, which is why it is far slower than the model.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from _common import best_time, fmt_time, markdown_table, page_header, ratio, write_page

import rnnc
from rnnc.backends.cstyle.newton_scan import CScan
from rnnc.constraints import ProblemSpec
from rnnc.constraints.newton import estimate_newton
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


def estimate(kind: str, rnn: torch.nn.Module, steps: int, iters: int, method: str, tag: str) -> float:
    spec = ProblemSpec(kind, rnn.hidden_size, batch=1, dtype="fp32", seq_len=steps, input_size=rnn.input_size)
    return estimate_newton(spec, get(tag), iters, method).speedup


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
        for method in ("full", "diag", "block"):
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
        if best:
            c_runner = NewtonProgram(program, dict.fromkeys(keys, best), scan=CScan())
            err = max(err, float((c_runner(x)[0] - want).abs().max()))
            row["newton C scan"] = best_time(lambda: c_runner(x), budget_s=0.5, max_reps=3)
    row["newton"] = times[best] if best else None
    row["method"] = best or "fallback"
    row["newton / seq"] = row["seq"] / row["newton"] if best else None
    row["max err"] = err
    if best:
        row["H100 est."] = estimate(kind, rnn, steps, row[f"iters {best}"], best, "nvidia/h100-sxm")
        row["64-core est."] = estimate(kind, rnn, steps, row[f"iters {best}"], best, "cpu/x86-avx2")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="256,4096")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "newton.md"))
    args = ap.parse_args()
    rows = [point(name, rnn, int(t)) for t in args.steps.split(",") for name, rnn in cells()]
    cols = ["cell", "T", "iters full", "iters diag", "iters block", "method", "seq", "newton", "newton C scan",
            "newton / seq", "H100 est.", "64-core est.", "max err"]
    est = lambda v: f"{v:.2f}x (est.)"  # noqa: E731
    fmt = {"seq": fmt_time, "newton": fmt_time, "newton C scan": fmt_time, "newton / seq": ratio, "H100 est.": est,
           "64-core est.": est, "max err": lambda v: f"{v:.0e}"}
    write_page(args.out, [page_header("Parallel-in-time Newton vs sequential evaluation"),
                          "Batch 1, fp32. An empty iteration count: that method did not converge "
                          "(finished step by step).", "",
                          markdown_table(rows, cols, fmt), ""])


if __name__ == "__main__":
    main()
