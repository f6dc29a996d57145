"""pack_padded_sequence -> the rnn node's lengths input."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnc.frontend import trace
from rnnc.tolerances import assert_close


class Packed(nn.Module):
    def __init__(self, kind: type[nn.RNNBase], batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.is_lstm = kind is nn.LSTM
        self.rnn = kind(4, 8, num_layers=2, bidirectional=True, batch_first=batch_first)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = x.shape[1] if self.batch_first else x.shape[0]
        packed = pack_padded_sequence(x, lengths, batch_first=self.batch_first, enforce_sorted=False)
        out, state = self.rnn(packed)
        y, _ = pad_packed_sequence(out, batch_first=self.batch_first, total_length=total)
        h = state[0] if self.is_lstm else state
        return y, h


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("batch_first", [True, False])
def test_packed_lengths(kind: type[nn.RNNBase], batch_first: bool) -> None:
    torch.manual_seed(1)
    model = Packed(kind, batch_first).eval()
    shape = (3, 6, 4) if batch_first else (6, 3, 4)
    program = trace(model, (torch.randn(shape), torch.tensor([6, 2, 4])))
    assert program.graph.inputs[1][1].shape == ("B",)
    x = torch.randn((4, 9, 4) if batch_first else (9, 4, 4))
    lengths = torch.tensor([3, 9, 1, 5])
    for got, want in zip(program.run(x, lengths), model(x, lengths), strict=True):
        assert_close(got, want)


class PackedNoTotal(nn.Module):
    """``pad_packed_sequence`` without ``total_length``: it pads to the longest length present, so
    the output of one short sample is shorter than the batch's (the batch probe must not crash)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
        return y


def test_packed_output_padded_to_the_longest_present_length() -> None:
    torch.manual_seed(1)
    model = PackedNoTotal().eval()
    program = trace(model, (torch.randn(2, 6, 4), torch.tensor([6, 5])))  # the probe's sample is shorter
    assert program.graph.inputs[0][1].shape[0] == "B"
    x, lengths = torch.randn(3, 9, 4), torch.tensor([9, 2, 7])  # the longest present is the padded length
    with torch.no_grad():
        assert_close(program.run(x, lengths), model(x, lengths))


class SequenceWiseNorm(nn.Module):
    """deepspeech.pytorch's SequenceWise(BatchNorm1d) after a packed GRU: the padded output
    ``[t, n, 8]`` viewed as ``(t * n, -1)``, ``t`` the longest length (a size read from data)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8)
        self.bn = nn.BatchNorm1d(8)
        with torch.no_grad():
            self.bn.running_mean.normal_(0, 0.1)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y, _ = pad_packed_sequence(self.rnn(pack_padded_sequence(x, lengths))[0])
        t, n = y.size(0), y.size(1)
        return self.bn(y.view(t * n, -1)).view(t, n, -1)


def test_view_of_read_sizes_keeps_the_channels() -> None:
    """The -1 of ``view(t * n, -1)`` is the 8 channels even where ``t`` has no name (the trace
    failed in BatchNorm1d, which saw ``?`` channels)."""
    torch.manual_seed(0)
    model = SequenceWiseNorm().eval()
    program = trace(model, (torch.randn(9, 2, 4), torch.tensor([9, 6])))
    for x, lengths in ((torch.randn(13, 3, 4), torch.tensor([11, 7, 2])), (torch.randn(5, 1, 4), torch.tensor([5]))):
        with torch.no_grad():
            want = model(x, lengths)
        assert_close(program.run(x, lengths), want, backend="interp")
