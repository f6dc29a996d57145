"""What each integer format costs: accuracy of 7-bit vs 8-bit weights, speed of s8 / s7 / u8.

    .venv/bin/python benchmarks/int8_formats.py            # writes docs/benchmarks/int8_formats.md
    .venv/bin/python benchmarks/int8_formats.py --quick    # Silero and one LSTM size only

Formats (``targets/int8dot.py``): ``s8`` full-range int8 weights (exact where the CPU's u8 x s8
dot product adds into int32: VNNI, Arm); ``s7`` 7-bit weights (exact everywhere, what rnnc builds
for CPUs whose u8 x s8 dot product saturates pair sums: x86 without VNNI); ``u8`` the s8 codes
stored as u8 with zero point 128 (onnxruntime's u8 x u8 kernel: exact everywhere, the same
numbers as s8).  Accuracy: s8 and u8 compute the same integers, so one column; s7 is its own.
Speed: all three in onnxruntime on *this* CPU, one thread -- on a CPU with VNNI s8 and s7 take the
same kernel, so the s7-vs-u8 choice for AVX2 targets is settled by running this there.

* Silero VAD (real speech, 937 chunks, state carried): frame accuracy, ROC-AUC, held-out
  accuracy (10-30 s); B=1 ms per chunk and B=32 us per chunk; w8a8 and the edge recipe.
* g2p-en (real GRU weights): argmax agreement with fp32 (all positions, held-out words).
* sktime classifiers trained here (JapaneseVowels; LSTM, GRU, minGRU, Mamba): test accuracy,
  with and without a 50x outlier channel, w8a8 none/keep.
* one LSTM layer (H = 256, T = 128, B = 1 and 16): onnxruntime ms per format.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quant_eval as qe  # noqa: E402
import quant_models as qm  # noqa: E402
from _common import machine_header, write_page  # noqa: E402

import rnnc  # noqa: E402
from rnnc.data import speech_frame_labels, speech_sample  # noqa: E402
from rnnc.frontend.silero import CHUNK  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "int8_formats.md"
#: format -> (quantize target, int8_format, export target): u8 is the s8 program exported for a
#: saturating CPU, which stores every full-range weight as u8
FORMATS = {"s8": ("cpu/x86-avx512", "s8", "cpu/x86-avx512"), "s7": ("cpu/x86-avx2", "s7", "cpu/x86-avx2"),
           "u8": ("cpu/x86-avx512", "s8", "cpu/x86-avx2")}
SILERO_RECIPES = [("w8a8 / none", {}), ("edge: w8a8 static, STFT weight-only, <1k-weight layers float",
                                        {"static": True, "weight_only": ("stft.forward_basis_buffer",),
                                         "min_weight": 1024})]


def _quantize(program, calib, fmt: str, stats, scheme: str = "w8a8", outliers: str = "none", **options):
    target, int8_format, _ = FORMATS[fmt]
    return rnnc.quantize(program, calib, scheme, outliers, stats=stats, progress=False, target=target,
                         int8_format=int8_format, **options)


def _export(q, fmt: str, path: Path, **kw) -> Path:
    q.export_onnx(path, target=FORMATS[fmt][2], **kw)
    return path


def eval_silero(rows: list[str]) -> None:
    from rnnc.frontend.silero import trace_silero

    audio, rate = speech_sample()
    program = trace_silero()
    calib = qe.silero_calibration(program, audio, rate)
    held = (10 * rate) // CHUNK
    fp = rnnc.export_onnx(program, None, qe.TMP / "silero_fp32.onnx") and qe.TMP / "silero_fp32.onnx"
    fp_probs, fp_ms = qe.silero_stream(fp, audio, ("x", "state"))
    fp_us = qe.silero_batch_us(fp, audio, ("x", "state"))
    labels = speech_frame_labels(len(fp_probs))
    rows += ["", "## Silero VAD (onnxruntime, 1 thread)", "",
             "| recipe | format | frame acc | ROC-AUC | held-out acc | ms/chunk B=1 | vs fp32 | us/chunk B=32 "
             "| vs fp32 |", "|---|---|---|---|---|---|---|---|---|",
             f"| fp32 | - | {((fp_probs > 0.5) == labels).mean():.3f} | {qe.auc(labels, fp_probs):.3f} | "
             f"{((fp_probs[held:] > 0.5) == labels[held:]).mean():.3f} | {fp_ms:.3f} | 1.00x | {fp_us:.1f} | 1.00x |"]
    stats = None
    for label, options in SILERO_RECIPES:
        for fmt in FORMATS:
            q = _quantize(program, calib, fmt, stats, **options)
            stats = q.stats
            path = _export(q, fmt, qe.TMP / f"silero_{fmt}.onnx")
            probs, ms = qe.silero_stream(path, audio, ("x", "state"))
            us = qe.silero_batch_us(path, audio, ("x", "state"))
            acc, acc_h = ((probs > 0.5) == labels).mean(), ((probs[held:] > 0.5) == labels[held:]).mean()
            rows.append(f"| {label} | {fmt} | {acc:.3f} | {qe.auc(labels, probs):.3f} | {acc_h:.3f} | {ms:.3f} | "
                        f"{fp_ms / ms:.2f}x | {us:.1f} | {fp_us / us:.2f}x |")


def eval_g2p(rows: list[str]) -> None:
    model = qm.G2P()
    g, dec = qm.g2p_inputs(model)
    program = rnnc.trace(model, (g, dec))
    saved = qm.WORDS[:]
    qm.WORDS[:] = ["model", "weights", "sequence", "language", "voice", "table", "quantum", "zebra", "yellow"]
    cg, cdec = qm.g2p_inputs(model)
    qm.WORDS[:] = qe.HELD_WORDS
    hg, hdec = qm.g2p_inputs(model)
    qm.WORDS[:] = saved
    with torch.no_grad():
        target, held_target = model(g, dec).argmax(-1), model(hg, hdec).argmax(-1)
    fp_path = qe.TMP / "g2p_fp32.onnx"
    rnnc.export_onnx(program, None, fp_path)
    fp_ms = qe._ort_ms(fp_path, (g, dec))
    rows += ["", "## g2p-en GRU encoder/decoder (argmax agreement with fp32; onnxruntime ms, 1 thread)", "",
             "| recipe | format | agreement | held-out words | ms | vs fp32 |", "|---|---|---|---|---|---|",
             f"| fp32 | - | 1.000 | 1.000 | {fp_ms:.2f} | 1.00x |"]
    stats = None
    for label, options in (("w8a8 / none", {}), ("w8a8 / none, static", {"static": True})):
        for fmt in FORMATS:
            q = _quantize(program, [(cg, cdec)], fmt, stats, **options)
            stats = q.stats
            agree = float((q.run(g, dec).argmax(-1) == target).float().mean())
            agree_h = float((q.run(hg, hdec).argmax(-1) == held_target).float().mean())
            ms = qe._ort_ms(_export(q, fmt, qe.TMP / f"g2p_{fmt}.onnx", hoist="all"), (g, dec))
            rows.append(f"| {label} | {fmt} | {agree:.3f} | {agree_h:.3f} | {ms:.2f} | {fp_ms / ms:.2f}x |")


def eval_sktime(rows: list[str]) -> None:
    rows += ["", "## sktime JapaneseVowels classifiers trained here (test accuracy, quantized IR)", "",
             "s8 and u8 compute the same integers; `x50`: one input channel scaled 50x and compensated.", "",
             "| cell | outlier | fp32 | none s8 | none s7 | keep s8 | keep s7 |", "|---|---|---|---|---|---|---|"]
    data = qm.load_set("JapaneseVowels")
    xtr, _, xte, yte, _ = data
    for kind in ("lstm", "gru", "mingru", "mamba"):
        base = qm.train(kind, data, epochs=25)
        for factor in (1.0, 50.0):
            model = qm.inject_outlier(base, factor=factor) if factor > 1 else base
            program = rnnc.trace(model, (xte[:2],))
            with torch.no_grad():
                fp = float((model(xte).argmax(-1) == yte).float().mean())
            cells, stats = [], None
            for outliers in ("none", "keep"):
                for fmt in ("s8", "s7"):
                    q = _quantize(program, [xtr[:96]], fmt, stats, outliers=outliers)
                    stats = q.stats
                    cells.append(f"{float((q.run(xte).argmax(-1) == yte).float().mean()):.3f}")
            tag = f"x{factor:.0f}" if factor > 1 else "-"
            rows.append(f"| {kind} | {tag} | {fp:.3f} | " + " | ".join(cells) + " |")


def eval_lstm(rows: list[str], quick: bool) -> None:
    rows += ["", "## One LSTM layer, w8a8 (onnxruntime ms per call, 1 thread, T = 128)", "",
             "| H | B | fp32 | s8 | s7 | u8 |", "|---|---|---|---|---|---|"]
    for hidden, batch in ((256, 1),) if quick else ((256, 1), (256, 16), (512, 16)):
        torch.manual_seed(0)
        module = torch.nn.LSTM(hidden, hidden, batch_first=True).eval()
        x = torch.randn(batch, 128, hidden)
        program = rnnc.trace(module, (x,))
        fp_path = qe.TMP / "lstm_fp32.onnx"
        rnnc.export_onnx(program, None, fp_path)
        cells, stats = [f"{qe._ort_ms(fp_path, (x,)):.2f}"], None
        for fmt in FORMATS:
            q = _quantize(program, [torch.randn(4, 128, hidden)], fmt, stats)
            stats = q.stats
            cells.append(f"{qe._ort_ms(_export(q, fmt, qe.TMP / f'lstm_{fmt}.onnx'), (x,)):.2f}")
        rows.append(f"| {hidden} | {batch} | " + " | ".join(cells) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="Silero and one LSTM size only")
    ap.add_argument("--out", default=str(OUT), help=f"where the Markdown goes (default {OUT})")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = machine_header("Integer formats: 7-bit vs 8-bit weights, s8 / s7 / u8 speed")
    rows.append("Written by `benchmarks/int8_formats.py`" + (" --quick" if args.quick else "") +
                "; see its docstring for what each format is. Numbers are ratios on the CPU above only.")
    steps = [("silero", eval_silero), ("lstm", lambda r: eval_lstm(r, args.quick))]
    if not args.quick:
        steps[1:1] = [("g2p", eval_g2p), ("sktime", eval_sktime)]
    for name, fn in steps:
        t0 = time.time()
        fn(rows)
        print(f"[{name}: {time.time() - t0:.0f} s]", file=sys.stderr)
    write_page(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
