"""``scheme="auto"`` on trained models it was never tuned on, judged by each task's own metric.

    .venv/bin/python benchmarks/quant_auto.py      # writes docs/benchmarks/quant_auto.md

Every model is trained (random weights have no outlier channels).  For each: the search
(``rnnc.quantize(..., "auto", max_loss=0.01, metric=<task metric drop on validation data>)``)
picks per-site precision and the outlier treatment and times its candidates in onnxruntime on
this CPU; then the chosen model's ONNX export is scored on *test* data neither calibration nor
the search saw, against the fp32 export on the same data.

* Silero VAD (trained, shipped): frame accuracy against the speech sample's RTTM turns;
  calibration 0-8 s, validation 8-15 s (teacher-forced states), test: 15-30 s streamed with the
  state carried.
* g2p-en GRU encoder-decoder (trained weights): argmax agreement with fp32 on held-out words,
  over each word's phonemes up to its end (calibration: 20 words, validation and test: about 150
  others each).
* sktime JapaneseVowels LSTM classifier (trained here): test accuracy.
* new: a 2-layer stacked LSTM on JapaneseVowels (trained here): test accuracy.
* new: a speaker encoder of the shape the issue measured (3-layer LSTM(256), ``tests/speaker_model.py``,
  trained here on the speech sample's two speakers): ROC-AUC of the speaker margin on held-out
  windows (validation and test: separate one-second blocks).
* new: frame-level speech VAD, one LSTM layer, and the same with a GRU (``tests/speech_model.py``,
  trained here on the speech sample): accuracy on held-out frames (validation: those before 15 s,
  test: those after).

Loss = the task metric's drop on validation (accuracy or agreement, in [0, 1]); budget 0.01.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from _common import machine_header, write_page  # noqa: E402

OUT = ROOT / "docs" / "benchmarks" / "quant_auto.md"
BUDGET = 0.01


@dataclass
class Case:
    name: str
    new: bool
    model: Any  # torch module or Program
    calib: list  # calibration batches (tuples)
    validation: tuple  # the batch the search judges on
    val_metric: Any  # (ref outputs, quantized outputs) -> drop
    test: Any  # (onnx path) -> task metric on test data
    metric_name: str


def _session(path: str) -> ort.InferenceSession:
    """A one-thread onnxruntime session, as the search times its candidates (``quant/auto.py``)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _feeds(sess: ort.InferenceSession, inputs: tuple) -> dict:
    out = {}
    for i, meta in enumerate(sess.get_inputs()):
        if i < len(inputs):
            out[meta.name] = np.asarray(inputs[i])
        else:  # states the export exposes: zeros
            batch = np.asarray(inputs[0]).shape[0]
            out[meta.name] = np.zeros([d if isinstance(d, int) else batch for d in meta.shape], np.float32)
    return out


def drop(score) -> Any:
    """A task metric ``score(outputs) -> float`` as the search's loss: its drop from fp32."""
    def loss(ref, out) -> float:
        return max(0.0, score(ref) - score(out))

    loss.__name__ = f"{score.__name__} drop"
    return loss


# --------------------------------------------------------------------------- cases
def silero_case() -> Case:
    from rnnc.data import speech_frame_labels, speech_sample
    from rnnc.frontend.silero import CHUNK, CONTEXT, chunk_inputs, trace_silero

    audio, rate = speech_sample()
    program = trace_silero()
    labels = speech_frame_labels(len(audio) // CHUNK)
    xs, states = chunk_inputs(program.run, audio, 15, rate)  # 0-15 s streamed, real states
    split = 8 * rate // CHUNK
    calib = [(xs[i:i + 64], states[:, i:i + 64]) for i in range(0, split, 64)]
    validation = (xs[split:], states[:, split:])
    val_labels = torch.from_numpy(labels[split:len(xs)])

    def frame_accuracy(outputs) -> float:
        return float(((outputs[0][:, 0] > 0.5).long() == val_labels).float().mean())

    def test(path: str) -> float:
        sess = _session(path)
        st, cx, hits, n = np.zeros((2, 1, 128), np.float32), np.zeros((1, CONTEXT), np.float32), 0, 0
        for k, start in enumerate(range(0, len(audio) - CHUNK + 1, CHUNK)):
            chunk = audio[None, start:start + CHUNK]
            prob, st = sess.run(None, {"x": np.concatenate([cx, chunk], 1), "state": st})[:2]
            cx = chunk[:, -CONTEXT:]
            if start >= 15 * rate:
                hits, n = hits + int((prob[0, 0] > 0.5) == labels[k]), n + 1
        return hits / n

    return Case("Silero VAD", False, program, calib, validation, drop(frame_accuracy), test, "frame accuracy")


#: more words for g2p (calibration: the 20 of quant_models.WORDS; validation and test: alternate
#: words of these, about 150 each -- a 1 % budget on fewer phonemes is within counting noise)
EXTRA_WORDS = """about above across action answer around basket battery blanket bridge brother
butter candle castle chicken circle cotton danger dinner doctor dragon engine evening family
farmer finger flower forest garden golden guitar hammer harbor helmet hunter island jacket
jungle kitchen ladder lemon letter lizard market meadow mirror monkey morning motor needle
number orange oyster packet paper pencil pepper pillow planet pocket powder rabbit ribbon
river rocket saddle sailor salad season shadow silver singer sister spider spring summer
sunset table ticket tiger timber tomato tunnel turtle velvet village violin wagon walnut window
winter wizard yellow absent account acid actor adult advice agency airport album alcohol
alley almond amber anchor angle animal ankle apple apron arcade arrow artist autumn avenue
bacon badge balance bamboo banana bandit banner barrel beacon beaver bicycle biscuit blossom
bonnet border bottle bracket breakfast brush bubble bucket buffalo bullet bundle cabbage cabin
cactus camera canyon captain carbon carpet carrot cattle cellar cement cereal channel chapter
cherry chimney chorus cinema citizen climate closet coconut coffee collar comet compass copper
corner cottage cousin coyote cradle crayon cricket crystal cupboard curtain cushion dancer
decade desert diamond dolphin donkey eagle elbow elephant empire fabric falcon feather fiddle
fossil fountain galaxy garlic giant ginger glacier gravel hamster harvest hazard hollow honey
horizon insect invoice jelly journal kettle kingdom lantern laundry legend lobster magnet
mammal mango marble meteor mitten muffin museum napkin nephew noodle nugget ocean olive
orchard ostrich paddle palace panther parrot peanut pebble pirate plaster poet pumpkin puzzle
quarter raccoon radish raven recipe saucer scissors shovel signal spinach squirrel stomach
sugar tablet temple thunder tongue trumpet tulip umbrella valley vessel walrus whistle""".split()


def g2p_case() -> Case:
    from quant_models import EOS, G2P, WORDS, g2p_inputs

    model = G2P()
    calib = [g2p_inputs(model, words=WORDS)]
    words = [w for w in dict.fromkeys(EXTRA_WORDS) if len(w) <= 12 and w not in WORDS]
    validation, test_in = g2p_inputs(model, words=words[0::2]), g2p_inputs(model, words=words[1::2])

    def spoken(ref: torch.Tensor) -> torch.Tensor:
        """Positions up to and including the fp32 decode's first </s>: the pronunciation itself
        (what comes after is decoding past the word's end)."""
        ids = ref.argmax(-1)
        ended = (ids == EOS).long().cumsum(-1)
        return (ended == 0) | ((ended == 1) & (ids == EOS))

    def test(path: str) -> float:
        sess = _session(path)
        got = torch.from_numpy(sess.run(None, _feeds(sess, (test_in[0].numpy(), test_in[1].numpy())))[0])
        with torch.no_grad():
            ref = model(*test_in)
        mask = spoken(ref)
        return float((got.argmax(-1) == ref.argmax(-1))[mask].float().mean())

    def agreement_drop(ref, out) -> float:
        mask = spoken(ref[0])
        return float((ref[0].argmax(-1) != out[0].argmax(-1))[mask].float().mean())

    agreement_drop.__name__ = "argmax disagreement"
    return Case("g2p-en GRU (real weights)", False, model, calib, validation, agreement_drop, test,
                "phoneme agreement with fp32")


class Stacked(nn.Module):
    """in_proj -> 2-layer LSTM -> last step -> head."""

    def __init__(self, dims: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.in_proj = nn.Linear(dims, hidden)
        self.rnn = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.in_proj(x))[0][:, -1])


def sktime_case(stacked: bool) -> Case:
    from quant_models import load_set, train

    data = load_set("JapaneseVowels")
    xtr, ytr, xte, yte, classes = data
    if stacked:
        torch.manual_seed(0)
        model = Stacked(xtr.shape[2], 48, classes)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(40):
            for idx in torch.randperm(len(xtr)).split(32):
                opt.zero_grad()
                nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
                opt.step()
        model.eval()
    else:
        model = train("lstm", data)
    cut = int(0.8 * len(xtr))
    calib = [(xtr[i:i + 64],) for i in range(0, cut, 64)]
    validation, val_y = (xtr[cut:],), ytr[cut:]

    def accuracy(outputs) -> float:
        return float((outputs[0].argmax(-1) == val_y).float().mean())

    def test(path: str) -> float:
        sess = _session(path)
        logits = sess.run(None, _feeds(sess, (xte.numpy(),)))[0]
        return float((logits.argmax(-1) == yte.numpy()).mean())

    name = "JapaneseVowels 2-layer stacked LSTM" if stacked else "JapaneseVowels LSTM classifier"
    return Case(name, stacked, model, calib, validation, drop(accuracy), test, "test accuracy")


def speech_case(kind: str) -> Case:
    from speech_model import WINDOW, train_vad

    trained = train_vad(kind)
    feats, labels, held = trained.feats, torch.from_numpy(trained.labels), torch.from_numpy(trained.test)
    half = feats.shape[1] // 2
    val_mask = held.clone()
    val_mask[half:] = False
    test_mask = held.clone()
    test_mask[:half] = False
    starts = [s for s in range(0, feats.shape[1] - WINDOW, WINDOW) if not held[s:s + WINDOW].any()]
    windows = torch.stack([feats[0, s:s + WINDOW] for s in starts])
    calib = [(windows[i:i + 8],) for i in range(0, len(windows), 8)]

    def held_out_accuracy(outputs) -> float:
        speech = (outputs[0][0, :, 0] > 0.5).long()
        return float((speech[val_mask] == labels[val_mask]).float().mean())

    def test(path: str) -> float:
        sess = _session(path)
        probs = sess.run(None, _feeds(sess, (feats.numpy(),)))[0][0, :, 0]
        speech = torch.from_numpy((probs > 0.5).astype(np.int64))
        return float((speech[test_mask] == labels[test_mask]).float().mean())

    return Case(f"speech VAD, one {kind.upper()} layer", True, trained.model, calib, (feats,),
                drop(held_out_accuracy), test, "held-out frame accuracy")


def speaker_case() -> Case:
    from speaker_model import margin, roc_auc, train_speakers

    sp = train_speakers()
    train = sp.windows["train"]
    calib = [(train[i:i + 32],) for i in range(0, len(train), 32)]

    def validation_auc(outputs) -> float:
        return roc_auc(margin(outputs[0].numpy()), sp.labels["validation"])

    def test(path: str) -> float:
        sess = _session(path)
        logits = sess.run(None, _feeds(sess, (sp.windows["test"].numpy(),)))[0]
        return roc_auc(margin(logits), sp.labels["test"])

    return Case("speaker encoder, 3-layer LSTM(256)", True, sp.model, calib, (sp.windows["validation"],),
                drop(validation_auc), test, "held-out ROC-AUC")


# --------------------------------------------------------------------------- run
def run_case(case: Case, tmp: Path) -> dict:
    import rnnc

    t0 = time.time()
    fp32_path = tmp / "fp32.onnx"
    example = case.calib[0]
    rnnc.export_onnx(case.model, example, str(fp32_path))
    row: dict[str, Any] = {"model": case.name + (" (new)" if case.new else ""), "metric": case.metric_name,
                           "fp32": case.test(str(fp32_path))}
    try:
        q = rnnc.quantize(case.model, case.calib, "auto", max_loss=BUDGET, validation=[case.validation],
                          metric=case.val_metric, example_inputs=example, progress=False)
    except rnnc.RnncError as exc:
        row.update(result=f"no plan: {exc}", seconds=time.time() - t0)
        return row
    q_path = tmp / "q.onnx"
    q.export_onnx(str(q_path))
    from rnnc.quant.race import one_sample, race

    # timed again here, longer than the search does, on the two files as deployed: one held-out
    # sample per call, round-robin
    traced = case.model if isinstance(case.model, rnnc.Program) else rnnc.trace(case.model, example)
    sample = one_sample(traced, case.validation)
    runs = []
    for path in (fp32_path, q_path):
        sess = _session(str(path))
        runs.append((sess, _feeds(sess, tuple(np.asarray(v) for v in sample))))
    fp32_ms, q_ms = race(runs, budget_s=4.0)
    a = q.auto
    c = a.chosen
    levels = {lv: sum(v == lv for v in c.plan.values())
              for lv in ("int8-static", "int8", "weight-only", "int4", "fp16", "float")}
    row.update(auto=case.test(str(q_path)), val_loss=c.loss, outliers=c.recipe,
               plan=", ".join(f"{n} {lv}" for lv, n in levels.items() if n),
               smaller=a.fp32_bytes / max(c.q_bytes, 1), fp32_ms=fp32_ms, q_ms=q_ms, speedup=fp32_ms / q_ms,
               search_speedup=a.fp32_ms / c.latency_ms, note=a.note, seconds=time.time() - t0, plans=len(a.trials))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(OUT), help=f"where the Markdown goes (default {OUT})")
    ap.add_argument("--only", default="", help="comma-separated models to run: silero, g2p, vowels, stacked, "
                    "vad-lstm, vad-gru, speaker (default all)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    import tempfile

    rows = []
    makers = {"silero": silero_case, "g2p": g2p_case, "vowels": lambda: sktime_case(False),
              "stacked": lambda: sktime_case(True), "vad-lstm": lambda: speech_case("lstm"),
              "vad-gru": lambda: speech_case("gru"), "speaker": speaker_case}
    only = [k for k in args.only.split(",") if k]
    if any(k not in makers for k in only):
        ap.error(f"--only takes {', '.join(makers)}; got {args.only}")
    with tempfile.TemporaryDirectory() as tmp:
        for key, make in makers.items():
            if only and key not in only:
                continue
            case = make()
            rows.append(run_case(case, Path(tmp)))
            print(f"[{case.name}: {rows[-1]['seconds']:.0f} s] {rows[-1]}", file=sys.stderr)
    lines = machine_header("scheme auto on trained models: task metric, size, onnxruntime speed")
    lines += ["Written by `benchmarks/quant_auto.py` (see its docstring). Budget: the task metric's drop on "
              f"validation data <= {BUDGET}; test columns are the ONNX exports on data neither calibration nor "
              "the search saw. Speed: the two ONNX files in onnxruntime on this CPU (one intra-op thread, "
              "as the search times them), per call on one held-out sample, timed round-robin for 4 s (the "
              "search's own, shorter timing chose the plan).", "",
              "| model | task metric | fp32 test | auto test | val drop | chosen plan (sites) | outliers[+gptq] | "
              "smaller | fp32 ms | auto ms | speed | plans, s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for r in rows:
        if "auto" not in r:
            lines.append(f"| {r['model']} | {r['metric']} | {r['fp32']:.4f} | - | - | {r['result']} | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['metric']} | {r['fp32']:.4f} | {r['auto']:.4f} | {r['val_loss']:.4f} | "
                     f"{r['plan']} | {r['outliers']} | {r['smaller']:.1f}x | {r['fp32_ms']:.3f} | {r['q_ms']:.3f} | "
                     f"{r['speedup']:.2f}x | {r['plans']}, {r['seconds']:.0f} |")
        if r["note"]:
            notes.append(f"- {r['model']}: {r['note']}")
    if notes:
        lines += ["", "Where no plan within budget beats fp32, the search says so:", *notes]
    write_page(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
