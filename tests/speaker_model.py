"""A trained speaker encoder: a 3-layer LSTM(256) telling the speech sample's two speakers apart.

The issue that asked for ``scheme="auto"`` was measured on a speaker encoder of this shape
(3-layer LSTM(256), ROC-AUC), where w8a8 lost 13 AUC points; this one is trained here, in about a
minute on two cores, on the pyannote sample (``rnnc.data``): 40 log band energies per 10 ms
(hop 160), 0.3 s windows (30 frames) in which exactly one speaker talks by the RTTM turns.
The sample is cut into one-second blocks; blocks ``k % 5 == 1`` are validation, ``k % 5 == 3``
test, the rest train, so no window crosses into another split and both speakers appear in each.
The score is the ROC-AUC of ``logit[speaker B] - logit[speaker A]`` over windows (rank form,
:func:`roc_auc`): scale-free, and as sensitive to quantization as a verification score.
Used by ``benchmarks/quant_auto.py`` (not by timed tests: training takes a minute).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

HOP = 160
BANDS = 40
WINDOW = 30  # frames: 0.3 s
STRIDE = 3


def log_bands(audio: np.ndarray, hop: int = HOP, bands: int = BANDS, frame: int = 400) -> np.ndarray:
    """``[frames, bands]`` log energies of Hann-windowed ``frame``-sample frames every ``hop``
    samples, in equal-width bands of the first ``bands * (frame // 2 // bands)`` FFT bins."""
    frames = (len(audio) - frame) // hop + 1
    idx = np.arange(frame)[None, :] + hop * np.arange(frames)[:, None]
    x = audio[idx] * np.hanning(frame).astype(np.float32)
    per = frame // 2 // bands
    power = np.abs(np.fft.rfft(x, axis=1)[:, :bands * per]) ** 2
    return np.log(power.reshape(frames, bands, per).mean(axis=2) + 1e-6).astype(np.float32)


class SpeakerLSTM(nn.Module):
    """Normalise, 3-layer LSTM, the outputs averaged over time, a linear head over the speakers."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, speakers: int, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))
        self.rnn = nn.LSTM(BANDS, hidden, layers, batch_first=True, dropout=0.3)
        self.head = nn.Linear(hidden, speakers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn((x - self.mean) / self.std)
        return self.head(y.mean(dim=1))


@dataclass
class Speakers:
    model: SpeakerLSTM
    windows: dict[str, torch.Tensor]  # split -> [n, WINDOW, BANDS]
    labels: dict[str, np.ndarray]  # split -> [n] speaker index


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Probability that a positive window scores above a negative one (ties count half): the
    Mann-Whitney form of the ROC area, from average ranks."""
    score, label = np.asarray(score, np.float64), np.asarray(label).astype(bool)
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):  # average rank over ties
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos, neg = int(label.sum()), int((~label).sum())
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def margin(logits: np.ndarray) -> np.ndarray:
    """The verification score of each window: speaker B's logit minus speaker A's."""
    logits = np.asarray(logits)
    return logits[:, 1] - logits[:, 0]


def speaker_windows() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Windows of the sample where exactly one speaker talks, by split (see the module docstring)."""
    from rnnc.data import speech_labels, speech_sample

    audio, rate = speech_sample()
    feats = log_bands(audio)
    turns = speech_labels()
    names = sorted({who for _, _, who in turns})
    t = (np.arange(len(feats)) * HOP + 200) / rate  # frame centres, seconds
    who = np.full(len(feats), -1)
    for k, name in enumerate(names):
        talking = np.zeros(len(feats), bool)
        for start, end, speaker in turns:
            if speaker == name:
                talking |= (t >= start) & (t < end)
        who = np.where(talking & (who == -1), k, np.where(talking, -2, who))  # -2: overlap
    block = t.astype(int) % 5
    split_of = {0: "train", 1: "validation", 2: "train", 3: "test", 4: "train"}
    xs: dict[str, list] = {"train": [], "validation": [], "test": []}
    ys: dict[str, list] = {"train": [], "validation": [], "test": []}
    for s in range(0, len(feats) - WINDOW, STRIDE):
        span = slice(s, s + WINDOW)
        if who[s] >= 0 and (who[span] == who[s]).all() and (block[span] == block[s]).all():
            split = split_of[int(block[s])]
            xs[split].append(feats[span])
            ys[split].append(who[s])
    return ({k: np.stack(v) for k, v in xs.items()}, {k: np.asarray(v) for k, v in ys.items()})


def train_speakers(seed: int = 0, steps: int = 120) -> Speakers:
    """Train a :class:`SpeakerLSTM` on the training windows (deterministic for a seed)."""
    xs, ys = speaker_windows()
    train = xs["train"].reshape(-1, BANDS)
    torch.manual_seed(seed)
    model = SpeakerLSTM(train.mean(axis=0), train.std(axis=0) + 1e-3, speakers=int(ys["train"].max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = torch.from_numpy(xs["train"]), torch.from_numpy(ys["train"])
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(0, len(x), (32,), generator=gen)
        noisy = x[pick] + 0.3 * torch.randn(x[pick].shape, generator=gen) * model.std  # augmentation
        loss = nn.functional.cross_entropy(model(noisy), y[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return Speakers(model, {k: torch.from_numpy(v) for k, v in xs.items()}, ys)
