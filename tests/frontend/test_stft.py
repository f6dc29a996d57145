"""``torch.stft`` front ends trace as a strided conv1d with a DFT basis (``frontend/spectral.py``).

Checked against torch's own FFT-based stft, at a batch and a signal length not traced at, in the
interpreter and in onnxruntime; an operation on the complex result rnnc does not express is one
clear error naming it."""

from __future__ import annotations

import pytest
import torch
from program_checks import matches_torch  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UnsupportedError

FRONTS = {
    "abs_hann": lambda s, w: torch.stft(w, 64, 16, window=s.win, return_complex=True).abs(),
    "power_parts": lambda s, w: (lambda z: z.real ** 2 + z.imag ** 2)(
        torch.stft(w, n_fft=64, hop_length=16, win_length=64, window=s.win, center=True, return_complex=True)),
    "real_pairs": lambda s, w: torch.stft(w, 64, 16, window=s.win, return_complex=False).pow(2).sum(-1),
    "view_as_real": lambda s, w: torch.view_as_real(torch.stft(w, 64, 16, window=s.win, return_complex=True)
                                                    ).pow(2).sum(-1),
    "short_window_normalized": lambda s, w: torch.stft(w, 64, 16, win_length=48, window=torch.hann_window(48),
                                                       normalized=True, return_complex=True).abs(),
    "no_center_no_window": lambda s, w: torch.stft(w, 64, 32, center=False, return_complex=True).abs(),
}


class Front(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.register_buffer("win", torch.hann_window(64))
        self.lstm = nn.LSTM(33, 16, batch_first=True)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.lstm(torch.log1p(self.fn(self, wav)).transpose(1, 2))[0]


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_stft_front_end_matches_torch(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = Front(FRONTS[name]).eval()
    g = torch.Generator().manual_seed(1)
    program = rnnc.trace(model, (torch.randn(2, 512, generator=g),))
    assert all(isinstance(d, str) for d in program.graph.inputs[0][1].shape)
    matches_torch(program, model, (torch.randn(3, 800, generator=g),), tmp_path, name)


def test_an_unsupported_complex_op_is_named() -> None:
    model = Front(lambda s, w: torch.stft(w, 64, 16, window=s.win, return_complex=True).angle()).eval()
    with pytest.raises(UnsupportedError, match="angle of a complex value"):
        rnnc.trace(model, (torch.randn(2, 512),), dynamic=[{0: "B", 1: "T"}])
