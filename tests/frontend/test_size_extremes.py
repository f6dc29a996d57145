"""``max``/``min`` of traced sizes stay symbolic: two streams padded to the longer, a skip
connection cropped to the shorter, a buffer as long as the longest input.  Python's ``max`` of
two sizes returns whichever was larger at the example; kept as that number (or that size), the
Program pads by a negative amount or crops to the wrong length where the other input is the
longer.  Checked against torch eager at sizes where each input is the longer in turn, in the
interpreter, onnxruntime and ``rnnc.compile``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.tolerances import assert_close


class PadToLonger(nn.Module):
    """Two encoders over streams of different lengths, summed after padding both to the longer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.GRU(4, 8, batch_first=True)
        self.b = nn.GRU(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ha, _ = self.a(x)
        hb, _ = self.b(y)
        n = max(ha.size(1), hb.size(1))
        ha = F.pad(ha, (0, 0, 0, n - ha.size(1)))
        hb = F.pad(hb, (0, 0, 0, n - hb.size(1)))
        return ha + hb


class CropToShorter(nn.Module):
    """A skip connection cropped to the shorter of two lengths (``min`` over a generator)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 8, batch_first=True)
        self.skip = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)
        n = min(t.shape[1] for t in (h, y))
        return h[:, :n] * torch.tanh(self.skip(y[:, :n]))


class LongestBuffer(nn.Module):
    """A zero buffer as long as the longer input (``max`` of a list), written from the start."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)
        out = h.new_zeros(h.size(0), max([h.size(1), y.size(1)]), 8)
        out[:, :h.size(1)] = h
        return out + y.sum(-1, keepdim=True)[:, :1]


MODELS = [PadToLonger, CropToShorter, LongestBuffer]


def _inputs(batch: int, tx: int, ty: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch * 1000 + tx * 10 + ty)
    return torch.randn(batch, tx, 4, generator=g), torch.randn(batch, ty, 4, generator=g)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_extreme_of_sizes_follows_the_inputs(cls: type[nn.Module], tmp_path: object) -> None:
    torch.manual_seed(0)
    model = cls().eval()
    program = trace_quietly(model, _inputs(2, 10, 7))
    x, y = (t for _, t in program.graph.inputs)
    assert isinstance(x.shape[1], str) and isinstance(y.shape[1], str) and x.shape[1] != y.shape[1]
    for sizes in ((3, 5, 12), (3, 9, 9), (1, 13, 2)):  # y longer, equal, x longer
        matches_torch(program, model, _inputs(*sizes), tmp_path, f"{cls.__name__}_{sizes[1]}_{sizes[2]}")


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_compiled_extreme_of_sizes(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = cls().eval()
    compiled = rnnc.compile(model, _inputs(2, 10, 7))
    for sizes in ((3, 5, 12), (2, 11, 4)):
        inputs = _inputs(*sizes)
        with torch.no_grad():
            want = model(*inputs)
        assert_close(compiled(*inputs), want, backend="c")


def test_max_of_a_size_and_a_constant() -> None:
    """``max(T, 16)``: a floor on a length (a minimum analysis window), below and above it."""

    class AtLeast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(4, 8, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, _ = self.rnn(x)
            return F.pad(h, (0, 0, 0, max(h.size(1), 16) - h.size(1)))

    model = AtLeast().eval()
    program = trace_quietly(model, (torch.randn(2, 20, 4),))
    for t in (5, 16, 30):
        matches_torch(program, model, (torch.randn(3, t, 4),))
