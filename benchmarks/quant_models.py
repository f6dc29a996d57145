"""Models and data for ``quant_eval.py``: sktime sets, tiny trained classifiers, outlier
injection, the g2p-en GRU, and Silero's flat ONNX graph for onnxruntime's own quantizer.

Everything trains or loads in seconds on a CPU; seeds are fixed so the table is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from rnnc.data import g2p_checkpoint_path, timeseries_path
from rnnc.kernels.mamba.module import MambaS6Layer
from rnnc.kernels.mingru.module import MinGRULayer


# --------------------------------------------------------------------------- sktime .ts files
def read_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """A sktime ``.ts`` file: per case a ``[T, dims]`` array (lengths may differ) and its label."""
    series, labels, in_data = [], [], False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("@data"):
            in_data = True
            continue
        if not in_data or line.startswith("@"):
            continue
        *dims, label = line.split(":")
        series.append(np.stack([np.array([float(v) for v in d.split(",")], np.float32) for d in dims], axis=1))
        labels.append(label.strip())
    return series, labels


def load_set(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(x_train, y_train, x_test, y_test, classes); series left-padded with zeros to one length
    (so the last step, which the classifiers read, is always real data), standardized per dim."""
    tr, ltr = read_ts(timeseries_path(name, "TRAIN"))
    te, lte = read_ts(timeseries_path(name, "TEST"))
    classes = sorted(set(ltr) | set(lte))
    length = max(s.shape[0] for s in tr + te)

    def pad(batch: list[np.ndarray]) -> torch.Tensor:
        out = np.zeros((len(batch), length, batch[0].shape[1]), np.float32)
        for i, s in enumerate(batch):
            out[i, length - s.shape[0]:] = s
        return torch.from_numpy(out)

    xtr, xte = pad(tr), pad(te)
    mu, sd = xtr.mean(dim=(0, 1)), xtr.std(dim=(0, 1)) + 1e-6
    ytr = torch.tensor([classes.index(v) for v in ltr])
    yte = torch.tensor([classes.index(v) for v in lte])
    return (xtr - mu) / sd, ytr, (xte - mu) / sd, yte, len(classes)


# --------------------------------------------------------------------------- classifiers
class Classifier(nn.Module):
    """in_proj -> recurrent layer -> last step -> mid (ReLU) -> head."""

    def __init__(self, kind: str, dims: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.kind = kind
        self.in_proj = nn.Linear(dims, hidden)
        if kind == "lstm":
            self.rnn = nn.LSTM(hidden, hidden, batch_first=True)
        elif kind == "gru":
            self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        elif kind == "mingru":
            self.rnn = MinGRULayer(hidden, hidden)
        else:
            self.rnn = MambaS6Layer(hidden, 8)
        self.mid = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rnn(self.in_proj(x))[0]
        return self.head(torch.relu(self.mid(y[:, -1])))


def train(kind: str, data: tuple, hidden: int = 32, epochs: int = 60, seed: int = 0) -> Classifier:
    xtr, ytr, _, _, classes = data
    torch.manual_seed(seed)
    model = Classifier(kind, xtr.shape[2], hidden, classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    return model.eval()


def inject_outlier(model: Classifier, channel: int = 0, factor: float = 50.0) -> Classifier:
    """The same function with one activation channel ``factor`` x hotter.

    LSTM/GRU/minGRU: row ``channel`` of ``in_proj`` is scaled and the recurrent layer's input
    column divided (so the outlier lives in the cell's x). Mamba S6 also uses x elementwise, so
    there the hidden channel after ``mid``'s ReLU is scaled (ReLU commutes with a positive
    scale) and ``head``'s column divided.
    """
    import copy

    m = copy.deepcopy(model)
    with torch.no_grad():
        if m.kind == "mamba":
            m.mid.weight[channel] *= factor
            m.mid.bias[channel] *= factor
            m.head.weight[:, channel] /= factor
        else:
            m.in_proj.weight[channel] *= factor
            m.in_proj.bias[channel] *= factor
            w = m.rnn.weight_ih_l0 if m.kind in ("lstm", "gru") else m.rnn.weight
            w[:, channel] /= factor
    return m


# --------------------------------------------------------------------------- g2p-en
#: g2p-en's grapheme vocabulary (its documented order): the checkpoint has no vocabulary, but
#: its 29-row encoder embedding matches these 3 specials + 26 letters
GRAPHEMES = ["<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz"]
WORDS = ["quantization", "recurrent", "network", "compiler", "outlier", "silero", "activation", "hadamard",
         "calibration", "kernel", "onnxruntime", "integer", "phoneme", "grapheme", "speech", "edge", "python",
         "matrix", "precision", "rotation"]
SOS = 2  # decoder start id (g2p-en's phoneme list: <pad>, <unk>, <s>, </s>, ...)
EOS = 3  # decoder end id (</s>): agreement past it compares decoding beyond the word


class G2P(nn.Module):
    """g2p-en's GRU encoder-decoder with teacher forcing: the decoder reads given phoneme ids."""

    def __init__(self) -> None:
        super().__init__()
        ck = np.load(g2p_checkpoint_path())
        t = {k: torch.from_numpy(ck[k]) for k in ck.files}
        self.enc_emb = nn.Embedding.from_pretrained(t["enc_emb"])
        self.dec_emb = nn.Embedding.from_pretrained(t["dec_emb"])
        self.enc = nn.GRU(256, 256, batch_first=True)
        self.dec = nn.GRU(256, 256, batch_first=True)
        for gru, p in ((self.enc, "enc"), (self.dec, "dec")):
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                kind = "weight" if name[0] == "w" else "bias"
                getattr(gru, f"{kind}_{name[2:]}_l0").data.copy_(t[f"{p}_{name}"])
        self.fc = nn.Linear(256, t["fc_w"].shape[0])
        self.fc.weight.data.copy_(t["fc_w"])
        self.fc.bias.data.copy_(t["fc_b"])
        self.eval()

    def forward(self, graphemes: torch.Tensor, dec_in: torch.Tensor) -> torch.Tensor:
        _, h = self.enc(self.enc_emb(graphemes))
        y, _ = self.dec(self.dec_emb(dec_in), h)
        return self.fc(y)


def g2p_inputs(model: G2P, steps: int = 0, words: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grapheme ids of ``words`` (default ``WORDS``; + </s>, left-padded with <pad>) and the fp32 greedy decode as
    the decoder's teacher-forced input (so every model variant sees the same sequence)."""
    words = words or WORDS
    length = 13  # the longest word + </s>; the calibration list is padded to the same length
    ids = [[GRAPHEMES.index(c) for c in w] + [2] for w in words]
    assert max(map(len, ids)) <= length
    g = torch.tensor([[0] * (length - len(s)) + s for s in ids])
    steps = steps or length  # rnnc's tracer names both inputs' time dim T, so keep them equal
    with torch.no_grad():
        _, h = model.enc(model.enc_emb(g))
        tok = torch.full((len(words), 1), SOS)
        seq = [tok]
        for _ in range(steps - 1):
            y, h = model.dec(model.dec_emb(tok), h)
            tok = model.fc(y).argmax(-1)
            seq.append(tok)
    return g, torch.cat(seq, dim=1)


# --------------------------------------------------------------------------- Silero for ORT
def silero_flat_onnx(src: Path, dst: Path) -> Path:
    """Inline the 16 kHz branch of Silero's top-level ``If`` (sr == 16000) into the main graph:
    onnxruntime's quantizer does not look inside ``If`` branches, so this is what a user must do
    before ``quantize_dynamic`` can touch the model at all."""
    m = onnx.load(str(src))
    g = m.graph
    node = next(n for n in g.node if n.op_type == "If")
    branches = {a.name: a.g for a in node.attribute}
    branch = next(b for b in branches.values()
                  if any("model.stft" in i and "8k" not in i for n in b.node for i in n.input))
    keep = [n for n in g.node if n.op_type not in ("If", "Equal", "Gather", "Reshape") or n is node]
    del keep[keep.index(node)]
    rename = dict(zip((o.name for o in branch.output), node.output, strict=True))
    for n in branch.node:
        n.output[:] = [rename.get(o, o) for o in n.output]
        n.input[:] = [rename.get(i, i) for i in n.input]
    del g.node[:]
    g.node.extend([*keep, *branch.node])
    g.initializer.extend(branch.initializer)
    del g.value_info[:]
    inputs = [i for i in g.input if i.name != "sr"]
    del g.input[:]
    g.input.extend(inputs)
    onnx.save(m, str(dst))
    return dst
