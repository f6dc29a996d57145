"""Silero VAD through the generic TorchScript converter.

``silero_vad.jit`` is a stateful wrapper (it keeps the audio context and the LSTM state as
attributes between calls), so rnnc traces its inner 16 kHz model ``_model`` (``VADRNNJIT``):
``forward(x [B, 64 + 512], state [2, B, 128]) -> (prob [B, 1], state)``.  ``stream`` reproduces
the wrapper's chunking (64 samples of context before each 512-sample chunk, state carried), so
the original and the Program can be compared chunk by chunk on real audio.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from rnnc.ir import Program

CHUNK = 512
CONTEXT = 64


def load_inner_model(path: str | None = None) -> torch.jit.ScriptModule:
    """The 16 kHz ``VADRNNJIT`` inside ``silero_vad.jit`` (default: the fetched copy)."""
    from rnnc.data import silero_jit_path

    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; Silero still ships as it
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(path or silero_jit_path()), map_location="cpu").eval()
    return model._model


def trace_silero(path: str | None = None) -> Program:
    """A Program of the inner model with a symbolic batch."""
    from rnnc.frontend.api import trace

    inner = load_inner_model(path)
    return trace(inner, (torch.zeros(1, CONTEXT + CHUNK), torch.zeros(2, 1, 128)))


def chunk_inputs(step: Callable[[torch.Tensor, torch.Tensor], Any], audio: Any,
                 seconds: float | None = None, rate: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    """Every chunk's model input and the state it meets when ``audio`` (the first ``seconds`` of
    it) streams through ``step`` as the wrapper drives it: ``(x [N, 64 + 512], state [2, N, 128])``,
    one row per chunk -- calibration and validation batches with real, teacher-forced states."""
    wave = torch.as_tensor(audio)
    if seconds is not None:
        wave = wave[:int(seconds * rate)]
    xs, states = [], []
    state, context = torch.zeros(2, 1, 128), torch.zeros(1, CONTEXT)
    with torch.no_grad():
        for start in range(0, len(wave) - CHUNK + 1, CHUNK):
            chunk = wave[None, start:start + CHUNK]
            xs.append(torch.cat([context, chunk], dim=1))
            states.append(state)
            state = step(xs[-1], state)[1]
            context = chunk[:, -CONTEXT:]
    return torch.cat(xs), torch.cat(states, dim=1)


def stream(step: Callable[[torch.Tensor, torch.Tensor], Any], audio: torch.Tensor) -> torch.Tensor:
    """Speech probability per 512-sample chunk of ``audio [N]`` (or ``[B, N]``), as the wrapper
    computes it; ``step`` is the inner model or ``Program.run``."""
    audio = audio if audio.dim() == 2 else audio[None]
    batch = audio.shape[0]
    state = torch.zeros(2, batch, 128)
    context = torch.zeros(batch, CONTEXT)
    probs = []
    with torch.no_grad():
        for start in range(0, audio.shape[1] - CHUNK + 1, CHUNK):
            chunk = audio[:, start:start + CHUNK]
            prob, state = step(torch.cat([context, chunk], dim=1), state)
            probs.append(prob[:, 0])
            context = chunk[:, -CONTEXT:]
    return torch.stack(probs, dim=1)
