"""nn.LSTM/GRU/RNN through the frontend: interpreter vs torch over the option sweep."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from rnnc.frontend import trace
from rnnc.tolerances import assert_close

KINDS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class Wrap(nn.Module):
    """Returns every output of the layer, so final states are compared too."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, state = self.layer(x)
        return (y, *state) if isinstance(state, tuple) else (y, state)


def _check(layer: nn.Module, batch: int, steps: int, size_in: int, batch_first: bool) -> None:
    torch.manual_seed(0)
    model = Wrap(layer).eval()
    shape = (2, 3, size_in) if batch_first else (3, 2, size_in)
    program = trace(model, torch.randn(shape))
    x = torch.randn((batch, steps, size_in) if batch_first else (steps, batch, size_in))
    for got, want in zip(program.run(x), model(x), strict=True):
        assert_close(got, want, msg=f"{layer}")


FAST = [  # one representative per option, B/T/H spread out
    ("lstm", 1, 1, 8, 1, False, True), ("lstm", 3, 7, 33, 2, True, False), ("gru", 3, 64, 8, 2, True, True),
    ("gru", 1, 7, 33, 1, False, False), ("rnn", 3, 7, 8, 2, True, True), ("rnn", 1, 64, 33, 1, False, False),
    ("lstm", 3, 64, 128, 1, True, True), ("gru", 3, 1, 128, 1, False, True),
]
ALL = [c for c in itertools.product(KINDS, (1, 3), (1, 7, 64), (8, 33, 128), (1, 2), (False, True), (False, True))
       if c not in FAST]


@pytest.mark.parametrize("kind,batch,steps,hidden,layers,bidir,batch_first", FAST)
def test_sweep_fast(kind: str, batch: int, steps: int, hidden: int, layers: int, bidir: bool,
                    batch_first: bool) -> None:
    layer = KINDS[kind](5, hidden, num_layers=layers, bidirectional=bidir, batch_first=batch_first)
    _check(layer, batch, steps, 5, batch_first)


@pytest.mark.slow
@pytest.mark.parametrize("kind,batch,steps,hidden,layers,bidir,batch_first", ALL)
def test_sweep_full(kind: str, batch: int, steps: int, hidden: int, layers: int, bidir: bool,
                    batch_first: bool) -> None:
    layer = KINDS[kind](5, hidden, num_layers=layers, bidirectional=bidir, batch_first=batch_first)
    _check(layer, batch, steps, 5, batch_first)


@pytest.mark.parametrize("bidir", [False, True])
def test_lstm_proj_size(bidir: bool) -> None:
    _check(nn.LSTM(6, 16, num_layers=2, proj_size=4, bidirectional=bidir, batch_first=True), 3, 9, 6, True)


@pytest.mark.parametrize("kind", list(KINDS))
def test_bias_false(kind: str) -> None:
    _check(KINDS[kind](4, 8, num_layers=2, bias=False), 2, 6, 4, False)


def test_relu_rnn() -> None:
    _check(nn.RNN(4, 8, nonlinearity="relu", bidirectional=True, batch_first=True), 3, 7, 4, True)


def test_batch_and_time_are_symbolic() -> None:
    program = trace(Wrap(nn.GRU(4, 8, batch_first=True)), torch.randn(2, 3, 4))
    assert program.graph.inputs[0][1].shape == ("B", "T", 4)


class WithState(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.layer = KINDS[kind](4, 8, num_layers=2, bidirectional=True)

    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if self.kind == "lstm":
            y, (h, c) = self.layer(x, (h0, c0))
            return y, h, c
        y, h = self.layer(x, h0)
        return y, h


@pytest.mark.parametrize("kind", list(KINDS))
def test_initial_states(kind: str) -> None:
    model = WithState(kind).eval()
    n = 3 if kind == "lstm" else 2
    program = trace(model, (torch.randn(5, 2, 4), torch.randn(4, 2, 8), torch.randn(4, 2, 8))[:n])
    assert program.graph.inputs[1][1].shape == (4, "B", 8)
    args = (torch.randn(9, 3, 4), torch.randn(4, 3, 8), torch.randn(4, 3, 8))[:n]
    for got, want in zip(program.run(*args), model(*args), strict=True):
        assert_close(got, want)


class ZeroInit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(1, x.size(0), 6)
        out, (h, _c) = self.lstm(x, (h0, h0))
        return out.reshape(x.shape[0], -1)[:, :6] + h[0]


def test_zero_initial_state_and_symbolic_reshape() -> None:
    model = ZeroInit()
    program = trace(model, torch.randn(2, 3, 4))
    x = torch.randn(4, 3, 4)
    assert_close(program.run(x), model(x))
