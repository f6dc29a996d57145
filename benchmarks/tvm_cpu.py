"""rnnc's TVM backend vs PyTorch eager and rnnc's C backend on this CPU (fp32, LSTM/GRU).

    .venv/bin/python benchmarks/tvm_cpu.py                    # full grid
    .venv/bin/python benchmarks/tvm_cpu.py --grid reduced     # B in {1,16}, T in {1,128}, H in {128,512,1024}
    .venv/bin/python benchmarks/tvm_cpu.py --cells lstm --out table.md

Every point runs all systems in one process, interleaved, best of several repetitions (timing
helpers and flags: ``_common.py``, shared with ``cpu_rnn.py``).  Columns: ``tvm`` (full
sequence through the TVM build,
``rnnc.backends.tvm.compile_program``), ``eager`` (``nn.LSTM``/``nn.GRU``, oneDNN), ``c``
(rnnc's C backend), ``tvm/eager`` and ``tvm/c``: the other system's time / TVM's time (> 1
means TVM is faster), ``err``: max |TVM - eager| over the output.
"""

from __future__ import annotations

import os

import torch
from _common import error, fmt_time, grid_parser, grid_points, interleaved_best, markdown_table, ratio, write_outputs

from rnnc.ir import rnn_program
from rnnc.kernels import CELLS


def _c_backend(prog, threads: int):
    """rnnc's C backend for the same Program, or None if it cannot build here."""
    try:
        from rnnc.backends.cstyle.program import CompiledProgram

        return CompiledProgram(prog, threads=threads)
    except Exception as exc:  # another engineer's backend: report, do not abort the benchmark
        print(f"C backend unavailable: {exc}")
        return None


def bench_point(kind: str, batch: int, steps: int, hidden: int, threads: int = 0) -> dict:
    from rnnc.backends.tvm import compile_program

    torch.manual_seed(0)
    layer = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(hidden, hidden, batch_first=True).eval()
    mod = CELLS[kind].load_module_class()(hidden, hidden)
    with torch.no_grad():
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(mod, p).copy_(getattr(layer, f"{p}_l0"))
    cell, weights = mod.rnnc_layer()
    prog = rnn_program([cell], [[weights]])
    tvm_fn = compile_program(prog, batch=batch, threads=threads)
    c_fn = _c_backend(prog, threads)
    x = torch.randn(batch, steps, hidden)
    row: dict = {"cell": kind, "B": batch, "T": steps, "H": hidden}
    with torch.no_grad():
        row["err"] = (tvm_fn(x)[0] - layer(x)[0]).abs().max().item()
        contenders = {"tvm": lambda: tvm_fn(x), "eager": lambda: layer(x)}
        if c_fn is not None:
            contenders["c"] = lambda: c_fn(x)
        row.update(interleaved_best(contenders))
    row["tvm/eager"] = row["eager"] / row["tvm"]
    if "c" in row:
        row["tvm/c"] = row["c"] / row["tvm"]
    return row


def table(rows: list[dict]) -> str:
    cols = ["cell", "B", "T", "H", "tvm", "eager", "c", "tvm/eager", "tvm/c", "err"]
    formats = {"tvm": fmt_time, "eager": fmt_time, "c": fmt_time, "tvm/eager": ratio, "tvm/c": ratio, "err": error}
    return markdown_table(rows, cols, formats)


def main() -> None:
    ap = grid_parser(__doc__)
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for every system (0: all cores; 1 gives stable numbers on a loaded machine)")
    args = ap.parse_args()
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    os.environ.setdefault("TVM_NUM_THREADS", str(threads))
    rows = []
    for kind, batch, steps, hidden in grid_points(args):
        row = bench_point(kind, batch, steps, hidden, args.threads)
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    text = f"fp32, {threads} thread(s) per system, grid {args.grid}\n\n" + table(rows)
    write_outputs(args, text, rows, "TVM backend vs the C backend, torch eager and onnxruntime (fp32)")


if __name__ == "__main__":
    main()
