"""rnnc's C backend vs PyTorch eager, torch.compile and onnxruntime on this CPU (fp32).

    .venv/bin/python benchmarks/cpu_rnn.py                   # full grid (slow: torch.compile warm-ups)
    .venv/bin/python benchmarks/cpu_rnn.py --grid reduced    # B in {1,16}, T in {1,128}, H in {128,512,1024}
    .venv/bin/python benchmarks/cpu_rnn.py --cells lstm --out table.md
    .venv/bin/python benchmarks/cpu_rnn.py --cells lstm --batch 16 --steps 128   # one slice of the grid
    .venv/bin/python benchmarks/cpu_rnn.py --grid reduced --tune 6 --target cpu/x86-avx2   # tuned vs untuned,
                                             # AVX2 (x86-64-v3) kernels; writes docs/benchmarks/cpu_rnn_tuned.md

Every point runs all systems in one process, interleaved, and reports the best of several
repetitions, so the ratios compare like with like even on a shared machine.  Columns:

* ``rnnc``: full sequence through ``CompiledProgram`` (fused C kernel, OpenMP), built for
  ``--target`` (its ``-march``: ``cpu/x86-avx2`` is x86-64-v3 code, runnable on AVX-512 hosts);
  untuned, i.e. what ``rnnc.compile`` builds without a tuning record;
* ``tuned`` (``--tune N``): after ``rnnc tune`` of the point with N candidates into a fresh
  database, the record ``rnnc.compile`` would now use; ``tuned/untuned`` > 1 means faster;
  ``rnnc step`` (T=1 rows only): ``Stream.step`` latency, the real-time API;
* ``eager``: ``nn.LSTM``/``nn.GRU`` (oneDNN); ``compile``: ``torch.compile`` of a hand-written
  cell, stepped in Python; ``ort``: onnxruntime on ``torch.onnx.export`` of the same layer;
* ``vs best``: fastest baseline time / rnnc time (> 1 means rnnc is faster);
* ``mem-bound``: for B=1, time per step if every step streamed the recurrent weights from
  DRAM at the measured copy bandwidth, as a fraction of the measured time per step (can exceed
  1 when the weights stay in the L2/L3 caches);
* ``int8``: the same C kernel with weight-only int8 weights (``rnnc.quantize`` scheme ``w8``:
  per-channel scales; untuned, so the codes stream as int8 where the CPU cost model predicts a
  one-row step faster that way and are widened once at packing elsewhere), full sequence or,
  for T=1, the faster of that and ``Stream.step``; ``int8 vs fp32``: rnnc's fp32 time / int8
  time (> 1: int8 faster); ``int8 vs best``: fastest fp32 baseline / int8 time; ``int8 vs bound``
  (B=1): the fp32 DRAM bound per step (as in ``mem-bound``) / int8 time per step, > 1 means
  faster than any fp32 kernel that streams its recurrent weights from DRAM could be;
  ``int8 err``: max |int8 - eager| (quantization error, not a kernel error).
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable

import torch
from _common import (
    GRIDS,
    best_time,
    error,
    fmt_time,
    grid_parser,
    grid_points,
    interleaved_best,
    machine_header,
    markdown_table,
    ratio,
    write_outputs,
)

import rnnc
from rnnc.backends.cstyle.program import CompiledProgram
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS
from rnnc.targets import get as get_target

__all__ = ["GRIDS", "best_time", "bench_point", "fmt_time", "table"]  # tvm_cpu.py imports these from here
GATES = {"lstm": 4, "gru": 3}


def copy_bandwidth() -> float:
    """DRAM bandwidth in bytes/s from a 256 MiB tensor copy (read + write)."""
    a = torch.empty(64 * 1024 * 1024, dtype=torch.float32).fill_(1.0)
    b = torch.empty_like(a)
    t = best_time(lambda: b.copy_(a), 1.0, 10)
    return 2 * a.numel() * 4 / t


def hand_cell(kind: str) -> Callable:
    def lstm(x, h, c, w_ih, w_hh, b):
        i, f, g, o = (x @ w_ih.t() + h @ w_hh.t() + b).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def gru(x, h, c, w_ih, w_hh, b_ih, b_hh):
        xr, xz, xn = (x @ w_ih.t() + b_ih).chunk(3, 1)
        hr, hz, hn = (h @ w_hh.t() + b_hh).chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, c

    return lstm if kind == "lstm" else gru


def ort_session(layer: torch.nn.Module, hidden: int):
    import onnxruntime as ort

    buf = io.BytesIO()
    torch.onnx.export(layer, (torch.randn(1, 4, hidden),), buf, input_names=["x"], dynamo=False,
                      dynamic_axes={"x": {0: "B", 1: "T"}})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def int8_program(prog, hidden: int):
    """``prog`` with weight-only int8 weights (scheme ``w8``), calibrated on a fixed random input."""
    g = torch.Generator().manual_seed(1)
    return rnnc.quantize(prog, [torch.randn(2, 8, hidden, generator=g)], scheme="w8", progress=False).program


def tuned_program(prog, target, batch: int, steps: int, candidates: int) -> tuple[CompiledProgram, str]:
    """``prog`` built with the record a fresh ``rnnc tune`` of this point leaves (and its params)."""
    import tempfile

    from rnnc.autotune_db import Database
    from rnnc.tune import Tuner, layers_of, lookup_schedule

    db = Database(tempfile.mkdtemp(prefix="rnnc_bench_db_"))
    Tuner(target, "c", db=db, max_candidates=candidates, progress=False).tune(layers_of(prog, batch, steps))
    cell = prog.rnn_nodes()[0].attr("cells")[0]
    sched = lookup_schedule(cell, target.tag, "c", batch=batch, seq_len=steps, db=db)
    params = ", ".join(f"{k}={v}" for k, v in sched.params) or "untuned default"
    return CompiledProgram(prog, target, sched), params


def bench_point(kind: str, batch: int, steps: int, hidden: int, bw: float, use_compile: bool,
                int8: bool = True, target: str = "cpu/host", tune: int = 0) -> dict:
    torch.manual_seed(0)
    layer = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(hidden, hidden, batch_first=True).eval()
    mod = CELLS[kind].load_module_class()(hidden, hidden)
    with torch.no_grad():
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(mod, p).copy_(getattr(layer, f"{p}_l0"))
    cell, weights = mod.rnnc_layer()
    prog = rnn_program([cell], [[weights]])
    spec = get_target(target)
    compiled = CompiledProgram(prog, spec)
    compiled8 = CompiledProgram(int8_program(prog, hidden), spec) if int8 else None
    tuned, tuned_params = tuned_program(prog, spec, batch, steps, tune) if tune else (None, "")
    x = torch.randn(batch, steps, hidden)
    row: dict = {"cell": kind, "B": batch, "T": steps, "H": hidden}
    contenders: dict[str, Callable[[], object]] = {"rnnc": lambda: compiled(x)}
    with torch.no_grad():
        row["err"] = (compiled(x)[0] - layer(x)[0]).abs().max().item()
        if tuned is not None:
            contenders["tuned"] = lambda: tuned(x)
            row["tuned params"] = tuned_params
        if steps == 1:
            stream = compiled.stream(batch)
            contenders["rnnc step"] = lambda: stream.step(x[:, 0])
        if compiled8 is not None:
            row["int8 err"] = (compiled8(x)[0] - layer(x)[0]).abs().max().item()
            contenders["int8"] = lambda: compiled8(x)
            if steps == 1:
                stream8 = compiled8.stream(batch)
                contenders["int8 step"] = lambda: stream8.step(x[:, 0])
        contenders["eager"] = lambda: layer(x)
        sess = ort_session(layer, hidden)
        xn = x.numpy()
        contenders["ort"] = lambda: sess.run(None, {"x": xn})
        if use_compile:
            step = torch.compile(hand_cell(kind), dynamic=False)
            w = [layer.weight_ih_l0, layer.weight_hh_l0]
            bias = [layer.bias_ih_l0 + layer.bias_hh_l0] if kind == "lstm" else [layer.bias_ih_l0, layer.bias_hh_l0]
            h0 = torch.zeros(batch, hidden)

            def run_compiled():
                h, c = h0, h0
                for t in range(steps):
                    h, c = step(x[:, t], h, c, *w, *bias)
                return h

            contenders["compile"] = run_compiled
        row.update(interleaved_best(contenders))
    if "int8 step" in row:
        row["int8"] = min(row["int8"], row.pop("int8 step"))
    if "tuned" in row:
        row["tuned/untuned"] = row["rnnc"] / row["tuned"]
    base = [row[k] for k in ("eager", "compile", "ort") if k in row]
    ours = min(row["rnnc"], row.get("rnnc step", row["rnnc"]), row.get("tuned", row["rnnc"]))
    row["vs best"] = min(base) / ours
    if "int8" in row:
        row["int8 vs best"] = min(base) / row["int8"]
        row["int8 vs fp32"] = row["rnnc"] / row["int8"]
    if batch == 1:
        wbytes = GATES[kind] * hidden * hidden * 4
        row["mem-bound"] = (wbytes / bw) / (ours / steps)
        if "int8" in row:
            row["int8 vs bound"] = (wbytes / bw) / (row["int8"] / steps)
    return row


def table(rows: list[dict]) -> str:
    cols = ["cell", "B", "T", "H", "rnnc", "rnnc step", "tuned", "tuned/untuned", "eager", "compile", "ort", "vs best",
            "mem-bound", "err", "int8", "int8 vs fp32", "int8 vs best", "int8 vs bound", "int8 err", "tuned params"]
    formats = {**dict.fromkeys(("rnnc", "rnnc step", "tuned", "eager", "compile", "ort", "int8"), fmt_time),
               **dict.fromkeys(("vs best", "int8 vs fp32", "int8 vs best", "int8 vs bound", "tuned/untuned"), ratio),
               "mem-bound": lambda v: f"{v:.2f}", "err": error, "int8 err": error}
    return markdown_table(rows, cols, formats)


def main() -> None:
    ap = grid_parser(__doc__)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8-weight C kernel columns")
    ap.add_argument("--target", default="cpu/host", help="CPU target the C kernels are built for (its -march)")
    ap.add_argument("--tune", type=int, default=0, metavar="N",
                    help="also tune each point with N candidates and time the tuned kernel")
    args = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    bw = copy_bandwidth()
    rows = []
    for kind, batch, steps, hidden in grid_points(args):
        row = bench_point(kind, batch, steps, hidden, bw, not args.no_compile, not args.no_int8, args.target, args.tune)
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    flags = " ".join(get_target(args.target).cpu.march.split())
    text = "\n".join(machine_header("C backend vs torch eager, torch.compile, onnxruntime (fp32)")) + (
        f"\nCommand: `benchmarks/cpu_rnn.py {' '.join(sys.argv[1:])}`; kernels built for {args.target} "
        f"(-march={flags}); {len(os.sched_getaffinity(0))} cores, measured copy bandwidth {bw / 1e9:.1f} GB/s, "
        f"grid {args.grid}\n\n" + (
            "The baselines (eager, torch.compile, onnxruntime) use this CPU's own kernels; with kernels built "
            f"for {args.target} the ratios understate what that CPU itself would show.\n\n"
            if args.target != "cpu/host" else "") + table(rows))
    write_outputs(args, text, rows)


if __name__ == "__main__":
    main()
