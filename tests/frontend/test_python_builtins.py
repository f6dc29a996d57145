"""Python builtins and numpy numbers in a model's forward while tracing: ``isinstance(x,
torch.Tensor)`` of a traced tensor is True (DeepComplexCRN's complex convolutions branch on it),
and numpy integers as slice bounds are Python numbers (pytorch-ntm's ``np.cumsum`` column splits).
Checked against torch eager in the interpreter."""

from __future__ import annotations

import numpy as np
import torch
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc


class ComplexConv(nn.Module):
    """A complex 1-D convolution taking either a tensor of [real; imag] channels or a pair."""

    def __init__(self) -> None:
        super().__init__()
        self.re = nn.Conv1d(2, 3, 3, padding=1)
        self.im = nn.Conv1d(2, 3, 3, padding=1)
        self.rnn = nn.GRU(6, 5, batch_first=True)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # [B, 4, T]
        if isinstance(inputs, torch.Tensor):
            real, imag = torch.chunk(inputs, 2, 1)
        elif isinstance(inputs, (tuple, list)):
            real, imag = inputs
        out = torch.cat([self.re(real) - self.im(imag), self.re(imag) + self.im(real)], 1)
        return self.rnn(out.transpose(1, 2))[0]


class NumpySplits(nn.Module):
    """Columns split at numpy offsets, as pytorch-ntm's ``_split_cols``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 7)
        self.rnn = nn.GRU(3, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mat = self.fc(x)
        ends = np.cumsum([0, 3, 4])
        a, b = (mat[..., s:e] for s, e in zip(ends[:-1], ends[1:], strict=True))
        return self.rnn(a)[0] * b.sum(-1, keepdim=True)


def test_isinstance_of_a_traced_tensor_is_a_tensor() -> None:
    torch.manual_seed(0)
    model = ComplexConv().eval()
    program = rnnc.trace(model, (torch.randn(2, 4, 12),), dynamic=[{0: "B", 2: "T"}])
    matches_torch(program, model, (torch.randn(3, 4, 17),))


def test_numpy_integers_bound_slices() -> None:
    torch.manual_seed(0)
    model = NumpySplits().eval()
    program = trace_quietly(model, (torch.randn(2, 12, 4),))
    assert program.graph.inputs[0][1].shape == ("B", "T", 4)
    matches_torch(program, model, (torch.randn(3, 17, 4),))
