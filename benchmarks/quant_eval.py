"""Outlier-aware PTQ on real models: accuracy, size and onnxruntime latency vs fp32 and naive int8.

    .venv/bin/python benchmarks/quant_eval.py                 # everything (a few minutes on 2 cores)
    .venv/bin/python benchmarks/quant_eval.py --only silero   # silero | g2p | sktime
    .venv/bin/python benchmarks/quant_eval.py --out bench_out/quant.md

* Silero VAD: the speech sample streamed chunk by chunk (512 samples, state carried) through
  onnxruntime; calibration uses the first 10 s only, accuracy is reported on all frames and on
  the held-out 10-30 s.  ``naive ORT`` is ``onnxruntime.quantization.quantize_dynamic`` (int8
  weights) on the flat op18 graph with its ``If`` inlined (it skips ``If`` branches otherwise).
* g2p-en: the real GRU encoder/decoder weights, decoder teacher-forced on the fp32 greedy
  decode of a fixed word list; agreement of argmax phoneme ids with fp32.  Calibrated on a
  different word list.
* sktime: LSTM/GRU/minGRU/Mamba-S6 classifiers trained here; test accuracy through the quantized
  IR in the interpreter, with and without an injected 50x outlier channel (fp32 unchanged).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quant_models as qm  # noqa: E402

import rnnc  # noqa: E402
from rnnc.data import silero_onnx_path, speech_frame_labels, speech_sample  # noqa: E402
from rnnc.frontend.silero import CHUNK, CONTEXT, trace_silero  # noqa: E402

TMP = Path(tempfile.mkdtemp(prefix="rnnc_quant_"))
VARIANTS = [("w8a8", o) for o in ("none", "keep", "smooth", "rotate", "clip")] + [
    ("w8", "none"), ("w4a8", "none"), ("w4a8", "keep"), ("w4", "none"), ("w4", "rotate")]
# accuracy vs ONNX size per model, one dict per table row, written by --json for `rnnc bench`'s plot
RECORDS: list[dict] = []


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) identity; ties get average ranks."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- Silero VAD
def silero_stream(path: Path, audio: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, float]:
    """Speech probability per chunk and the median ms per chunk."""
    s = session(path)
    state = np.zeros((2, 1, 128), np.float32)
    ctx = np.zeros((1, CONTEXT), np.float32)
    probs, times = [], []
    for start in range(0, len(audio) - CHUNK + 1, CHUNK):
        chunk = audio[None, start:start + CHUNK]
        t0 = time.perf_counter()
        out = s.run(None, {names[0]: np.concatenate([ctx, chunk], 1), names[1]: state})
        times.append(time.perf_counter() - t0)
        probs.append(out[0][0, 0])
        state = out[1]
        ctx = chunk[:, -CONTEXT:]
    return np.array(probs), 1e3 * float(np.median(times))


def eval_silero(rows: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    audio, rate = speech_sample()
    program = trace_silero()
    calib_audio = torch.from_numpy(audio[:10 * rate])
    xs, states = [], []
    state, ctx = torch.zeros(2, 1, 128), torch.zeros(1, CONTEXT)
    for start in range(0, len(calib_audio) - CHUNK + 1, CHUNK):  # fp32 stream: real states to calibrate on
        chunk = calib_audio[None, start:start + CHUNK]
        x = torch.cat([ctx, chunk], dim=1)
        xs.append(x)
        states.append(state)
        _, state = program.run(x, state)
        ctx = chunk[:, -CONTEXT:]
    calib = [(torch.cat(xs), torch.cat(states, dim=1))]
    held = (10 * rate) // CHUNK
    flat = qm.silero_flat_onnx(silero_onnx_path(), TMP / "silero_flat.onnx")
    quantize_dynamic(str(flat), str(TMP / "silero_naive.onnx"), weight_type=QuantType.QInt8)
    results = []
    fp_onnx = TMP / "silero_rnnc_fp32.onnx"
    rnnc.export_onnx(program, None, fp_onnx)
    for label, path, names in (("fp32 (Silero ONNX)", flat, ("input", "state")),
                               ("fp32 (rnnc export)", fp_onnx, ("x", "state")),
                               ("naive ORT dynamic int8", TMP / "silero_naive.onnx", ("input", "state"))):
        results.append((label, *silero_stream(path, audio, names), os.path.getsize(path)))
    stats = None
    ablation = [("w8a8", "none", True), ("w8a8", "keep", True), ("w8a8", "clip", True)]
    for scheme, outliers, per_tensor in [(s, o, False) for s, o in VARIANTS] + ablation:
        q = rnnc.quantize(program, calib, scheme, outliers, stats=stats, progress=False, per_tensor=per_tensor)
        stats = q.stats
        path = TMP / f"silero_{scheme}_{outliers}.onnx"
        q.export_onnx(path)
        label = f"rnnc {scheme} / {outliers}" + (" (ablation: per-tensor weights)" if per_tensor else "")
        results.append((label, *silero_stream(path, audio, ("x", "state")), os.path.getsize(path)))
    labels = speech_frame_labels(len(results[0][1]))
    base_ms, base_size = results[1][2], results[1][3]
    rows += ["", "### Silero VAD (real speech, 30 s, 937 frames; onnxruntime, 1 thread)", "",
             "| model | frame acc | ROC-AUC | acc held-out 10-30 s | ONNX size | ms/chunk | speed-up vs fp32 |",
             "|---|---|---|---|---|---|---|"]
    for label, probs, ms, size in results:
        acc = float(((probs > 0.5) == labels).mean())
        acc_h = float(((probs[held:] > 0.5) == labels[held:]).mean())
        RECORDS.append({"model": "silero", "variant": label, "metric": "frame acc", "accuracy": acc,
                        "size_kib": size / 1024, "ms": ms})
        rows.append(f"| {label} | {acc:.3f} | {auc(labels, probs):.3f} | {acc_h:.3f} | {size / 1024:.0f} KiB "
                    f"| {ms:.3f} | {base_ms / ms:.2f}x |")
    rows.append(f"\nfp32 rnnc export size {base_size / 1024:.0f} KiB (the Silero file holds the 8 kHz model too).")


# --------------------------------------------------------------------------- g2p-en
def eval_g2p(rows: list[str]) -> None:
    model = qm.G2P()
    g, dec = qm.g2p_inputs(model)
    program = rnnc.trace(model, (g, dec))
    with torch.no_grad():
        ref = model(g, dec)
    calib_words = ["model", "weights", "sequence", "language", "voice", "table", "quantum", "zebra", "yellow",
                   "jump", "fox", "waltz", "biology", "xylophone", "keyboard"]
    saved = qm.WORDS[:]
    qm.WORDS[:] = calib_words
    cg, cdec = qm.g2p_inputs(model)
    qm.WORDS[:] = saved
    fp_path = TMP / "g2p_fp32.onnx"
    rnnc.export_onnx(program, None, fp_path)
    fp_ms = _ort_ms(fp_path, (g, dec))
    RECORDS.append({"model": "g2p", "variant": "fp32", "metric": "argmax agreement", "accuracy": 1.0,
                    "size_kib": os.path.getsize(fp_path) / 1024, "ms": fp_ms})
    rows += ["", "### g2p-en GRU encoder/decoder (real weights, 20 words, 13 decoder steps)", "",
             "Grapheme ids use g2p-en's vocabulary order (<pad>, <unk>, </s>, a-z), which the checkpoint does "
             "not store; its 29-row embedding matches it.", "",
             "| model | argmax agreement | max abs logit err | ONNX size | ms/batch (ORT) |", "|---|---|---|---|---|",
             f"| fp32 | 1.000 | 0 | {os.path.getsize(fp_path) / 1024:.0f} KiB | {fp_ms:.2f} |"]
    stats = None
    for scheme, outliers in VARIANTS:
        q = rnnc.quantize(program, [(cg, cdec)], scheme, outliers, stats=stats, progress=False)
        stats = q.stats
        out = q.run(g, dec)
        agree = float((out.argmax(-1) == ref.argmax(-1)).float().mean())
        path = TMP / f"g2p_{scheme}_{outliers}.onnx"
        q.export_onnx(path)
        ms = _ort_ms(path, (g, dec))
        RECORDS.append({"model": "g2p", "variant": f"rnnc {scheme} / {outliers}", "metric": "argmax agreement",
                        "accuracy": agree, "size_kib": os.path.getsize(path) / 1024, "ms": ms})
        rows.append(f"| rnnc {scheme} / {outliers} | {agree:.3f} | {float((out - ref).abs().max()):.3f} | "
                    f"{os.path.getsize(path) / 1024:.0f} KiB | {ms:.2f} |")


def _ort_ms(path: Path, inputs: tuple[torch.Tensor, ...], reps: int = 20) -> float:
    s = session(path)
    feeds = {}
    for i, meta in enumerate(s.get_inputs()):
        if i < len(inputs):
            feeds[meta.name] = inputs[i].numpy()
        else:  # exposed initial states: zeros
            batch = inputs[0].shape[0]
            feeds[meta.name] = np.zeros([d if isinstance(d, int) else batch for d in meta.shape], np.float32)
    s.run(None, feeds)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        s.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


# --------------------------------------------------------------------------- sktime
def eval_sktime(rows: list[str], quick: bool = False) -> None:
    rows += ["", "### Tiny classifiers trained on sktime sets (quantized IR in the interpreter)", "",
             "Each cell: test accuracy / relative logit error vs fp32 (||y_q - y|| / ||y||). `x50`, `x300`: one "
             "activation channel scaled and compensated in the next weights, so fp32 is unchanged (LSTM/GRU/minGRU: "
             "the cell's input x; Mamba: the head's input). ORT ms: the whole test set through rnnc's fp32 export "
             "vs the w8a8/keep export.", "",
             "| set | cell | outlier | fp32 | w8a8 none | keep | smooth | rotate | clip | w4a8 keep "
             "| ORT ms fp32 -> int8 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    gp = qm.load_set("GunPoint")
    sets = [("JapaneseVowels", qm.load_set("JapaneseVowels"), ("lstm", "gru", "mingru", "mamba")),
            ("GunPoint/5", (gp[0][:, ::5], gp[1], gp[2][:, ::5], gp[3], gp[4]), ("lstm", "gru"))]
    for name, data, kinds in sets[:1] if quick else sets:
        xtr, _, xte, yte, _ = data
        for kind in kinds:
            base = qm.train(kind, data, epochs=25)
            for factor in (1.0, 50.0, 300.0):
                model = qm.inject_outlier(base, factor=factor) if factor > 1 else base
                program = rnnc.trace(model, (xte[:2],))
                with torch.no_grad():
                    ref = model(xte)
                fp = float((ref.argmax(-1) == yte).float().mean())
                cells, stats = [], None
                for scheme, outliers in [("w8a8", o) for o in ("none", "keep", "smooth", "rotate", "clip")] + [
                        ("w4a8", "keep")]:
                    q = rnnc.quantize(program, [xtr[:96]], scheme, outliers, stats=stats, progress=False)
                    stats = q.stats
                    out = q.run(xte)
                    acc = float((out.argmax(-1) == yte).float().mean())
                    cells.append(f"{acc:.3f} / {float((out - ref).norm() / ref.norm()):.1%}")
                    if (scheme, outliers) == ("w8a8", "keep"):
                        q.export_onnx(TMP / "clf_q.onnx")
                rnnc.export_onnx(program, None, TMP / "clf_fp.onnx")
                ms = f"{_ort_ms(TMP / 'clf_fp.onnx', (xte,), 5):.1f} -> {_ort_ms(TMP / 'clf_q.onnx', (xte,), 5):.1f}"
                tag = f"x{factor:.0f}" if factor > 1 else "-"
                rows.append(f"| {name} | {kind} | {tag} | {fp:.3f} | " + " | ".join(cells) + f" | {ms} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("silero", "g2p", "sktime"))
    ap.add_argument("--quick", action="store_true", help="sktime: JapaneseVowels only")
    ap.add_argument("--out", help="also write the Markdown here")
    ap.add_argument("--json", help="also write accuracy/size records (Silero, g2p) here, for `rnnc bench`'s plot")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = [f"## Quantization (rnnc {rnnc.__version__}, onnxruntime {ort.__version__}, torch {torch.__version__})"]
    for name, fn in (("silero", eval_silero), ("g2p", eval_g2p), ("sktime", eval_sktime)):
        if args.only in (None, name):
            t0 = time.time()
            fn(rows, args.quick) if name == "sktime" else fn(rows)
            print(f"[{name}: {time.time() - t0:.0f} s]", file=sys.stderr)
    text = "\n".join(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(RECORDS, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
