"""Outlier-aware PTQ on real models: accuracy, size and onnxruntime latency vs fp32 and naive int8.

    .venv/bin/python benchmarks/quant_eval.py                 # everything (a few minutes on 2 cores)
    .venv/bin/python benchmarks/quant_eval.py --only silero   # silero | g2p | sktime | lstm
    .venv/bin/python benchmarks/quant_eval.py --out bench_out/quant.md

* Silero VAD: the speech sample streamed chunk by chunk (512 samples, state carried) through
  onnxruntime; calibration uses the first 10 s only, accuracy is reported on all frames and on
  the held-out 10-30 s.  ``naive ORT`` is ``onnxruntime.quantization.quantize_dynamic`` (int8
  weights) on the flat op18 graph with its ``If`` inlined (it skips ``If`` branches otherwise).
  Each variant is timed at batch 1 (the edge case, one chunk per call) and with 32 streams per
  call; ORT's profiler breaks a batch-1 call down by op type for fp32 and the int8 variants.
  Extra rows: static activation scales (QLinearConv chains), SmoothQuant folded or not, and the
  edge mix (STFT conv weight-only, tiny layers float).
* g2p-en: the real GRU encoder/decoder weights, decoder teacher-forced on the fp32 greedy
  decode of a fixed word list; agreement of argmax phoneme ids with fp32 (all positions and up
  to each word's </s>; and on a held-out word list), and ORT ms with the quantized input
  projections hoisted out of the Scan vs kept in it.  Extra rows: int4 accuracy knobs (int8
  recurrent weights, groups of 16, MSE scales, GPTQ rounding), group-wise int8, static scales.
  Calibrated on a different word list.
* sktime: LSTM/GRU/minGRU/Mamba-S6 classifiers trained here; test accuracy through the quantized
  IR in the interpreter, with and without an injected 50x outlier channel (fp32 unchanged).
  Timings are the best of 5 medians (the machine may be shared).
* lstm: w8a8 LSTM layers at H = 128..512 (random init): onnxruntime speed of the fused
  per-sequence form, the per-step Scan and onnxruntime's own ``quantize_dynamic``, vs fp32.
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
from _common import page_header  # noqa: E402

import rnnc  # noqa: E402
from rnnc.data import silero_onnx_path, speech_frame_labels, speech_sample  # noqa: E402
from rnnc.frontend.silero import CHUNK, CONTEXT, chunk_inputs, trace_silero  # noqa: E402

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


def silero_batch_us(path: Path, audio: np.ndarray, names: tuple[str, str], batch: int = 32) -> float:
    """Median microseconds per chunk when ``batch`` streams run in one call (a server, or a
    device handling several microphones): the same model, its per-call overhead shared."""
    s = session(path)
    starts = np.linspace(0, len(audio) - CHUNK - CONTEXT, batch).astype(int)
    x = np.stack([audio[i:i + CHUNK + CONTEXT] for i in starts]).astype(np.float32)
    feeds = {names[0]: x, names[1]: np.zeros((2, batch, 128), np.float32)}
    for _ in range(5):
        s.run(None, feeds)
    times = []
    for _ in range(40):
        t0 = time.perf_counter()
        s.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return 1e6 * float(np.median(times)) / batch


def op_profile(path: Path, names: tuple[str, str], runs: int = 300) -> tuple[int, list[tuple[str, float, int]]]:
    """ORT's own profile of one streaming call (batch 1): node count and kernel microseconds per
    op type (mean per call; profiling itself inflates small kernels, compare shares not sums)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = str(TMP / f"prof_{path.stem}")
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {names[0]: np.zeros((1, CHUNK + CONTEXT), np.float32), names[1]: np.zeros((2, 1, 128), np.float32)}
    for _ in range(runs):
        s.run(None, feeds)
    events = json.loads(Path(s.end_profiling()).read_text())
    per: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per.setdefault(e["args"]["op_name"], []).append(e["dur"])
    table = sorted(((op, sum(v) / runs, round(len(v) / runs)) for op, v in per.items()), key=lambda r: -r[1])
    return sum(n for _, _, n in table), table


#: Silero variants beyond VARIANTS: (label, scheme, outliers, options)
SILERO_EXTRA = [
    ("rnnc w8a8 / smooth, fold off (run-time Mul)", "w8a8", "smooth", {"fold": False}),
    ("rnnc w8a8 / none, static scales (QLinearConv chain)", "w8a8", "none", {"static": True}),
    ("rnnc w8a8 / smooth, static scales", "w8a8", "smooth", {"static": True}),
    ("rnnc w8a8 / none, static, STFT weight-only, <1k-weight layers float (edge)", "w8a8", "none",
     {"static": True, "weight_only": ("stft.forward_basis_buffer",), "min_weight": 1024}),
    ("rnnc w8a8 / smooth, static, STFT weight-only, <1k-weight layers float (edge)", "w8a8", "smooth",
     {"static": True, "weight_only": ("stft.forward_basis_buffer",), "min_weight": 1024}),
]


def silero_calibration(program: rnnc.Program, audio: np.ndarray, rate: int) -> list[tuple[torch.Tensor, ...]]:
    """The first 10 s streamed through the fp32 program: every chunk with the real state it met."""
    return [chunk_inputs(program.run, audio, 10, rate)]


def eval_silero(rows: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    audio, rate = speech_sample()
    program = trace_silero()
    calib = silero_calibration(program, audio, rate)
    held = (10 * rate) // CHUNK
    flat = qm.silero_flat_onnx(silero_onnx_path(), TMP / "silero_flat.onnx")
    quantize_dynamic(str(flat), str(TMP / "silero_naive.onnx"), weight_type=QuantType.QInt8)
    results = []
    fp_onnx = TMP / "silero_rnnc_fp32.onnx"
    rnnc.export_onnx(program, None, fp_onnx)
    paths: dict[str, tuple[Path, tuple[str, str]]] = {}
    for label, path, names in (("fp32 (Silero ONNX)", flat, ("input", "state")),
                               ("fp32 (rnnc export)", fp_onnx, ("x", "state")),
                               ("naive ORT dynamic int8", TMP / "silero_naive.onnx", ("input", "state"))):
        results.append((label, *silero_stream(path, audio, names), silero_batch_us(path, audio, names),
                        os.path.getsize(path)))
        paths[label] = (path, names)
    stats = None
    ablation = [("w8a8", "none", True), ("w8a8", "keep", True), ("w8a8", "clip", True)]
    runs = [(f"rnnc {s} / {o}", s, o, {}) for s, o in VARIANTS] + SILERO_EXTRA + [
        (f"rnnc {s} / {o} (ablation: per-tensor weights)", s, o, {"per_tensor": True}) for s, o, _ in ablation]
    for k, (label, scheme, outliers, options) in enumerate(runs):
        q = rnnc.quantize(program, calib, scheme, outliers, stats=stats, progress=False, **options)
        stats = q.stats
        path = TMP / f"silero_{k}_{scheme}_{outliers}.onnx"
        q.export_onnx(path)
        results.append((label, *silero_stream(path, audio, ("x", "state")),
                        silero_batch_us(path, audio, ("x", "state")), os.path.getsize(path)))
        paths[label] = (path, ("x", "state"))
    labels = speech_frame_labels(len(results[0][1]))
    base_ms, base_us, base_size = results[1][2], results[1][3], results[1][4]
    rows += ["", "### Silero VAD (real speech, 30 s, 937 frames; onnxruntime, 1 thread)", "",
             "Batch 1: the edge case, one 32 ms chunk per call with the state carried (median ms per call). "
             "Batch 32: 32 streams per call (us per chunk), the same model with its per-call overhead shared.", "",
             "| model | frame acc | ROC-AUC | acc held-out 10-30 s | ONNX size | size vs fp32 | ms/chunk (B=1) "
             "| speed-up B=1 | us/chunk (B=32) | speed-up B=32 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, probs, ms, us, size in results:
        acc = float(((probs > 0.5) == labels).mean())
        acc_h = float(((probs[held:] > 0.5) == labels[held:]).mean())
        RECORDS.append({"model": "silero", "variant": label, "metric": "frame acc", "accuracy": acc,
                        "size_kib": size / 1024, "ms": ms})
        rows.append(f"| {label} | {acc:.3f} | {auc(labels, probs):.3f} | {acc_h:.3f} | {size / 1024:.0f} KiB "
                    f"| {base_size / size:.1f}x | {ms:.3f} | {base_ms / ms:.2f}x | {us:.1f} | {base_us / us:.2f}x |")
    rows.append(f"\nfp32 rnnc export size {base_size / 1024:.0f} KiB (the Silero file holds the 8 kHz model too).")
    rows += ["", "Where a batch-1 call's time goes (ORT profiler, kernel us per call by op type; profiling "
             "inflates small kernels, so compare within a column):", ""]
    profiled = ["fp32 (rnnc export)", "rnnc w8a8 / none", SILERO_EXTRA[1][0], SILERO_EXTRA[3][0]]
    tables = [op_profile(*paths[label]) for label in profiled]
    rows += ["| " + " | ".join(["rank"] + [f"{lbl} ({n} nodes)" for lbl, (n, _) in zip(profiled, tables,
                                                                                     strict=True)]) + " |",
             "|" + "---|" * (len(profiled) + 1)]
    for r in range(8):
        cells = [f"{t[r][0]} {t[r][1]:.1f} us x{t[r][2]}" if r < len(t) else "" for _, t in tables]
        rows.append(f"| {r + 1} | " + " | ".join(cells) + " |")
    rows.append("| total | " + " | ".join(f"{sum(v for _, v, _ in t):.0f} us" for _, t in tables) + " |")


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
    qm.WORDS[:] = HELD_WORDS  # a third list, never looked at while choosing recipes: checks they generalise
    hg, hdec = qm.g2p_inputs(model)
    qm.WORDS[:] = saved
    with torch.no_grad():
        held_target = model(hg, hdec).argmax(-1)
    fp_path = TMP / "g2p_fp32.onnx"
    rnnc.export_onnx(program, None, fp_path)
    fp_ms = _ort_ms(fp_path, (g, dec))
    fp_size = os.path.getsize(fp_path)
    target = ref.argmax(-1)
    ends = (target == qm.EOS).int()
    valid = (torch.cumsum(ends, 1) - ends) == 0  # each word's decode up to and including its first </s>
    RECORDS.append({"model": "g2p", "variant": "fp32", "metric": "argmax agreement", "accuracy": 1.0,
                    "size_kib": fp_size / 1024, "ms": fp_ms})
    rows += ["", "### g2p-en GRU encoder/decoder (real weights, 20 words, 13 decoder steps)", "",
             "Grapheme ids use g2p-en's vocabulary order (<pad>, <unk>, </s>, a-z), which the checkpoint does "
             "not store; its 29-row embedding matches it. Agreement: argmax phoneme ids equal to fp32's, over all "
             f"{target.numel()} positions and over the {int(valid.sum())} up to each word's first </s> (the rest "
             "is decoding past the end); held-out: all 390 positions of 30 other words, never used to choose a "
             "recipe. ORT ms: the whole batch, quantized input projections hoisted out of the "
             "Scan (one GEMM over all steps, `hoist=\"all\"`) vs kept in the loop (fp32 uses ONNX's native GRU); "
             "the default export hoists all but the dynamic (per-step scale) ones. Timing: the best of 5 medians "
             "of 20 calls (a shared machine).", "",
             "| model | argmax agreement | up to </s> | held-out words | max abs logit err | ONNX size | size vs fp32 "
             "| ms hoisted | ms in-loop |", "|---|---|---|---|---|---|---|---|---|",
             f"| fp32 | 1.000 | 1.000 | 1.000 | 0 | {fp_size / 1024:.0f} KiB | 1.0x | {fp_ms:.2f} | {fp_ms:.2f} |"]
    stats = None
    runs = [(f"rnnc {s} / {o}", s, o, {}) for s, o in VARIANTS] + G2P_EXTRA
    for k, (label, scheme, outliers, options) in enumerate(runs):
        q = rnnc.quantize(program, [(cg, cdec)], scheme, outliers, stats=stats, progress=False, **options)
        stats = q.stats
        out = q.run(g, dec)
        same = out.argmax(-1) == target
        agree, agree_v = float(same.float().mean()), float(same[valid].float().mean())
        agree_h = float((q.run(hg, hdec).argmax(-1) == held_target).float().mean())
        path, loop_path = TMP / f"g2p_{k}.onnx", TMP / f"g2p_{k}_loop.onnx"
        q.export_onnx(path, hoist="all")
        q.export_onnx(loop_path, hoist=False)
        ms, loop_ms = _ort_ms(path, (g, dec)), _ort_ms(loop_path, (g, dec))
        size = os.path.getsize(path)
        RECORDS.append({"model": "g2p", "variant": label, "metric": "argmax agreement",
                        "accuracy": agree, "size_kib": size / 1024, "ms": ms})
        rows.append(f"| {label} | {agree:.3f} | {agree_v:.3f} | {agree_h:.3f} | {float((out - ref).abs().max()):.3f} | "
                    f"{size / 1024:.0f} KiB | {fp_size / size:.1f}x | {ms:.2f} | {loop_ms:.2f} |")


#: g2p words for a held-out agreement column (30 words, 390 positions): the recipes below were chosen on WORDS
HELD_WORDS = ["computer", "elephant", "mountain", "beautiful", "question", "garden", "river", "thunder", "whisper",
              "chocolate", "program", "bicycle", "library", "orange", "wonderful", "kitchen", "pyramid", "dolphin",
              "harvest", "triangle", "blanket", "crystal", "festival", "giraffe", "horizon", "island", "journey",
              "lantern", "meadow", "notebook"]
#: the most accurate int4 recipe on g2p: GPTQ in act order, groups of 16, the state-fed W_hh and the output head int8
G2P_BEST = {"gptq": True, "gptq_act_order": True, "group": 16, "recurrent_bits": 8, "int8_weights": ("fc.weight",)}
#: g2p variants beyond VARIANTS: int4 accuracy (mixed widths, groups, MSE scales), int8 groups, static scales
G2P_EXTRA = [
    ("rnnc w8a8 / none, static scales", "w8a8", "none", {"static": True}),
    ("rnnc w8 / none, int8 groups of 16", "w8", "none", {"group8": 16}),
    ("rnnc w4a8 / none, groups of 16", "w4a8", "none", {"group": 16}),
    ("rnnc w4a8 / none, recurrent W_hh int8", "w4a8", "none", {"recurrent_bits": 8}),
    ("rnnc w4a8 / none, recurrent int8, MSE group scales", "w4a8", "none", {"recurrent_bits": 8, "mse_clip": True}),
    ("rnnc w4 / none, recurrent W_hh int8", "w4", "none", {"recurrent_bits": 8}),
    ("rnnc w4 / none, recurrent int8, groups of 16", "w4", "none", {"recurrent_bits": 8, "group": 16}),
    ("rnnc w4 / none, recurrent int8 + int8 groups of 16", "w4", "none", {"recurrent_bits": 8, "group8": 16}),
    ("rnnc w4 / none, MSE group scales", "w4", "none", {"mse_clip": True}),
    ("rnnc w8a8 / none, GPTQ", "w8a8", "none", {"gptq": True}),
    ("rnnc w4a8 / none, GPTQ", "w4a8", "none", {"gptq": True}),
    ("rnnc w4a8 / none, GPTQ, recurrent W_hh int8", "w4a8", "none", {"gptq": True, "recurrent_bits": 8}),
    ("rnnc w4 / none, GPTQ", "w4", "none", {"gptq": True}),
    ("rnnc w4 / none, GPTQ, recurrent W_hh int8", "w4", "none", {"gptq": True, "recurrent_bits": 8}),
    ("rnnc w4 / none, GPTQ act-order, recurrent int8", "w4", "none",
     {"gptq": True, "gptq_act_order": True, "recurrent_bits": 8}),
    ("rnnc w4a8 / none, GPTQ act-order, groups of 16, recurrent + fc int8", "w4a8", "none", G2P_BEST),
    ("rnnc w4 / none, GPTQ act-order, groups of 16, recurrent + fc int8", "w4", "none", G2P_BEST),
]


def _feeds(s: ort.InferenceSession, inputs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    """The given inputs, then zeros for the exposed initial states."""
    feeds = {}
    for i, meta in enumerate(s.get_inputs()):
        if i < len(inputs):
            feeds[meta.name] = inputs[i].numpy()
        else:
            batch = inputs[0].shape[0]
            feeds[meta.name] = np.zeros([d if isinstance(d, int) else batch for d in meta.shape], np.float32)
    return feeds


def _ort_ms(path: Path, inputs: tuple[torch.Tensor, ...], reps: int = 20, blocks: int = 5) -> float:
    """Milliseconds per call: the lowest of ``blocks`` medians of ``reps`` calls each (a shared
    machine's load bursts inflate some blocks; the quietest block is the model's own cost)."""
    s = session(path)
    feeds = _feeds(s, inputs)
    s.run(None, feeds)
    best = float("inf")
    for _ in range(blocks):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            s.run(None, feeds)
            times.append(time.perf_counter() - t0)
        best = min(best, float(np.median(times)))
    return 1e3 * best


# --------------------------------------------------------------------------- sktime
def eval_sktime(rows: list[str], quick: bool = False) -> None:
    rows += ["", "### Tiny classifiers trained on sktime sets (quantized IR in the interpreter)", "",
             "Each cell: test accuracy / relative logit error vs fp32 (||y_q - y|| / ||y||); GPTQ: error-compensating "
             "int4 rounding from calibrated input Hessians. `x50`, `x300`: one "
             "activation channel scaled and compensated in the next weights, so fp32 is unchanged (LSTM/GRU/minGRU: "
             "the cell's input x; Mamba: the head's input). ORT ms: the whole test set through rnnc's fp32 export "
             "-> the w8a8/none export -> the w8a8/keep export (default export options: the plain LSTM is one "
             "DynamicQuantizeLSTM, one with kept channels a Scan). Size: ONNX KiB fp32 -> w8a8/none.", "",
             "| set | cell | outlier | fp32 | w8a8 none | keep | smooth | rotate | clip | w4a8 keep "
             "| w4a8 keep GPTQ | ORT ms fp32 -> none -> keep | KiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
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
                variants = [("w8a8", o, {}) for o in ("none", "keep", "smooth", "rotate", "clip")]
                for scheme, outliers, opts in variants + [("w4a8", "keep", {}), ("w4a8", "keep", {"gptq": True})]:
                    q = rnnc.quantize(program, [xtr[:96]], scheme, outliers, stats=stats, progress=False, **opts)
                    stats = q.stats
                    out = q.run(xte)
                    acc = float((out.argmax(-1) == yte).float().mean())
                    cells.append(f"{acc:.3f} / {float((out - ref).norm() / ref.norm()):.1%}")
                    if scheme == "w8a8" and outliers in ("none", "keep"):
                        q.export_onnx(TMP / f"clf_{outliers}.onnx")
                rnnc.export_onnx(program, None, TMP / "clf_fp.onnx")
                files = ("clf_fp.onnx", "clf_none.onnx", "clf_keep.onnx")
                ms = " -> ".join(f"{_ort_ms(TMP / f, (xte,), 5):.1f}" for f in files)
                size = f"{os.path.getsize(TMP / files[0]) / 1024:.0f} -> {os.path.getsize(TMP / files[2]) / 1024:.0f}"
                tag = f"x{factor:.0f}" if factor > 1 else "-"
                rows.append(f"| {name} | {kind} | {tag} | {fp:.3f} | " + " | ".join(cells) + f" | {ms} | {size} |")


# --------------------------------------------------------------------------- LSTM speed at size
LSTM_SIZES = [(128, 1), (128, 16), (256, 1), (256, 16), (512, 1), (512, 16)]


def eval_lstm(rows: list[str], quick: bool = False) -> None:
    """ORT speed of a w8a8 LSTM layer at realistic sizes: the default (input quantized per
    sequence, one fused ``DynamicQuantizeLSTM``) vs the per-step Scan form and onnxruntime's own
    ``quantize_dynamic`` of the fp32 export, each against fp32's native ``LSTM`` in the same run."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    steps = 100
    rows += ["", f"### w8a8 LSTM layers at size (I = H, T = {steps}, default torch init; onnxruntime, 1 thread)", "",
             "ms per call (best of 5 medians) and speed-up vs fp32's native `LSTM` in the same run; error: "
             "max |y_int8 - y_fp32| / max |y_fp32| on the timed input.", "",
             "| H | B | fp32 ms | rnnc fused ms | speed-up | rnnc per-step Scan ms | speed-up "
             "| ORT quantize_dynamic ms | speed-up | err fused | err per-step | size fp32 -> int8 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for hidden, batch in LSTM_SIZES[:2] if quick else LSTM_SIZES:
        torch.manual_seed(0)
        model = torch.nn.LSTM(hidden, hidden, batch_first=True).eval()
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(batch, steps, hidden, generator=gen)
        program = rnnc.trace(model, (x,))
        calib = [torch.randn(8, steps, hidden, generator=gen) for _ in range(2)]
        fp, fused, step, naive = (TMP / f"lstm{hidden}_{n}.onnx" for n in ("fp", "fused", "step", "naive"))
        rnnc.export_onnx(program, None, fp)
        q = rnnc.quantize(program, calib, "w8a8", "none", progress=False)
        q.export_onnx(fused)
        per_step = rnnc.quantize(program, calib, "w8a8", "none", stats=q.stats, progress=False, sequence_scale="none")
        per_step.export_onnx(step)
        quantize_dynamic(str(fp), str(naive), weight_type=QuantType.QInt8)
        ms = {p: _ort_ms(p, (x,), 10) for p in (fp, fused, step, naive)}
        outs = {}
        for p in (fp, fused, step):
            sess = session(p)
            outs[p] = sess.run(None, _feeds(sess, (x,)))[0]
        ref = np.abs(outs[fp]).max()
        errs = [float(np.abs(outs[p] - outs[fp]).max() / ref) for p in (fused, step)]
        rows.append(f"| {hidden} | {batch} | {ms[fp]:.2f} | {ms[fused]:.2f} | {ms[fp] / ms[fused]:.2f}x | "
                    f"{ms[step]:.2f} | {ms[fp] / ms[step]:.2f}x | {ms[naive]:.2f} | {ms[fp] / ms[naive]:.2f}x | "
                    f"{errs[0]:.2%} | {errs[1]:.2%} | {os.path.getsize(fp) / 1024:.0f} -> "
                    f"{os.path.getsize(fused) / 1024:.0f} KiB |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("silero", "g2p", "sktime", "lstm"))
    ap.add_argument("--quick", action="store_true", help="sktime: JapaneseVowels only; lstm: H=128 only")
    ap.add_argument("--out", help="also write the Markdown here")
    ap.add_argument("--json", help="also write accuracy/size records (Silero, g2p) here, for `rnnc bench`'s plot")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = [page_header("Outlier-aware PTQ on real models"),
            f"## Quantization (rnnc {rnnc.__version__}, onnxruntime {ort.__version__}, torch {torch.__version__})"]
    for name, fn in (("silero", eval_silero), ("g2p", eval_g2p), ("sktime", eval_sktime), ("lstm", eval_lstm)):
        if args.only in (None, name):
            t0 = time.time()
            fn(rows, args.quick) if name in ("sktime", "lstm") else fn(rows)
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
