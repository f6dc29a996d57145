"""A backward pass written by hand: the loop runs over ``torch.flip``'d inputs and its Python list
is reversed before the stack (Time-aware LSTM's ``outputs.reverse()``, ``outputs[::-1]``,
``reversed(outputs)``).  The stack then reads the last step first; rewritten as the flip of the
stack in step order (``stacks.py``) the loop rolls.  Before, the length stayed the traced one.
Checked against torch eager at other lengths and batches, in the interpreter and onnxruntime."""

from __future__ import annotations

import pytest
import torch
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn


class ReverseInPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 4]
        x = torch.flip(x, [1])
        h = x.new_zeros(x.size(0), 8)
        outputs = []
        for s in range(x.size(1)):
            h = self.cell(x[:, s], h)
            outputs.append(h)
        outputs.reverse()
        return torch.stack(outputs, 1)


class SliceReversed(nn.Module):
    """A recurrence of tensor ops (no cell), its list read back with ``[::-1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.decay = nn.Parameter(torch.rand(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 4]
        h = torch.zeros(x.size(1), 6)
        outs = []
        for t in range(x.size(0) - 1, -1, -1):
            h = torch.sigmoid(self.decay) * h + torch.tanh(self.a(x[t]))
            outs.append(h)
        return torch.stack(outs[::-1])


class CatReversed(nn.Module):
    """Pieces ``[B, 1, H]`` concatenated from ``reversed(...)`` along the length."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 4]
        h = c = x.new_zeros(x.size(0), 5)
        pieces = []
        for t in reversed(range(x.size(1))):
            h, c = self.cell(x[:, t], (h, c))
            pieces.append(h.unsqueeze(1))
        return torch.cat(list(reversed(pieces)), 1)


@pytest.mark.parametrize("cls", [ReverseInPlace, SliceReversed, CatReversed], ids=lambda c: c.__name__)
def test_reversed_list_keeps_length(cls: type[nn.Module], tmp_path: object) -> None:
    torch.manual_seed(0)
    model = cls().eval()
    time_major = cls is SliceReversed
    shape = (11, 2, 4) if time_major else (2, 11, 4)
    program = trace_quietly(model, (torch.randn(*shape),))
    assert all(isinstance(d, str) for d in program.graph.inputs[0][1].shape[:2])
    for t, b in ((11, 2), (19, 3), (4, 1)):
        x = torch.randn(t, b, 4) if time_major else torch.randn(b, t, 4)
        matches_torch(program, model, (x,), tmp_path, f"{cls.__name__}_{t}")


def test_reversed_cat_of_longer_pieces_is_left_alone() -> None:
    """``cat(reversed(chunks))`` of pieces two long: a flip would reverse inside them too."""

    class Pairs(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 8, 3]
            pieces = [torch.tanh(x[:, k:k + 2]) for k in range(0, 8, 2)]
            return torch.cat(list(reversed(pieces)), 1)

    model = Pairs()
    x = torch.randn(2, 8, 3)
    program = trace_quietly(model, (x,), dynamic={"x": {0: "B"}})
    matches_torch(program, model, (torch.randn(3, 8, 3),))


def test_a_fixed_count_loop_reversed_keeps_the_length_free() -> None:
    """Four steps of a cell whatever the length, traced at length four: the flipped stack would
    roll them over T; that try is dropped when the check at another length disagrees."""

    class FourSteps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 4]
            h = x.new_zeros(x.size(0), 4)
            outs = []
            for t in range(4):
                h = self.cell(x[:, t], h)
                outs.append(h)
            outs.reverse()
            return torch.stack(outs, 1) + x.mean(1, keepdim=True)

    torch.manual_seed(0)
    model = FourSteps().eval()
    program = trace_quietly(model, (torch.randn(2, 4, 4),))
    assert isinstance(program.graph.inputs[0][1].shape[1], str)
    matches_torch(program, model, (torch.randn(3, 6, 4),))
