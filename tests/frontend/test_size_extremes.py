"""``max``/``min`` of traced sizes stay symbolic: two streams padded to the longer, a skip
connection cropped to the shorter, a buffer as long as the longest input.  Python's ``max`` of
two sizes returns whichever was larger at the example; kept as that number (or that size), the
Program pads by a negative amount or crops to the wrong length where the other input is the
longer.  Checked against torch eager at sizes where each input is the longer in turn, in the
interpreter, onnxruntime and ``rnnc.compile``."""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UserInputError
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


# a utilities module of the user's, as models import ``pad_to_same_length`` from one
_utils = types.ModuleType("rnnc_test_size_utils")
exec(  # noqa: S102 -- the module's source, fixed here
    "import torch.nn.functional as F\n"
    "def pad_same(a, b):\n"
    "    n = max(a.size(1), b.size(1))\n"
    "    return F.pad(a, (0, 0, 0, n - a.size(1))), F.pad(b, (0, 0, 0, n - b.size(1)))\n"
    "def crop_same(a, b):\n"
    "    if a.size(1) > b.size(1):\n"
    "        return a[:, :b.size(1)], b\n"
    "    return a, b[:, :a.size(1)]\n", _utils.__dict__)
_utils.pad_same.__module__ = _utils.crop_same.__module__ = _utils.__name__
sys.modules[_utils.__name__] = _utils
pad_same, crop_same = _utils.pad_same, _utils.crop_same


class ImportedHelper(nn.Module):
    """Two streams made the same length by a function of the user's utilities module."""

    def __init__(self, align: str = "pad_same") -> None:
        super().__init__()
        self.a = nn.GRU(4, 8, batch_first=True)
        self.b = nn.GRU(4, 8, batch_first=True)
        self.align = align

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ha, hb = globals()[self.align](self.a(x)[0], self.b(y)[0])
        return ha + hb


MODELS = [PadToLonger, CropToShorter, LongestBuffer, ImportedHelper]


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


def test_branch_on_two_sizes_is_said() -> None:
    """``if a.size(1) > b.size(1): crop a else crop b``: a branch on sizes keeps the example's
    side; growing every length together would not show it, so the trace checks grow each alone and
    the trace says what it fixed.  The Program is never silently wrong: it refuses a length it
    fixed by name, and where the other side of the branch is taken (``x`` shorter than the fixed
    ``y``) its crop fails at run time."""
    model = ImportedHelper("crop_same").eval()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        program = rnnc.trace(model, _inputs(2, 10, 7))
    assert any("rnnc.trace" in str(w.message) for w in said)
    ran = 0
    for sizes in ((3, 5, 12), (3, 12, 5), (3, 5, 7), (2, 10, 7)):
        inputs = _inputs(*sizes)
        try:
            got = program.run(*inputs)
        except (UserInputError, RuntimeError):
            continue  # a length the trace fixed, refused by name; the other branch, failing
        with torch.no_grad():
            assert_close(got, model(*inputs), backend="interp")
        ran += 1
    assert ran >= 1


def test_torch_sym_max_of_two_sizes() -> None:
    """``torch.sym_max(x.size(1), y.size(1))`` in a forward: the same size op as ``max``."""

    class SymMax(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(4, 8, batch_first=True)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            h, _ = self.rnn(x)
            return F.pad(h, (0, 0, 0, torch.sym_max(x.size(1), y.size(1)) - x.size(1)))

    torch.manual_seed(0)
    model = SymMax().eval()
    program = trace_quietly(model, _inputs(2, 5, 3))
    for sizes in ((1, 3, 7), (2, 6, 2)):
        matches_torch(program, model, _inputs(*sizes))
