"""Sizes read from data: a padding mask as long as the longest of the given lengths
(``torch.max(lengths).item()`` with ``arange(0, n, out=torch.LongTensor(n))``, NVIDIA's
``get_mask_from_lengths``; ``int(lengths.max())``) is a size read at run time, so batch and length
stay symbolic; a Python branch or loop on such a size is refused by name (it would keep the
example's answer).  Checked against torch eager in the interpreter and onnxruntime."""

from __future__ import annotations

import pytest
import torch
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UnsupportedError


def nvidia_mask(lengths: torch.Tensor) -> torch.Tensor:
    max_len = torch.max(lengths).item()
    ids = torch.arange(0, max_len, out=torch.LongTensor(max_len))
    return (ids < lengths.unsqueeze(1)).bool()


def plain_mask(lengths: torch.Tensor) -> torch.Tensor:
    return torch.arange(int(lengths.max()))[None, :] < lengths[:, None]


class MaskedPool(nn.Module):
    """Attention pooling over a GRU's outputs, padding masked by the lengths."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.rnn = nn.GRU(4, 6, batch_first=True)
        self.score = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y = self.rnn(x)[0]
        mask = nvidia_mask(lengths) if self.kind == "nvidia" else plain_mask(lengths)
        e = self.score(y).squeeze(-1).masked_fill(~mask, float("-inf"))
        return (torch.softmax(e, 1).unsqueeze(-1) * y).sum(1)


@pytest.mark.parametrize("kind", ["nvidia", "plain"])
def test_a_mask_as_long_as_the_longest_length_keeps_batch_and_length(kind: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = MaskedPool(kind).eval()
    program = rnnc.trace(model, (torch.randn(2, 12, 4), torch.tensor([12, 7])))
    assert [t.shape for _, t in program.graph.inputs] == [("B", "T", 4), ("B",)]
    for lengths in ([17, 5, 9], [3]):
        x = torch.randn(len(lengths), max(lengths), 4)
        matches_torch(program, model, (x, torch.tensor(lengths)), tmp_path, f"mask_{kind}")


class Branches(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.rnn = nn.GRU(4, 6, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y = self.rnn(x)[0]
        n = int(lengths.max())
        if self.kind == "if":
            return y * 2 if n > 8 else y
        return sum(y[:, i] for i in range(n))


@pytest.mark.parametrize("kind", ["if", "loop"])
def test_branching_or_looping_on_a_size_read_from_data_is_refused_by_name(kind: str) -> None:
    with pytest.raises(UnsupportedError, match="control flow on tensor data"):
        rnnc.trace(Branches(kind).eval(), (torch.randn(2, 12, 4), torch.tensor([12, 7])))


class Trimmed(nn.Module):
    """ESPnet's ``xs_pad[:, :max(ilens)]`` (builtin ``max`` over the lengths) and
    pytorch-dilated-rnn's ``n_steps = len(x)`` ... ``outputs[:n_steps]`` (time-major)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 6)

    def forward(self, x: torch.Tensor, ilens: torch.Tensor) -> torch.Tensor:  # [T, B, 4], [B]
        n_steps = len(x)
        x = x[: max(ilens)]
        y = self.rnn(torch.cat([x, x.new_zeros(2, x.size(1), 4)]))[0]
        return y[:n_steps] * min(ilens)


def test_len_max_and_min_of_tensors_are_sizes(tmp_path) -> None:
    torch.manual_seed(0)
    model = Trimmed().eval()
    program = trace_quietly(model, (torch.randn(12, 2, 4), torch.tensor([12, 7])))
    assert [t.shape for _, t in program.graph.inputs] == [("T", "B", 4), ("B",)]
    for lengths in ([17, 5, 9], [3]):
        x = torch.randn(max(lengths), len(lengths), 4)
        matches_torch(program, model, (x, torch.tensor(lengths)), tmp_path, "trimmed")


class ListedLengths(nn.Module):
    """ESPnet's ``make_pad_mask(ilens.tolist(), T)``: the lengths as Python numbers."""

    def forward(self, x: torch.Tensor, ilens: torch.Tensor) -> torch.Tensor:
        x = x[:, : max(ilens)]  # (a stand-in rnnc takes: the error must name the tolist, not this)
        lengths = ilens.tolist()
        mask = torch.arange(x.size(1))[None, :] >= torch.tensor(lengths)[:, None]
        return x.masked_fill(mask.unsqueeze(-1), 0.0)


def test_tolist_of_tensor_data_is_refused_where_it_is_written() -> None:
    import inspect

    line = inspect.getsourcelines(ListedLengths.forward)[1] + 2
    with pytest.raises(UnsupportedError, match=rf"\.tolist\(\) at test_data_sizes\.py:{line} turns tensor data"):
        rnnc.trace(ListedLengths(), (torch.randn(2, 12, 3), torch.tensor([12, 7])))


class Scaled(nn.Module):
    """The longest length as a Python float (``x / float(m)``), or scaled (``int(...) * 0.5``)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        m = lengths.max().item()
        return x / float(m) if self.kind == "float" else x * (int(lengths.max()) * 0.5)


@pytest.mark.parametrize("kind", ["float", "scaled"])
def test_a_size_read_from_data_used_as_a_python_number_is_refused(kind: str) -> None:
    with pytest.raises(UnsupportedError, match="a Python number from tensor data"):
        rnnc.trace(Scaled(kind), (torch.randn(2, 6, 4), torch.tensor([6, 3])))


class BufferCount(nn.Module):
    """``range(int(self.n))`` over a buffer: a constant of the model, not data."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("n", torch.tensor(2))
        self.rnn = nn.GRU(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(int(self.n)):
            x = self.rnn(x)[0]
        return x


def test_int_of_a_buffer_is_a_constant() -> None:
    torch.manual_seed(0)
    model = BufferCount().eval()
    program = trace_quietly(model, (torch.randn(2, 6, 4),))
    matches_torch(program, model, (torch.randn(3, 9, 4),))


class MaskedIf(nn.Module):
    """Transformer-XL's ``if attn_mask is not None and attn_mask.any().item():``."""

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        mask = torch.triu(s.new_ones(s.size(0), s.size(0)), diagonal=1).bool()
        return s.masked_fill(mask, -1e9) if mask.any().item() else s


def test_item_of_a_bool_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedError, match=r"\.item\(\) of a bool tensor"):
        rnnc.trace(MaskedIf(), (torch.randn(5, 5),))


def test_a_parameter_list_indexed_by_data_names_the_line() -> None:
    """ESRNN's per-series parameters ``self.plist[idx] for idx in idxs``, ``idxs`` an input: a
    Python index from tensor data, refused at the line that indexes (the error named none)."""
    import inspect

    class PerSeries(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.plist = nn.ParameterList([nn.Parameter(torch.randn(1)) for _ in range(10)])

        def forward(self, x: torch.Tensor, idxs: torch.Tensor) -> torch.Tensor:
            return x * torch.stack([self.plist[idx] for idx in idxs])

    line = inspect.getsourcelines(PerSeries.forward)[1] + 1
    with pytest.raises(UnsupportedError, match=rf"test_data_sizes.py:{line}.*ParameterList"):
        rnnc.trace(PerSeries(), (torch.randn(2, 5), torch.tensor([3, 7])))
