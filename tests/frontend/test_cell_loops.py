"""Cells stepped in Python loops (traced at T=5, run at T=9) and user-written cells."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnc.frontend import Recurrent, trace
from rnnc.tolerances import assert_close

CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}


class Loop(nn.Module):
    def __init__(self, kind: str, time_major: bool = False) -> None:
        super().__init__()
        self.kind, self.time_major = kind, time_major
        self.cell = CELLS[kind](4, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.size(1) if self.time_major else x.size(0)
        h = torch.zeros(batch, 6)
        c = torch.zeros(batch, 6)
        ys = []
        for t in range(x.size(0) if self.time_major else x.size(1)):
            x_t = x[t] if self.time_major else x[:, t]
            if self.kind == "lstm":
                h, c = self.cell(x_t, (h, c))
            else:
                h = self.cell(x_t, h)
            ys.append(h)
        return self.head(torch.stack(ys, dim=1)), h


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("time_major", [False, True])
def test_cell_loop_merges_into_one_rnn(kind: str, time_major: bool) -> None:
    torch.manual_seed(0)
    model = Loop(kind, time_major).eval()
    program = trace(model, torch.randn(5, 2, 4) if time_major else torch.randn(2, 5, 4))
    assert len(program.rnn_nodes()) == 1
    x = torch.randn(9, 3, 4) if time_major else torch.randn(3, 9, 4)
    for got, want in zip(program.run(x), model(x), strict=True):
        assert_close(got, want)


class OneStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(4, 6)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cell(x, (h, c))


def test_single_cell_call_with_state() -> None:
    model = OneStep()
    args = (torch.randn(2, 4), torch.randn(2, 6), torch.randn(2, 6))
    program = trace(model, args)
    args = (torch.randn(5, 4), torch.randn(5, 6), torch.randn(5, 6))
    for got, want in zip(program.run(*args), model(*args), strict=True):
        assert_close(got, want)


class LeakyCell(nn.Module):
    """A user-written cell with two states."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 6)
        self.rec = nn.Linear(6, 6, bias=False)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, m = state
        h2 = torch.tanh(self.inp(x) + self.rec(h))
        m2 = 0.9 * m + 0.1 * h2
        return h2 * torch.sigmoid(m2), (h2, m2)


class UserModel(nn.Module):
    def __init__(self, recurrence: str = "nonlinear") -> None:
        super().__init__()
        self.rec = Recurrent(LeakyCell(), [(6,), (6,)], input_size=4, recurrence=recurrence,
                             state_names=["h", "m"])
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, (h, m) = self.rec(x)
        return self.out(y), m


@pytest.mark.parametrize("recurrence", ["nonlinear", "linear"])
def test_user_cell(recurrence: str) -> None:
    torch.manual_seed(0)
    model = UserModel(recurrence).eval()
    program = trace(model, torch.randn(2, 5, 4))
    (node,) = program.rnn_nodes()
    cell = node.attr("cells")[0]
    assert cell.kind == "user:LeakyCell" and cell.recurrence == recurrence and cell.state_names == ("h", "m")
    x = torch.randn(3, 9, 4)
    for got, want in zip(program.run(x), model(x), strict=True):
        assert_close(got, want)
