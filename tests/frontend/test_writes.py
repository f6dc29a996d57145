"""Writes into preallocated tensors (``outputs[t] = h``, ``y[:, t] = h``, ``y[0, :, 1:3] = v``):
recorded as functional writes, so later reads see them.  Such a loop does not roll over T yet:
the trace keeps the batch symbolic and says the length stayed fixed; at that length the Program
and its ONNX export match torch at another batch."""

from __future__ import annotations

import warnings

import pytest
import torch
from program_checks import matches_torch  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UnsupportedError


class PreallocatedOutputs(nn.Module):  # the seq2seq tutorials' decoder loop
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 4]
        outputs = torch.zeros(x.shape[0], x.shape[1], 8)
        h = torch.zeros(x.shape[1], 8)
        for t in range(1, x.shape[0]):
            h = self.cell(x[t], h)
            outputs[t] = h
        outputs[0, :, 1:3] = -1.0
        outputs[:, :, -2:] = outputs[:, :, -2:] * 0.5
        return outputs


def test_writes_into_a_preallocated_tensor(tmp_path) -> None:
    torch.manual_seed(0)
    model = PreallocatedOutputs().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(model, (torch.randn(6, 2, 4),))
    assert [w for w in caught if "kept fewer dims symbolic" in str(w.message)]  # T fixed, and said
    assert program.graph.inputs[0][1].shape == (6, "B", 4)
    matches_torch(program, model, (torch.randn(6, 5, 4),), tmp_path, "prealloc")


class ViewThenWrite(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros(x.shape[0], x.shape[1], 4)
        first = y[:, 0]  # a view taken before the write: torch sees the write through it
        y[:, 0] = x[:, 0] * 2
        return y + first.unsqueeze(1)


class WriteThroughView(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros(x.shape[0], x.shape[1], 4)
        row = y[:, 0]
        row[:, 1:3] = 5.0  # reaches y through the view
        return y + x


class WriteThroughTo(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.zeros(x.shape[0], 4)
        b = a.to(torch.float32)  # the same tensor as a: torch writes into a too
        b[:, 0] = 1.0
        return x[:, 0] + a


@pytest.mark.parametrize("cls", [ViewThenWrite, WriteThroughView, WriteThroughTo])
def test_a_write_that_aliases_a_view_is_refused(cls: type) -> None:
    """The functional write would not reach a view (or the base of a view written through): the
    Program would be silently wrong, so the trace refuses, naming the write."""
    with pytest.raises(UnsupportedError, match="a write into|written after the view"):
        rnnc.trace(cls().eval(), (torch.randn(2, 5, 4),))


class MaskedWrite(nn.Module):  # RetNet's decay mask: D[D != D] = 0 on a computed tensor
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gru(x)[0]
        d = torch.bmm(h, h.transpose(1, 2))
        d[d < 0] = 0.0
        return torch.bmm(d, h)


def test_a_masked_write_into_a_computed_tensor(tmp_path) -> None:
    torch.manual_seed(0)
    model = MaskedWrite().eval()
    program = rnnc.trace(model, (torch.randn(2, 6, 4),))
    assert program.graph.inputs[0][1].shape[:2] == ("B", "T")
    matches_torch(program, model, (torch.randn(3, 11, 4),), tmp_path, "masked")
