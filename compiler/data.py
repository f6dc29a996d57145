"""Where the real models and data of docs/data.md live once ``tools/fetch_data.py`` ran.

Tests, the demo and the benchmarks find files through these helpers rather than hard-coded
paths, so a missing download fails with one sentence that says what to run.  Nothing here
downloads: fetching happens once, ahead of time (``make data``).
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from rnnc.errors import UserInputError

_HINT = "run `make data` (or `python tools/fetch_data.py`) to fetch it"


def data_dir() -> Path:
    """``.cache/data`` of the checkout, or ``$RNNC_DATA_DIR`` when set (e.g. a shared cache)."""
    env = os.environ.get("RNNC_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / ".cache" / "data"


def data_file(relative: str) -> Path:
    """Path of one fetched file; a clear ``UserInputError`` when it is not there yet."""
    path = data_dir() / relative
    if not path.is_file():
        raise UserInputError(f"data file {path} is missing; {_HINT}")
    return path


def silero_jit_path() -> Path:
    """The TorchScript Silero VAD model (``silero_vad.jit`` from ``silero-vad==6.2.3``)."""
    return data_file("silero_vad/silero_vad.jit")


def silero_onnx_path(flat: bool = True) -> Path:
    """Silero VAD as ONNX; ``flat`` picks the If-less opset-18 graph that quantizers can read."""
    return data_file("silero_vad/silero_vad_op18_ifless.onnx" if flat else "silero_vad/silero_vad.onnx")


def g2p_checkpoint_path() -> Path:
    """``checkpoint20.npz`` of g2p-en 2.1.0: real GRU encoder/decoder weights (hidden 256)."""
    return data_file("g2p_en/checkpoint20.npz")


def timeseries_path(name: str, split: str = "TRAIN") -> Path:
    """A sktime ``.ts`` data set file (GunPoint, JapaneseVowels, ArrowHead; TRAIN or TEST)."""
    return data_file(f"timeseries/{name}_{split.upper()}.ts")


def speech_sample() -> tuple[np.ndarray, int]:
    """pyannote.audio's 30 s speech sample as float32 in [-1, 1] and its rate (16 kHz)."""
    path = data_file("speech/sample.wav")
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise UserInputError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    audio = pcm.reshape(-1, channels).mean(axis=1) if channels > 1 else pcm
    return (audio.astype(np.float32) / 32768.0), rate


def speech_labels() -> list[tuple[float, float, str]]:
    """Speech turns of the sample from its RTTM file: (start s, end s, speaker)."""
    turns = []
    for line in data_file("speech/sample.rttm").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0] == "SPEAKER":
            start, dur = float(parts[3]), float(parts[4])
            turns.append((start, start + dur, parts[7]))
    return turns


def speech_frame_labels(n_frames: int, hop: int = 512, rate: int = 16000) -> np.ndarray:
    """1 where any speaker talks in the frame ``[i*hop, (i+1)*hop)`` (frame-level VAD truth)."""
    labels = np.zeros(n_frames, dtype=np.int64)
    for start, end, _ in speech_labels():
        lo = int(start * rate) // hop
        hi = min(n_frames, int(np.ceil(end * rate / hop)))
        labels[lo:hi] = 1
    return labels
