"""Whole models as one CUDA module, compile-only: launches, ptxas resources and C-twin numerics.

    .venv/bin/python benchmarks/cuda_whole_model.py --out docs/benchmarks/cuda_whole_model.md

For each model of ``benchmarks/whole_model.py`` (Silero VAD chunk, g2p-en GRU encoder-decoder,
the sktime LSTM classifier, a conv + GRU front end) at batch 1 and 16:
``rnnc.backends.cstyle.whole_cuda.cuda_module`` for nvidia/h100-sxm (sm_90) -- every op and
layer as kernels of one module, in launch order.  Columns: launches (op kernels + layer
kernels), the largest register count and the total spill bytes ptxas reports over the module's
kernels, the largest op grid, and the C twin's max |difference| from the model in torch (the same
loop nest in the C dialect, run on this CPU).  No GPU runs here: no times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import whole_model as wm  # noqa: E402
from _common import markdown_table, page_header  # noqa: E402

import rnnc  # noqa: E402
from rnnc.backends.cstyle.whole_cuda import cuda_module  # noqa: E402
from rnnc.targets import get  # noqa: E402

COLS = ["model", "B", "launches", "op kernels", "layer launches", "max registers", "spill bytes", "max op grid",
        "twin err"]


def _first(v):
    return v[0] if isinstance(v, (tuple, list)) else v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="silero,g2p,sktime,convgru")
    ap.add_argument("--out", help="also write the Markdown page here")
    args = ap.parse_args()
    target = get("nvidia/h100-sxm")
    rows = []
    for name, module, _, make in wm.models(args.only):
        for b in (1, 16):
            inputs = make(b)
            m = cuda_module(rnnc.trace(module, inputs), inputs, target)
            with torch.no_grad():
                err = float((_first(m.twin(*inputs)) - _first(module(*inputs))).abs().max())
            ops = [ln for ln in m.launches if not ln.layer]
            res = list(m.resources.values())
            rows.append({"model": name, "B": b, "launches": len(m.launches), "op kernels": len(ops),
                         "layer launches": len(m.launches) - len(ops),
                         "max registers": max((r.registers for r in res), default="-"),
                         "spill bytes": sum(r.spill_stores + r.spill_loads for r in res) if res else "-",
                         "max op grid": max((ln.grid for ln in ops), default=0), "twin err": f"{err:.0e}"})
            print(rows[-1], file=sys.stderr, flush=True)
    text = page_header("Whole models as one CUDA module (sm_90, compile-only)") + \
        "ptxas resources from nvcc for sm_90; numerics from the module's C twin on this CPU.\n\n" + \
        markdown_table(rows, COLS, {}) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
