"""Chunkwise vs step-by-step for the matrix-state family on this CPU, and the Triton chunkwise
kernels' ptxas resources against the solver's predictions.

    .venv/bin/python benchmarks/chunkwise.py          # T in {256, 2048}; writes docs/benchmarks/chunkwise.md
    .venv/bin/python benchmarks/chunkwise.py --steps 256 --no-ptxas

Per cell (H=256, 4 heads, the module's default key width; batch 2), one process, interleaved,
best of several repetitions:

* ``torch step``: the module's forward, i.e. the reference step loop in torch;
* ``torch chunk``: ``kernels/<cell>/chunk.py`` (the chunkwise form in torch, C=64);
* ``rnnc C step``: the C backend's step-by-step kernel (``chunk=0``, the generic loop nest);
* ``rnnc C chunk``: the C backend's chunkwise kernel (``rnnc.lower.chunk``, C=64, the default);
* ``ort LinearAttn``: onnxruntime on rnnc's export (the layer as ``com.microsoft.LinearAttention``,
  onnxruntime's own chunk-capable kernel; the default export; mLSTM's layers stay a Scan: no ONNX
  operator computes its stabilisers, so that cell is empty);
* ``ort Scan``: onnxruntime on the export with ``linear_attention=False`` (a ``Scan`` of the step
  graph, projections hoisted out of the loop);
* ``chunk / step``: rnnc C step time / rnnc C chunk time (> 1: the chunk form is faster);
  ``LA / Scan``: ort Scan time / ort LinearAttention time.

The ptxas table: for each cell at H=256, 4 heads, batch 8, T=2048, fp32 on nvidia/h100-sxm
(sm_90), the solver's first schedule (chunk, value tile, warps) with its predicted registers
per thread and shared memory, and what Triton + ptxas reported for that kernel; then the
schedule after compiler feedback (``rnnc.backends.triton.aot.fit_schedule``).  Compile-only:
no GPU runs here, so there are no GPU timings on this page.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

import onnxruntime as ort
import torch
from _common import best_time, fmt_time, markdown_table, page_header, ratio, write_page

import rnnc
from rnnc.backends.cstyle import compile_program
from rnnc.ir import rnn_program
from rnnc.ir.printer import layer_key
from rnnc.kernels import CELLS

FAMILY = {"gla": {}, "retnet": {}, "hgrn2": {}, "deltanet": {}, "gated deltanet": {"gated": True}, "mamba2": {},
          "mlstm": {}}
HIDDEN, HEADS, BATCH, INPUT = 256, 4, 2, 256


def _module(label: str) -> torch.nn.Module:
    torch.manual_seed(0)
    name = label.split()[-1]
    return CELLS[name].load_module_class()(INPUT, HIDDEN, num_heads=HEADS, **FAMILY[label]).eval()


def time_point(label: str, steps: int) -> dict:
    name = label.split()[-1]
    module = _module(label)
    cell, weights = module.rnnc_layer()
    prog = rnn_program([cell], [[weights]])
    x = torch.randn(BATCH, steps, INPUT)
    chunked = importlib.import_module(f"rnnc.kernels.{name}.chunk").chunked
    params = dict(module.named_parameters())
    key = layer_key(cell)
    step_c = compile_program(prog, "cpu/host", {key: {"chunk": 0}})
    chunk_c = compile_program(prog, "cpu/host", {key: {"chunk": 64}})
    assert [b.kernel.meta["path"] for b in (*step_c.builds.values(), *chunk_c.builds.values())] == ["generic", "chunk"]
    sessions = {}
    for col, la in (("ort LinearAttn", True), ("ort Scan", False)):
        model = rnnc.export_onnx(prog, linear_attention=la)
        if la and "LinearAttention" not in {n.op_type for n in model.graph.node}:
            continue  # this cell's export is a Scan either way
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        sessions[col] = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inputs = sessions["ort Scan"].get_inputs()  # x, then the initial states the export exposes
    states = {i.name: torch.zeros(1, BATCH, *st.shape).numpy() for i, st in zip(inputs[1:], cell.states, strict=True)}
    feeds = {inputs[0].name: x.numpy(), **states}
    with torch.no_grad():
        ref = module(x)[0]
        err = max(float((step_c(x)[0] - ref).abs().max()), float((chunk_c(x)[0] - ref).abs().max()))
        row = {"cell": label, "T": steps,
               "torch step": best_time(lambda: module(x), budget_s=1.0, max_reps=5),
               "torch chunk": best_time(lambda: chunked(x, params, chunk_size=64, **module.hparams()), 1.0, 10),
               "rnnc C step": best_time(lambda: step_c(x), 1.0, 10),
               "rnnc C chunk": best_time(lambda: chunk_c(x), 1.0, 10)}
    for col, sess in sessions.items():
        row[col] = best_time(lambda sess=sess: sess.run(None, feeds), 1.0, 10)
        err = max(err, float(abs(sess.run(None, feeds)[0] - ref.numpy()).max()))
    row["max err"] = err
    row["chunk / step"] = row["rnnc C step"] / row["rnnc C chunk"]
    row["LA / Scan"] = row["ort Scan"] / row["ort LinearAttn"] if "ort LinearAttn" in row else None
    return row


def ptxas_rows() -> list[dict]:
    from rnnc.backends.triton import aot, kernel_at
    from rnnc.constraints import solve
    from rnnc.passes import plan_layer
    from rnnc.targets import get

    target = get("nvidia/h100-sxm")
    rows = []
    for label in FAMILY:
        cell = _module(label).rnnc_layer()[0]
        sched = solve(plan_layer(cell).problem(8, "float32", seq_len=2048), target)
        res = aot.compile_for(kernel_at(cell, sched), 90)
        fit = aot.fit_schedule(cell, target, 90, 8)
        last = fit.rounds[-1]
        p = dict(sched.params)
        rows.append({"cell": label, "schedule": f"C={p['chunk']} VT={p['value_tile']} warps={p['warps']}",
                     "pred regs": sched.resources.registers_per_thread, "ptxas regs": res.registers_per_thread,
                     "pred smem": sched.resources.shared_memory_per_block, "smem": res.shared_memory_per_block,
                     "spills": res.spill_stores + res.spill_loads,
                     "after feedback": f"{last['warps']} warps, {last['predicted_registers']} pred / "
                                       f"{last['allocated_registers']} alloc, {len(fit.rounds)} rounds"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="256,2048")
    ap.add_argument("--no-ptxas", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "chunkwise.md"))
    args = ap.parse_args()
    rows = [time_point(label, int(t)) for t in args.steps.split(",") for label in FAMILY]
    cols = ["cell", "T", "torch step", "torch chunk", "rnnc C step", "rnnc C chunk", "ort Scan", "ort LinearAttn",
            "chunk / step", "LA / Scan", "max err"]
    fmt = {c: fmt_time for c in cols[2:8]}
    fmt.update({"chunk / step": ratio, "LA / Scan": ratio, "max err": lambda v: f"{v:.0e}"})
    lines = [page_header("Chunkwise vs step-by-step: the matrix-state family"),
             f"H={HIDDEN}, {HEADS} heads, batch {BATCH}, input {INPUT}, fp32; chunk C=64.", "",
             markdown_table(rows, cols, fmt), ""]
    if not args.no_ptxas:
        prow = ptxas_rows()
        lines += ["## Triton chunkwise kernels: ptxas vs the solver (sm_90, compile only)", "",
                  "H=256, 4 heads, batch 8, T=2048, fp32, nvidia/h100-sxm; first schedule vs what ptxas reported, "
                  "then the schedule after compiler feedback.", "",
                  markdown_table(prow, ["cell", "schedule", "pred regs", "ptxas regs", "pred smem", "smem", "spills",
                                        "after feedback"], {}), ""]
    write_page(args.out, lines)


if __name__ == "__main__":
    main()
