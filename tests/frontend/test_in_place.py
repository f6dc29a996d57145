"""In-place ops whose result the model ignores (``e.masked_fill_(pad, -inf)``, ``e.clamp_(...)``,
``torch.sigmoid_(e)``, ``F.relu(e, inplace=True)``) and ``nn.ReLU(inplace=True)`` on a tensor kept
for a residual: later reads of the tensor see the change, as in torch (they were silently read
as before it).  An in-place op through a view whose base is read later is refused by name.
Against torch eager on new data at another batch and length."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UnsupportedError

IN_PLACE = {
    "masked_fill_": lambda e, pad: e.masked_fill_(pad, float("-inf")),
    "clamp_": lambda e, pad: e.clamp_(min=-0.1),
    "sigmoid_": lambda e, pad: torch.sigmoid_(e),
    "relu_inplace": lambda e, pad: F.relu(e, inplace=True),
    "mul_": lambda e, pad: e.mul_(2.0),
    "augmented": None,  # e += 1 (rebinds the name in Python; checked alike)
}


class Pooling(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.rnn, self.v = nn.GRU(4, 8, batch_first=True), nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        e = self.v(y).squeeze(-1)
        pad = torch.arange(y.size(1))[None, :] >= lengths[:, None]
        if self.kind == "augmented":
            e += 1.0
        else:
            IN_PLACE[self.kind](e, pad)  # the result is not used: e itself changed
        return torch.bmm(F.softmax(e, dim=1).unsqueeze(1), y).squeeze(1)


@pytest.mark.parametrize("kind", sorted(IN_PLACE))
def test_an_in_place_op_changes_what_later_reads_see(kind: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = Pooling(kind).eval()
    program = rnnc.trace(model, (torch.randn(2, 7, 4), torch.tensor([7, 4])))
    assert [t.shape[0] for _, t in program.graph.inputs] == ["B", "B"]
    matches_torch(program, model, (torch.randn(3, 10, 4), torch.tensor([10, 6, 3])), tmp_path, kind)


class ResidualReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin, self.act, self.gru = nn.Linear(4, 4), nn.ReLU(inplace=True), nn.GRU(4, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        skip = h
        out = self.act(h)  # skip is h: torch's in-place ReLU changes it too
        return self.gru(out + skip)[0]


def test_an_in_place_module_changes_the_tensor_kept_for_a_residual(tmp_path) -> None:
    torch.manual_seed(0)
    model = ResidualReLU().eval()
    program = rnnc.trace(model, (torch.randn(2, 7, 4),))
    matches_torch(program, model, (torch.randn(3, 10, 4),), tmp_path, "residual")


class ThroughAView(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(x)
        y[:, :, :4].mul_(0.5)  # through a view: torch changes y
        return y.sum(-1)


def test_an_in_place_op_through_a_view_of_a_tensor_read_later_is_refused() -> None:
    with pytest.raises(UnsupportedError, match="is read after a write into memory it shares"):
        rnnc.trace(ThroughAView().eval(), (torch.randn(2, 7, 4),))
