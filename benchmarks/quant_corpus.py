"""``scheme="auto"`` on every architecture of the frontend corpus: does the search run, and what does it pick?

    .venv/bin/python benchmarks/quant_corpus.py      # writes docs/benchmarks/quant_corpus.md

The corpus (``tests/frontend/corpus``: CRNNs, DeepSpeech2, speaker encoders, tied-weight LMs,
seq2seq with attention, Tacotron-style decoders, packed BiLSTM taggers, Mamba-like blocks, ...)
holds models written the way public repositories write them, with random weights -- none of
them was used to develop the quantizer, so this is the "models it was never tuned on" check for
robustness (accuracy on trained models is ``benchmarks/quant_auto.py``'s).  Each model is traced
at batch 2, length 16, calibrated on batches of 2 and 3, judged on one of 4 (relative L2
distortion <= 0.05), and the chosen model is exported to ONNX and run in onnxruntime against the quantized
IR on unseen data (batch 5, or the example's batch where the model fixes it).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests" / "frontend"), str(ROOT / "tests" / "frontend" / "corpus")]

from _common import machine_header, write_page  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "quant_corpus.md"
BUDGET = 0.05


def _flat(out: object) -> list[np.ndarray]:
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in _flat(o)]
    return [np.asarray(out.detach() if hasattr(out, "detach") else out)]


def run(name: str) -> dict:
    from corpus import CORPUS

    import rnnc

    entry = CORPUS[name]
    length = max(entry.min_length, -(-16 // entry.length_multiple) * entry.length_multiple)
    torch.manual_seed(0)
    model = entry.build().eval()
    t0 = time.time()
    try:
        program = rnnc.trace(model, tuple(entry.inputs(2, length)))
        free = isinstance(program.graph.inputs[0][1].shape[0], str)  # DPRNN keeps its example's batch
        calib = [tuple(entry.inputs(b if free else 2, length)) for b in (2, 3, 4)]  # (inputs are seeded per size)
        q = rnnc.quantize(program, calib, "auto", max_loss=BUDGET, progress=False)
    except rnnc.RnncError as exc:
        return {"model": name, "result": f"refused: {exc}".replace("|", "/"), "seconds": time.time() - t0}
    c = q.auto.chosen
    sess = ort.InferenceSession(q.export_onnx().SerializeToString(), providers=["CPUExecutionProvider"])
    unseen = tuple(entry.inputs(5 if free else 2, length))
    feeds = {}
    for i, meta in enumerate(sess.get_inputs()):
        feeds[meta.name] = (unseen[i].numpy() if i < len(unseen) else
                            np.zeros([d if isinstance(d, int) else 5 for d in meta.shape], np.float32))
    got = sess.run(None, feeds)
    want = _flat(q.run(*unseen))
    err = max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=False))
    levels = {}
    for v in c.plan.values():
        levels[v] = levels.get(v, 0) + 1
    return {"model": name, "result": "ok", "plans": len(q.auto.trials), "loss": c.loss,
            "chosen": ", ".join(f"{n} {lv}" for lv, n in levels.items()), "recipe": c.recipe,
            "smaller": q.auto.fp32_bytes / max(c.q_bytes, 1), "speed": (q.auto.fp32_ms or 0) / (c.latency_ms or 1),
            "ort_vs_ir": err, "seconds": time.time() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(OUT), help=f"where the Markdown goes (default {OUT})")
    ap.add_argument("--only", default="", help="comma-separated corpus names (default: all)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    from corpus import CORPUS

    names = [n for n in args.only.split(",") if n] or list(CORPUS)
    unknown = [n for n in names if n not in CORPUS]
    if unknown:
        ap.error(f"unknown corpus entries {unknown}; known: {', '.join(CORPUS)}")
    rows = []
    for name in names:
        rows.append(run(name))
        print(f"[{name}: {rows[-1]['seconds']:.0f} s] {rows[-1]['result'][:100]}", file=sys.stderr)
    ok = [r for r in rows if r["result"] == "ok"]
    lines = machine_header("scheme auto on the frontend corpus: robustness on models it was never tuned on")
    lines += [f"Written by `benchmarks/quant_corpus.py` (see its docstring). Budget: relative L2 distortion "
              f"<= {BUDGET} on a held-out batch; speed: onnxruntime, one sample per call, fp32 time / chosen time; "
              "`ORT vs IR`: max abs difference between the chosen model's ONNX export in onnxruntime and the "
              "quantized IR on unseen inputs (batch 5; DPRNN: its fixed batch 2).", "",
              f"{len(ok)} of {len(rows)} models searched and exported; the others say why.", "",
              "| model | plans | loss | chosen plan (sites) | outliers[+gptq] | smaller | speed | ORT vs IR | s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["result"] != "ok":
            lines.append(f"| {r['model']} | {r['result']} | | | | | | | {r['seconds']:.0f} |")
            continue
        lines.append(f"| {r['model']} | {r['plans']} | {r['loss']:.2g} | {r['chosen']} | {r['recipe']} | "
                     f"{r['smaller']:.1f}x | {r['speed']:.2f}x | {r['ort_vs_ir']:.1e} | {r['seconds']:.0f} |")
    write_page(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
