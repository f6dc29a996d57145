"""Whole models: ``rnnc.compile`` against the model in torch, ``torch.compile`` and onnxruntime.

    .venv/bin/python benchmarks/whole_model.py --out docs/benchmarks/whole_model.md
    .venv/bin/python benchmarks/whole_model.py --only silero

Every point runs all systems in one process on the same inputs, round-robin over five rounds,
each system's best call of all rounds, so the ratios compare like with like on a shared machine:

* ``torch``: the model as users run it (Silero: the shipped TorchScript; the others eager);
* ``torch.compile``: the eager module under ``torch.compile`` (not for TorchScript);
* ``ort``: onnxruntime on rnnc's own fp32 export (``rnnc.export_onnx``);
* ``rnnc``: ``rnnc.compile(model, example)`` with no backend named -- whichever engine it
  measured fastest (kernel backend + interpreter, or onnxruntime on its export; ``engine``);
* ``vs best``: fastest baseline / rnnc (> 1: rnnc faster); ``err``: max |rnnc - torch|.

Models: Silero VAD (one 32 ms chunk + state), the g2p-en GRU encoder-decoder (real weights,
teacher-forced), an LSTM classifier trained here on sktime's JapaneseVowels, and a conv + GRU
sound-event model (random weights); batch 1 and 16.  With ``--only qrnn,sru,mamba`` (page
``docs/benchmarks/loop_models.md``): recurrences written as Python loops of tensor ops, from the
frontend's corpus (``tests/frontend/corpus``, random weights) at T = 128 -- QRNN (ForgetMult),
SRU (bidirectional cell loop), mamba-minimal (selective scan) -- which rnnc rolls back into rnn
nodes (``compiler/frontend/scan.py``); torch runs their Python loops step by step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quant_models as qm  # noqa: E402
from _common import best_time, fmt_time, markdown_table, page_header, ratio  # noqa: E402

import rnnc  # noqa: E402
from rnnc.backends.onnx.artifact import runnable as onnx_runnable  # noqa: E402


class ConvGru(torch.nn.Module):
    """A sound-event front end: two convs over 40 mel bands, a GRU, a per-frame head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(40, 64, 3, padding=1)
        self.conv2 = torch.nn.Conv1d(64, 64, 3, padding=1)
        self.gru = torch.nn.GRU(64, 128, batch_first=True)
        self.head = torch.nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv2(torch.relu(self.conv1(x.transpose(1, 2))))).transpose(1, 2)
        return torch.sigmoid(self.head(self.gru(y)[0]))


def models(only: str) -> list[tuple]:
    """(name, module, scripted, inputs(batch) -> tuple)."""
    out = []
    if "silero" in only:
        from rnnc.frontend.silero import CHUNK, CONTEXT, load_inner_model

        out.append(("Silero VAD (chunk)", load_inner_model(), True,
                    lambda b: (torch.randn(b, CONTEXT + CHUNK) * 0.1, torch.zeros(2, b, 128))))
    if "g2p" in only:
        g2p = qm.G2P()
        g, dec = qm.g2p_inputs(g2p)
        out.append(("g2p-en GRU enc-dec", g2p, False,
                    lambda b: (g.repeat((b + g.shape[0] - 1) // g.shape[0], 1)[:b],
                               dec.repeat((b + dec.shape[0] - 1) // dec.shape[0], 1)[:b])))
    if "sktime" in only:
        data = qm.load_set("JapaneseVowels")
        clf = qm.train("lstm", data, epochs=25).eval()
        xte = data[2]
        out.append(("sktime LSTM classifier", clf, False,
                    lambda b: (xte.repeat((b + xte.shape[0] - 1) // xte.shape[0], 1, 1)[:b],)))
    if "convgru" in only:
        torch.manual_seed(0)
        out.append(("conv + GRU (T=100)", ConvGru().eval(), False, lambda b: (torch.randn(b, 100, 40),)))
    loops = [k for k in ("qrnn", "sru", "mamba") if k in only.split(",")]
    if loops:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "frontend"))
        from corpus import CORPUS

        names = {"qrnn": ("QRNN loop (T=128)", "qrnn_window2"),
                 "sru": ("SRU loop, bidir. (T=128)", "sru_bidirectional"),
                 "mamba": ("mamba-minimal scan loop (T=128)", "mamba_minimal_lm")}
        for key in loops:
            title, entry = names[key][0], CORPUS[names[key][1]]
            out.append((title, entry.build(), False, lambda b, e=entry: e.inputs(b, 128)))
    return out


def _first(v):
    return v[0] if isinstance(v, (tuple, list)) else v


def bench(name: str, module: torch.nn.Module, scripted: bool, make, batch: int) -> dict:
    inputs = make(batch)
    row: dict = {"model": name, "B": batch}
    with torch.no_grad():
        want = module(*inputs)
        systems = {"torch": module}
        if not scripted:
            systems["torch.compile"] = torch.compile(module, dynamic=False)
            best_time(lambda: systems["torch.compile"](*inputs), 2.0)  # compile before timing
        systems["ort"] = onnx_runnable(rnnc.trace(module, inputs))
        t0 = time.perf_counter()
        compiled = rnnc.compile(module, inputs, target="cpu/host")
        row["compile s"] = time.perf_counter() - t0
        systems["rnnc"] = compiled
        # round-robin: a shared machine's slow spells hit every system alike; best of all rounds
        for _ in range(ROUNDS):
            for key, fn in systems.items():
                t = best_time(lambda fn=fn: fn(*inputs), 0.1)
                row[key] = min(row.get(key, t), t)
        got = compiled(*inputs)
    row["err"] = float((_first(got) - _first(want)).abs().max())
    row["engine"] = compiled.choice.backend
    row["vs best"] = min(row[k] for k in ("torch", "torch.compile", "ort") if k in row) / row["rnnc"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="silero,g2p,sktime,convgru", help="comma-separated models")
    ap.add_argument("--batch", default="1,16", help="comma-separated batch sizes")
    ap.add_argument("--out", help="also write the Markdown page here")
    args = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    rows = []
    for name, module, scripted, make in models(args.only):
        for b in (int(v) for v in args.batch.split(",")):
            rows.append(bench(name, module, scripted, make, b))
            print(markdown_table(rows[-1:], COLS, FORMATS).splitlines()[-1], file=sys.stderr, flush=True)
    text = page_header("Whole models: rnnc.compile vs torch, torch.compile and onnxruntime (fp32)") + \
        f"{len(os.sched_getaffinity(0))} threads for every system; best time per call.\n\n" + \
        markdown_table(rows, COLS, FORMATS) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


ROUNDS = 5
COLS = ["model", "B", "torch", "torch.compile", "ort", "rnnc", "engine", "vs best", "err", "compile s"]
FORMATS = {**dict.fromkeys(("torch", "torch.compile", "ort", "rnnc"), fmt_time), "vs best": ratio,
           "err": lambda v: f"{v:.0e}", "compile s": lambda v: f"{v:.1f}"}

if __name__ == "__main__":
    raise SystemExit(main())
