"""What phone execution providers take of rnnc's exports, and what int8 costs in accuracy.

    .venv/bin/python benchmarks/mobile_export.py      # writes docs/benchmarks/mobile_export.md

For Silero VAD (streaming: one 32 ms chunk + state) and two trained speech models (a frame-level
VAD with one LSTM or GRU layer, ``tests/speech_model.py``, streamed 8 frames per call), each
exported fp32 and int8 for every provider in ``targets/providers/``:

* coverage: nodes the provider takes, partitions and the verdict, from onnxruntime's mobile
  usability checker (NNAPI, CoreML ML Program) or the same partitioning over the provider
  YAML's table (QNN, XNNPACK; ORT Mobile CPU takes every op) -- ``rnnc.backends.onnx.mobile``;
* the same for rnnc's ordinary streaming export (the baseline: native LSTM/GRU ops);
* accuracy on real speech through onnxruntime's CPU provider, run from the ``.ort`` file
  (Silero: frame accuracy against the sample's RTTM turns, all 30 s; the trained models: the
  held-out frames); int8 QDQ is run as its float meaning (QDQ fusion off), the numbers a phone's
  exact int8 kernels give;
* sizes of the ``.onnx`` and ``.ort`` files and CPU-provider ms per call on this host, with
  onnxruntime's default optimizations (QDQ fused into its x86 integer kernels).  The phone's own
  speed is not measured here: no phone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from _common import machine_header, write_page  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "mobile_export.md"
PROVIDERS = ("nnapi", "coreml", "qnn", "xnnpack", "ort-mobile")


def _session(path: str, qdq_fused: bool = False) -> ort.InferenceSession:
    """One-thread CPU session; QDQ fusion off (the graph's own meaning) unless timing."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if not qdq_fused:
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _ms_per_call(sess: ort.InferenceSession, feeds: dict) -> float:
    sess.run(None, feeds)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(20):
            sess.run(None, feeds)
        best = min(best, (time.perf_counter() - t) / 20)
    return best * 1e3


def silero_case():
    """(name, float model, example inputs, calibration data, accuracy(session) -> float)."""
    from rnnc.data import speech_frame_labels, speech_sample
    from rnnc.frontend.silero import CHUNK, CONTEXT, chunk_inputs, load_inner_model, trace_silero

    audio, rate = speech_sample()
    program = trace_silero()
    calib = chunk_inputs(program.run, audio, 8, rate)  # the first 8 s, real states

    def accuracy(sess: ort.InferenceSession) -> float:
        st, cx, probs = np.zeros((2, 1, 128), np.float32), np.zeros((1, CONTEXT), np.float32), []
        for start in range(0, len(audio) - CHUNK + 1, CHUNK):
            chunk = audio[None, start:start + CHUNK]
            out = sess.run(None, {"x": np.concatenate([cx, chunk], 1), "state": st})
            probs.append(out[0][0, 0])
            st, cx = out[1], chunk[:, -CONTEXT:]
        probs = np.array(probs)
        return float(((probs > 0.5) == speech_frame_labels(len(probs))).mean())

    example = (torch.zeros(1, CONTEXT + CHUNK), torch.zeros(2, 1, 128))
    return "Silero VAD", load_inner_model(), example, [calib], accuracy


def vad_case(kind: str):
    from speech_model import stream_speech, train_vad

    trained = train_vad(kind)

    def accuracy(sess: ort.InferenceSession) -> float:
        names = [i.name for i in sess.get_inputs()]
        zeros = [np.zeros(_fixed(i.shape), np.float32) for i in sess.get_inputs()[1:]]
        speech = stream_speech(lambda x, *s: sess.run(None, dict(zip(names, [x, *s], strict=True))),
                               trained.feats, 8, zeros)
        return trained.accuracy(speech)

    return (f"speech {kind.upper()} (trained)", trained.model, (trained.feats[:, :8],),
            [trained.train_windows()], accuracy)


def _feeds(sess: ort.InferenceSession, example) -> dict:
    """The example for the model's inputs, zeros for the states the export added (``h0``, ``c0``)."""
    inputs = sess.get_inputs()
    return {i.name: (np.asarray(example[k], np.float32) if k < len(example) else np.zeros(_fixed(i.shape), np.float32))
            for k, i in enumerate(inputs)}


def _fixed(shape: list) -> list[int]:
    """A state's shape with a symbolic batch (providers that keep it dynamic) set to 1."""
    return [d if isinstance(d, int) else 1 for d in shape]


def run_case(case, rows: list[str], tmp: Path) -> None:
    import onnx

    import rnnc

    name, model, example, calib, accuracy = case
    base = tmp / "base.onnx"
    rnnc.export_onnx(model, example, str(base), streaming=True)
    from rnnc.backends.onnx.mobile import coverage
    from rnnc.targets.providers import get_provider

    rows += [f"## {name}", "",
             "| provider | model | nodes taken | partitions | verdict | .onnx KiB | .ort KiB | accuracy "
             "| CPU ms/call |",
             "|---|---|---|---|---|---|---|---|---|"]
    base_ops = sorted({n.op_type for n in onnx.load(str(base)).graph.node} & {"LSTM", "GRU", "Scan"})
    for provider in PROVIDERS:
        c = coverage(base, provider)
        rows.append(f"| {provider} | ordinary streaming export ({', '.join(base_ops)}) | {c.supported}/{c.nodes} | "
                    f"{c.partitions} | {c.verdict} | {base.stat().st_size / 1024:.0f} | | | |")
        examples = calib[0] if isinstance(calib[0], tuple) else (calib[0],)
        q = rnnc.quantize(model, calib, provider=provider, example_inputs=examples, progress=False)
        int8 = "int8 " + get_provider(provider).quant.format.replace("_", "-")
        for label in ("fp32", int8):
            path = tmp / f"{provider}_{label.split()[0]}.onnx"
            r = (rnnc.export_mobile(model, example, path, provider=provider) if label == "fp32"
                 else q.export_mobile(path, example))
            sess, fused = _session(r.ort_path), _session(r.ort_path, qdq_fused=True)
            c = r.coverage
            rows.append(f"| {provider} | --for {provider}, {label} | {c.supported}/{c.nodes} "
                        f"({100 * c.fraction:.0f} %) | {c.partitions} | {c.verdict} | "
                        f"{path.stat().st_size / 1024:.0f} | {Path(r.ort_path).stat().st_size / 1024:.0f} | "
                        f"{accuracy(sess):.4f} | {_ms_per_call(fused, _feeds(fused, example)):.3f} |")
    rows.append("")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(OUT), help=f"where the Markdown goes (default {OUT})")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = machine_header("Mobile and edge exports: provider coverage, int8 accuracy")
    rows += ["Written by `benchmarks/mobile_export.py`; see its docstring for what each column is. "
             "Coverage: onnxruntime's mobile usability checker (NNAPI, CoreML ML Program) or its partitioning "
             "over `targets/providers/<name>.yaml` (QNN, XNNPACK); verdict YES means one partition over 75 % of "
             "the nodes (onnxruntime's rule). XNNPACK runs on the CPU: what it lacks runs on the CPU provider "
             "without copies, so its partitions are not a problem. Accuracy through onnxruntime's CPU provider "
             "from the `.ort` file; int8 QDQ as its float meaning (what exact int8 kernels compute). CPU ms/call: "
             "this host's CPU provider, one thread, default optimizations (a reference point, not a phone).", ""]
    with tempfile.TemporaryDirectory() as tmp_dir:
        for make in (silero_case, lambda: vad_case("lstm"), lambda: vad_case("gru")):
            t0 = time.time()
            case = make()
            run_case(case, rows, Path(tmp_dir))
            print(f"[{case[0]}: {time.time() - t0:.0f} s]", file=sys.stderr)
    write_page(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
