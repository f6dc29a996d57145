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
    "data_masked_fill_": lambda e, pad: e.data.masked_fill_(pad, float("-inf")),  # NVIDIA Tacotron 2
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


class PlusEqAlias(nn.Module):  # a residual kept as an alias, then ``y += f(y)``: torch changes skip too
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        skip = y
        y += self.b(y)
        return y + skip


class ChunkInPlace(nn.Module):  # pieces of ``chunk`` written in place: torch changes g
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.a(x)
        i, f = g.chunk(2, -1)
        i.sigmoid_()
        f.tanh_()
        return g


class Hypernetwork(nn.Module):  # a layer's weight set from the inputs
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.hyper = nn.Linear(4, 4), nn.Linear(4, 16)
        del self.fc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight = self.hyper(x.mean(0)).view(4, 4)
        return self.fc(x)


@pytest.mark.parametrize(("cls", "said"), [
    (PlusEqAlias, "differs from PlusEqAlias on the example inputs themselves"),
    (ChunkInPlace, "differs from ChunkInPlace on the example inputs themselves"),
    (Hypernetwork, "Linear.weight is set from the model's inputs"),
])
def test_changes_the_trace_cannot_follow_are_refused_not_returned_wrong(cls: type, said: str) -> None:
    """Every other check compares at other sizes; a Program wrong on the example inputs
    themselves is refused with the reason, never returned."""
    torch.manual_seed(0)
    model = cls().eval()
    if cls is Hypernetwork:
        model(torch.randn(3, 4))
    with pytest.raises(UnsupportedError, match=said):
        rnnc.trace(model, (torch.randn(3, 4),))


class NoValueChange(nn.Module):
    """In-place ops that change no value another tensor shows: eval dropout (returns its input),
    ``detach_``, and ``unsqueeze_`` (the shape of one view, not the memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.drop = nn.GRU(4, 8, batch_first=True), nn.Dropout(0.3, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        last = self.drop(out[:, -1])
        last = F.dropout(last, 0.2, training=False, inplace=True)
        last = last.clone()
        last.detach_()
        last.unsqueeze_(1)
        return out + last


def test_in_place_ops_that_change_no_shared_value_trace(tmp_path) -> None:
    torch.manual_seed(0)
    model = NoValueChange().eval()
    program = rnnc.trace(model, (torch.randn(2, 6, 4),))
    matches_torch(program, model, (torch.randn(3, 9, 4),), tmp_path, "no_change")


def test_the_callers_inputs_are_left_as_they_were() -> None:
    class WritesItsInput(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x.sub_(1.0)
            return x * 2

    x = torch.randn(2, 6, 4)
    kept = x.clone()
    program = rnnc.trace(WritesItsInput().eval(), (x,))
    assert torch.equal(x, kept)
    y = torch.randn(3, 5, 4)
    assert torch.allclose(torch.as_tensor(program.run(y.clone())), (y - 1) * 2)


def test_a_model_that_samples_noise_is_not_refused_at_the_example() -> None:
    """The check at the example inputs judges deterministic models only: a VAE sampling its
    latent disagrees with itself, so it traces as before (its noise is the op's, per call)."""

    class Sampling(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru, self.mu = nn.GRU(4, 8, batch_first=True), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mu = self.mu(self.gru(x)[0])
            return mu + torch.randn_like(mu)

    program = rnnc.trace(Sampling().eval(), (torch.randn(2, 5, 4),), dynamic=[{0: "B"}])
    assert program.run(torch.randn(2, 5, 4)).shape == (2, 5, 2)
