"""A small trained speech model: frame-level voice activity detection with an LSTM or GRU.

Trained in seconds on the pyannote speech sample (``rnnc.data``) with the sample's RTTM turns
as frame labels.  The 30 s are cut into 64-frame blocks (about 2 s); every third block is held
out, so both classes (the first 6.7 s have no speech) appear in training and in evaluation and
the test frames' labels are never trained on.  Features are 32 log band energies of 512-sample
frames (the hop of Silero VAD and of ``speech_frame_labels``).  Used by the mobile-export tests
(an LSTM/GRU speech model beside Silero) and ``benchmarks/mobile_export.py``: trained weights,
not random ones, so quantization meets real activation ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

HOP = 512
BANDS = 32
BLOCK = 64  # frames per train/test block
WINDOW = 32  # frames per training window


def log_bands(audio: np.ndarray) -> np.ndarray:
    """``[frames, BANDS]`` log energies of Hann-windowed 512-sample frames in equal-width bands."""
    frames = len(audio) // HOP
    x = audio[:frames * HOP].reshape(frames, HOP) * np.hanning(HOP).astype(np.float32)
    power = np.abs(np.fft.rfft(x, axis=1)[:, :256]) ** 2  # drop Nyquist: 256 bins, 8 per band
    return np.log(power.reshape(frames, BANDS, -1).mean(axis=2) + 1e-6).astype(np.float32)


class FrameVAD(nn.Module):
    """Normalise, one recurrent layer, a linear head: speech probability per frame."""

    def __init__(self, kind: str, mean: np.ndarray, std: np.ndarray, hidden: int = 48) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(BANDS, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn((x - self.mean) / self.std)
        return torch.sigmoid(self.head(y))


@dataclass
class Trained:
    model: FrameVAD
    feats: torch.Tensor  # [1, frames, BANDS]: the whole sample (run it whole, score the test frames)
    labels: np.ndarray  # [frames] 0/1
    test: np.ndarray  # [frames] bool: held-out frames

    def train_windows(self, count: int = 16) -> torch.Tensor:
        """``[count, WINDOW, BANDS]`` windows lying wholly in training blocks, spread over the sample
        (calibration data that never touches the held-out frames)."""
        held = self.test
        starts = [s for s in range(0, self.feats.shape[1] - WINDOW, WINDOW) if not held[s:s + WINDOW].any()]
        pick = starts[:: max(1, len(starts) // count)][:count]
        return torch.stack([self.feats[0, s:s + WINDOW] for s in pick])

    def accuracy(self, speech: np.ndarray) -> float:
        """Frame accuracy on the held-out frames of ``speech`` (0/1 per frame, from frame 0 on)."""
        n = min(len(speech), len(self.labels))
        mask = self.test[:n]
        return float((speech[:n][mask] == self.labels[:n][mask]).mean())


def train_vad(kind: str, seed: int = 0, steps: int = 200) -> Trained:
    """Train a :class:`FrameVAD` on the training blocks (deterministic for a seed)."""
    from rnnc.data import speech_frame_labels, speech_sample

    audio, rate = speech_sample()
    feats = log_bands(audio)
    labels = speech_frame_labels(len(feats), hop=HOP, rate=rate).astype(np.int64)
    block = np.arange(len(feats)) // BLOCK
    test = block % 3 == 2
    starts = [s for s in range(len(feats) - WINDOW) if not test[s:s + WINDOW].any()]
    train = feats[~test]
    torch.manual_seed(seed)
    model = FrameVAD(kind, train.mean(axis=0), train.std(axis=0) + 1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.from_numpy(feats), torch.from_numpy(labels.astype(np.float32))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):  # random training windows, 8 per batch
        pick = torch.randint(0, len(starts), (8,), generator=gen)
        xb = torch.stack([x[starts[i]:starts[i] + WINDOW] for i in pick])
        yb = torch.stack([y[starts[i]:starts[i] + WINDOW] for i in pick])
        loss = nn.functional.binary_cross_entropy(model(xb)[..., 0], yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return Trained(model, x[None], labels, test)


def stream_speech(step, feats: torch.Tensor, chunk: int, states: list[np.ndarray]) -> np.ndarray:
    """Speech (0/1) per frame of ``feats [1, N, BANDS]`` run chunk by chunk through ``step(x,
    *states) -> (probs, *states)`` (an onnxruntime session's run, say); a last partial chunk is
    dropped."""
    out = []
    for start in range(0, feats.shape[1] - chunk + 1, chunk):
        probs, *states = step(feats[:, start:start + chunk].numpy(), *states)
        out.append((np.asarray(probs).reshape(-1) > 0.5).astype(np.int64))
    return np.concatenate(out)
