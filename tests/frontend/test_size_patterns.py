"""Sizes the model reads and uses on constants and buffers stay symbolic.

Each pattern is one a new user hit on models outside the corpus: a positional-encoding buffer
sliced to the input's length (the PyTorch Transformer tutorial), a max over time written as
``F.max_pool1d(x, x.size(2))``, a constant expanded to the batch, a reshape that folds the batch
into chunks (``view(B * K, ...)``).  Each is traced at one size and checked against torch eager
at another batch and length; the trace must not warn that it fixed a dim."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UserInputError
from rnnc.tolerances import assert_close


class BufferSlice(nn.Module):
    def __init__(self, time_major: bool) -> None:
        super().__init__()
        self.time_major = time_major
        self.lstm = nn.LSTM(8, 16, batch_first=not time_major)
        self.register_buffer("pe", torch.randn(512, 1, 8) if time_major else torch.randn(1, 512, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + (self.pe[:x.size(0)] if self.time_major else self.pe[:, :x.size(1)])
        return self.lstm(x)[0]


class MaxOverTime(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(x)[0].permute(0, 2, 1)
        return F.max_pool1d(out, out.size(2)).squeeze(2) + F.avg_pool1d(out, kernel_size=out.shape[-1]).squeeze(2)


class ConstantToBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.size(0)
        pos = torch.arange(8).unsqueeze(0).expand(b, -1)
        return self.gru(x)[1][-1] * pos


class ChunkedBatch(nn.Module):  # LSTNet's skip-GRU / DPRNN's intra-chunk layer: batch B * K
    def __init__(self, period: int = 4) -> None:
        super().__init__()
        self.p = period
        self.gru = nn.GRU(8, 8)
        self.norm = nn.GroupNorm(1, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 8], T a multiple of p
        b, t, c = x.shape
        s = x.reshape(b, t // self.p, self.p, c).permute(1, 0, 2, 3).reshape(t // self.p, b * self.p, c)
        _, h = self.gru(s)
        h = h.view(b, self.p, -1).transpose(1, 2)  # [B, 8, p]: the channel count survives
        return self.norm(h)


class CeilFrames(nn.Module):  # "same" framing: math.ceil(T / hop) frames, the tail zero-padded
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 8]
        t = x.size(1)
        frames = math.ceil(t / 3)
        x = F.pad(x, (0, 0, 0, frames * 3 - t)).reshape(x.size(0), frames, 3, 8).mean(2)
        y = self.gru(x)[0]
        return y[:, :math.floor(t / 3)] + y[:, -math.trunc(t / 4):].mean(1, keepdim=True)


class SizeAsScalar(nn.Module):  # hand-written mean pooling, a position ramp, ``T - 1 - tensor``
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 8]
        out = self.gru(x)[0]
        ramp = torch.arange(x.size(1), dtype=x.dtype) / x.size(1)
        last = out[:, -1] * (x.size(1) - 1 - torch.zeros(1))
        return out.sum(dim=1) / out.size(1) + (out * ramp[None, :, None]).mean(1) + last


class RepeatedLists(nn.Module):
    """SketchRNN's decoder input: a start token stacked ``[sos] * batch_size`` (a constant) and
    the latent repeated per step with ``torch.stack([z] * (T + 1))``; ``cat([h] * B)`` too."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 8]
        b, t = x.size(0), x.size(1)
        sos = torch.stack([torch.Tensor([0, 0, 1, 0, 0])] * b).unsqueeze(1)  # [B, 1, 5]
        z = self.gru(x)[1][0]  # [B, 5]
        zs = torch.stack([z] * (t + 1), 1)  # [B, T + 1, 5]
        rows = torch.cat([z.sum(0, keepdim=True)] * b, 0)  # [B, 5]
        return torch.cat([sos, self.gru(x)[0]], 1) * zs + rows[:, None]


class RatioScale(nn.Module):
    """DRAW's attention window: a tensor scaled by Python divisions of sizes,
    ``(A + 1) / 2 * (gx + 1)`` and ``(max(A, B) - 1) / (N - 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 8]
        a, b = x.size(1), x.size(2)
        g = self.gru(x)[0]
        return (a + 1) / 2 * (g + 1) + g * ((max(a, b) - 1) / (a + 3))


class LegacyConstructors(nn.Module):
    """deepspeech.pytorch's MaskConv: ``torch.BoolTensor(x.size()).fill_(0)``, and
    ``torch.FloatTensor(b, h).zero_()``; a legacy constructor of data stays a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 8]
        mask = torch.BoolTensor(x.size()).fill_(0)
        mask[:, -1] = True
        h0 = torch.FloatTensor(1, x.size(0), 8).zero_()
        scale = torch.FloatTensor([0.5, 2.0])
        assert isinstance(scale, torch.FloatTensor)
        return self.gru(x.masked_fill(mask, 0), h0)[0] * scale[1]


class ListsOfALength(nn.Module):
    """``outs = [None] * T`` filled by a loop, and ``[z] * T`` lists changed before the stack:
    plain lists of the example's length (only an untouched ``[z] * n`` is an expand)."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 8]
        outs = [None] * x.size(1)
        h = x.new_zeros(x.size(0), 4)
        for t in range(x.size(1)):
            h = self.cell(x[:, t], h)
            outs[t] = h
        z = outs[-1]
        grown = [z] * x.size(1)
        grown.append(z)
        return torch.stack(outs, 1).sum(1) + torch.stack(grown, 1).mean(1)


CASES = {
    "lists_of_a_length": (ListsOfALength, lambda b, t: torch.randn(b, t, 8), (0, 1)),
    "legacy_constructors": (LegacyConstructors, lambda b, t: torch.randn(b, t, 8), (0, 1)),
    "ratio_scale": (RatioScale, lambda b, t: torch.randn(b, t, 8), (0, 1)),
    "repeated_lists": (RepeatedLists, lambda b, t: torch.randn(b, t, 8), (0, 1)),
    "size_as_a_scalar": (SizeAsScalar, lambda b, t: torch.randn(b, t, 8), (0, 1)),
    "ceil_of_a_ratio": (CeilFrames, lambda b, t: torch.randn(b, t, 8), (0, 1)),
    "buffer_slice_time_major": (lambda: BufferSlice(True), lambda b, t: torch.randn(t, b, 8), (1, 0)),
    "buffer_slice_batch_first": (lambda: BufferSlice(False), lambda b, t: torch.randn(b, t, 8), (0, 1)),
    "max_pool_over_time": (MaxOverTime, lambda b, t: torch.randn(b, t, 8), (0, 1)),
    "constant_to_batch": (ConstantToBatch, lambda b, t: torch.randn(b, t, 8), (0, 1)),
    "chunked_batch": (ChunkedBatch, lambda b, t: torch.randn(b, 4 * t, 8), (0, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pattern_keeps_batch_and_length(name: str) -> None:
    build, make, (b_axis, t_axis) = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(model, (make(2, 6),))
    assert not [w for w in caught if "rnnc.trace" in str(w.message)]
    shape = program.graph.inputs[0][1].shape
    assert isinstance(shape[b_axis], str) and isinstance(shape[t_axis], str), shape
    x = make(3, 11)
    with torch.no_grad():
        want = model(x)
    assert_close(program.run(x), want, backend="interp")


class PositionsToBatch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.sum(-1) * torch.arange(t).unsqueeze(0).expand(b, -1)


def test_a_constant_expanded_to_a_symbolic_batch_with_the_length_fixed() -> None:
    """With the length fixed, ``arange(t)`` is a constant; expanding it to the symbolic batch makes
    it a graph value instead of refusing (or baking the example's batch in)."""
    model = PositionsToBatch()
    program = rnnc.trace(model, (torch.randn(2, 6, 3),), dynamic=[{0: "B"}])
    x = torch.randn(5, 6, 3)
    assert_close(program.run(x), model(x), backend="interp")


class Promotions(nn.Module):
    """torch's type promotion with python scalars on integer and bool tensors (RetNet's decay
    mask ``0.9 ** (n - m)``, positions scaled by a float): the result is float32, not int64."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        n, m = torch.arange(t).unsqueeze(1), torch.arange(t).unsqueeze(0)
        decay = (0.9 ** (n - m)) * (n >= m).float()
        pos = torch.arange(t) * 0.5 + 0.25 - (n >= m).sum(0) * 0.1
        steps = (n >= m) + 1  # a mask meeting an int: 1 or 2, int64
        return (x.transpose(1, 2) @ decay) * pos + steps.sum(0).float()


def test_python_scalars_promote_as_torch_does() -> None:
    model = Promotions()
    program = rnnc.trace(model, (torch.randn(2, 6, 3),), dynamic=[{0: "B", 1: "T"}])  # no check: exact by itself
    for x in (torch.randn(2, 6, 3), torch.randn(3, 11, 3)):
        assert_close(program.run(x), model(x), backend="interp")


class PadToMultiple(nn.Module):  # chunked / dual-path code: pad T up to a multiple of 4
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor, scale: float = 0.5, flag: bool = True) -> torch.Tensor:
        rest = (4 - x.size(1) % 4) % 4
        x = F.pad(x, (0, 0, 1, rest), value=0.25) * scale
        return self.gru(x)[0] if flag else x


def test_a_pad_computed_from_the_length_pads_every_length() -> None:
    """The amount is read at run time: traced at T = 7 (padded by 1 + 1), T = 9 pads by 1 + 3 and
    T = 13 by 1 + 3.  (``forward``'s non-tensor defaults are used as traced.)"""
    model = PadToMultiple().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(model, (torch.randn(2, 7, 4),))
    assert not [w for w in caught if "rnnc.trace" in str(w.message)]
    for t in (7, 9, 10, 13):
        x = torch.randn(3, t, 4)
        with torch.no_grad():
            assert_close(program.run(x), model(x), backend="interp")


class ParityBranch(nn.Module):  # a pyramidal layer's "drop the odd frame"
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, f = x.shape
        if t % 2 == 1:
            x = x[:, :-1]
        return self.gru(x.reshape(b, -1, 2 * f)[..., :8])[0]


def test_a_branch_on_the_length_parity_is_caught() -> None:
    """Traced at an even length the odd branch is never seen: the check at an odd length finds it,
    and the trace fixes the length and says so instead of failing at odd lengths later."""
    model = ParityBranch().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(model, (torch.randn(2, 6, 4),))
    assert [w for w in caught if "kept fewer dims symbolic" in str(w.message)]
    x = torch.randn(3, 6, 4)
    assert_close(program.run(x), model(x), backend="interp")


class BufferScalars(nn.Module):  # buffers read as Python values: flags, scales, strides
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=True)
        self.register_buffer("initialized", torch.tensor(True))
        self.register_buffer("scale", torch.tensor(0.5))
        self.register_buffer("stride", torch.tensor(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.initialized:
            x = x * float(self.scale)
        return self.gru(x)[0][:, ::int(self.stride)]


def test_buffers_read_as_python_values() -> None:
    model = BufferScalars().eval()
    program = rnnc.trace(model, (torch.randn(2, 6, 4),))
    assert program.graph.inputs[0][1].shape[:2] == ("B", "T")
    x = torch.randn(3, 9, 4)
    assert_close(program.run(x), model(x), backend="interp")


class PlainIntLength(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = float(x.shape[1])  # a plain number: the length is baked into the constant below
        return self.gru(x)[0] + torch.arange(t).view(1, -1, 1)


def test_a_size_the_trace_fixed_is_named_with_its_source_line() -> None:
    import inspect

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(PlainIntLength().eval(), (torch.randn(2, 7, 4),))
    said = " ".join(str(w.message) for w in caught if "rnnc.trace" in str(w.message))
    line = inspect.getsourcelines(PlainIntLength.forward)[1] + 2  # the torch.arange line
    assert f"test_size_patterns.py:{line}" in said and "f32[1,7,1], 7 being T" in said, said
    assert program.graph.inputs[0][1].shape[1] == 7


class SubBands(nn.Module):
    """FullSubNet's sub-band unfold: each frequency with its 2 neighbours either side, over every
    frame (``F.unfold`` with a ``(5, T)`` kernel), then a GRU per frequency."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(5, 4, batch_first=True)

    def forward(self, mag: torch.Tensor) -> torch.Tensor:  # [B, 1, F, T]
        b, c, f, t = mag.size()
        x = F.pad(mag, [0, 0, 2, 2], mode="reflect")
        x = F.unfold(x, (5, t))  # [B, 5 * T, F]
        x = x.reshape(b, 5, t, f).permute(0, 3, 2, 1).reshape(b * f, t, 5)
        return self.rnn(x)[0].reshape(b, f, t, 4)


def test_an_unfold_whose_kernel_spans_the_length_keeps_it(tmp_path) -> None:
    torch.manual_seed(0)
    model = SubBands().eval()
    program = trace_quietly(model, (torch.randn(2, 1, 9, 12),))
    b, _, f, t = program.graph.inputs[0][1].shape
    assert b == "B" and isinstance(f, str) and isinstance(t, str) and f != t  # frequencies and frames free
    matches_torch(program, model, (torch.randn(3, 1, 11, 17),), tmp_path, "sub_bands")


class RelativePositions(nn.Module):
    """Transformer-XL's relative positions, ``arange(klen - 1, -1, -1.0)``, through a layer."""

    def __init__(self) -> None:
        super().__init__()
        self.r_net = nn.Linear(1, 8)
        self.rnn = nn.GRU(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 8]
        pos = torch.arange(x.size(0) - 1, -1, -1.0)[:, None]
        return self.rnn(x + self.r_net(pos)[:, None])[0]


def test_a_descending_range_from_the_length_keeps_it() -> None:
    torch.manual_seed(0)
    model = RelativePositions().eval()
    program = trace_quietly(model, (torch.randn(12, 2, 8),))
    assert program.graph.inputs[0][1].shape == ("T", "B", 8)
    matches_torch(program, model, (torch.randn(17, 3, 8),))


class ConstantPositions(nn.Module):
    """A tensor computed from constants alone (its length a fraction of T's steps: no run-time
    form) fed to a layer: the length stays the example's, said, and the layer takes a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.r_net = nn.Linear(1, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 8]
        return x + self.r_net(torch.arange(x.size(0) - 1, -1, -1.5)[:, None]).sum(0)


def test_a_layer_given_a_tensor_of_constants_converts() -> None:
    torch.manual_seed(0)
    model = ConstantPositions().eval()
    x = torch.randn(12, 2, 8)
    with pytest.warns(UserWarning, match="rnnc.trace"):
        program = rnnc.trace(model, (x,))
    matches_torch(program, model, (x,))


class SqueezeAll(nn.Module):
    def __init__(self, dim: int | None) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=True)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.gru(x)[1]  # [1, B, 8]
        return hidden.squeeze() if self.dim is None else hidden.squeeze(self.dim)


def test_squeeze_without_a_dim_says_the_batch_of_one_differs() -> None:
    """``h_n.squeeze()`` (Sentence-VAE) also drops the batch where it is 1; the Program keeps its
    rank, so the trace says so and names the line; ``squeeze(0)`` is exact and says nothing."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(SqueezeAll(None).eval(), (torch.randn(2, 7, 4),))
    said = [str(w.message) for w in caught if "squeeze()" in str(w.message)]
    assert "test_size_patterns.py:" in said[0] and "keeps B" in said[0]
    assert program.graph.outputs and program.graph.inputs[0][1].shape[0] == "B"
    model = SqueezeAll(0).eval()
    program = trace_quietly(model, (torch.randn(2, 7, 4),))
    matches_torch(program, model, (torch.randn(1, 5, 4),))


def test_a_pool_over_five_free_dims_keeps_them(tmp_path) -> None:
    """LipNet's MaxPool3d over [B, C, T, H, W]: shape inference sized all five dims ~1e4 and
    overflowed a storage size, so T, H and W were fixed with torch's overflow message."""

    class Pool3d(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.max_pool3d(x, (1, 2, 2), (1, 2, 2))

    model = Pool3d()
    program = trace_quietly(model, (torch.randn(2, 3, 24, 8, 8),))
    assert all(isinstance(d, str) for d in program.graph.inputs[0][1].shape)
    matches_torch(program, model, (torch.randn(3, 5, 11, 6, 10),), tmp_path, "pool3d")


class OneStepOrLoop(nn.Module):  # the latent ODE's encoder: ``if len(time_steps) == 1`` one update
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(3, 4)
        self.ode = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), 4)
        if len(x[0]) == 1:
            return self.cell(x[:, 0], h)
        for t in reversed(range(x.size(1))):
            h = h + 0.1 * torch.tanh(self.ode(h)) + 0.5
            h = self.cell(x[:, t], h)
        return h


class ShortOrLong(nn.Module):  # xLSTM's ``if S < mask.size(-1)``: a cached mask up to 64 steps
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if x.size(1) < 64:
            return y.cumsum(1)
        return y.cumsum(1) * 2


class HalvedShort(ShortOrLong):  # a size that follows the length in proportion: T // 2 < 8 below T = 16
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if x.size(1) // 2 < 8:
            return y.cumsum(1)
        return y.cumsum(1) * 2


class FloatShort(ShortOrLong):  # a size compared with a float
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if x.size(1) < 60.5:
            return y.cumsum(1)
        return y.cumsum(1) * 2


class RatioShort(ShortOrLong):  # a ratio of sizes compared with a number: T / 3 < 20 below T = 60
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if x.size(1) / 3 < 20:
            return y.cumsum(1)
        return y.cumsum(1) * 2


class StaticChecksFirst(ShortOrLong):  # many checks of fixed dims ahead of the branch on the length
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.size(2)  # nine lines of checks: the cap on lines once took them all
        ok = f == 3
        ok = ok and f != 2
        ok = ok and f > 2
        ok = ok and f < 4
        ok = ok and f >= 3
        ok = ok and f <= 3
        ok = ok and f != 5
        ok = ok and f > 1
        ok = ok and f < 9
        if not ok:
            raise ValueError("three features")
        y = self.lin(x)
        if x.size(1) < 60:
            return y.cumsum(1)
        return y.cumsum(1) * 2


class RankChecksFirst(OneStepOrLoop):  # SRU's and DRAW's rank checks ahead of the branch on a size
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            if x.dim() != 3 or x.ndim < 3:
                raise ValueError("x must be [B, T, F]")
        if x.dim() == 2:
            raise ValueError("one step")
        if x.ndimension() > 3:
            raise ValueError("four dims")
        if x.dim() + 0 < 2:
            raise ValueError("")
        h = x.new_zeros(x.size(0), 4)
        if x.size(1) == 1:
            return self.cell(x[:, 0], h)
        for t in reversed(range(x.size(1))):
            h = h + 0.1 * torch.tanh(self.ode(h)) + 0.5
            h = self.cell(x[:, t], h)
        return h


@pytest.mark.parametrize("cls, number, crossing", [
    (OneStepOrLoop, 1, 1), (ShortOrLong, 64, 64), (RankChecksFirst, 1, 1), (HalvedShort, 8, 16),
    (FloatShort, 60.5, 61), (RatioShort, 20, 60), (StaticChecksFirst, 60, 60)])
def test_a_size_compared_with_a_number_is_checked_where_the_branch_turns(cls: type[nn.Module], number: float,
                                                                           crossing: int) -> None:
    """A Python branch on a size against a number (``len(x) == 1``, ``S < 64``) keeps the branch
    of the example; twice the example's length never crosses the number, so the checks try the
    sizes next to it.  There the model takes the other branch: the length is fixed, with the
    line that compared it said, and the Program refuses other lengths by name -- before, it
    returned the example's branch at every length (no warning)."""
    import inspect

    torch.manual_seed(0)
    model = cls().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(model, (torch.randn(2, 24, 3),))
    said = " ".join(str(w.message) for w in caught if "rnnc.trace" in str(w.message))
    source, first = inspect.getsourcelines(cls.forward)  # (rank checks are no comparison of sizes)
    line = first + next(i for i, s in enumerate(source)
                        if s.lstrip().startswith("if ") and ("size(1)" in s or "len(" in s))
    assert f"test_size_patterns.py:{line} compares a size with {number}" in said, said
    assert program.graph.inputs[0][1].shape[1] == 24
    x = torch.randn(3, 24, 3)
    assert_close(program.run(x), model(x), backend="interp")
    with pytest.raises(UserInputError):
        program.run(torch.randn(3, crossing, 3))


def test_a_size_compared_with_a_number_given_symbolic_warns() -> None:
    """With the dims given (``dynamic``), the user's choice stands, and the warning says at which
    size and line the Program stops being right."""
    model = ShortOrLong().eval()
    with pytest.warns(UserWarning, match=r"right at the example's sizes only.*\(2, 64, 3\).*compares a size with 64"):
        program = rnnc.trace(model, (torch.randn(2, 24, 3),), dynamic={"x": {0: "B", 1: "T"}})
    x = torch.randn(3, 40, 3)
    assert_close(program.run(x), model(x), backend="interp")


class AlwaysLonger(nn.Module):  # a comparison whose answer no length changes
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gru(x)[0]
        if x.size(1) >= 1:
            h = h * 2
        return h


def test_a_comparison_no_length_turns_keeps_the_length() -> None:
    """``if T >= 1`` holds at every length: the checks near 1 agree and T stays symbolic, silently."""
    model = AlwaysLonger().eval()
    program = trace_quietly(model, (torch.randn(2, 24, 3),))
    assert program.graph.inputs[0][1].shape[:2] == ("B", "T")
    for t in (1, 2, 30):
        matches_torch(program, model, (torch.randn(3, t, 3),))


class NumpyBatch(nn.Module):  # LAS's speller: ``torch.FloatTensor(np.zeros((batch_size, 1)))``
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import numpy as np

        start = torch.FloatTensor(np.zeros((x.size(0), 1)))  # numpy holds the example's batch
        return self.lin(torch.cat([start, x[:, 0]], dim=-1))


def test_a_batch_of_two_baked_into_a_constant_is_named() -> None:
    """Sizes of 2 are searched last (often a direction count), but searched: the usual example
    batch of 2 baked in by numpy is named with its line, not only the generic hint."""
    import inspect

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(NumpyBatch().eval(), (torch.randn(2, 6, 4),))
    said = " ".join(str(w.message) for w in caught if "rnnc.trace" in str(w.message))
    line = inspect.getsourcelines(NumpyBatch.forward)[1] + 4  # the np.zeros line
    assert f"test_size_patterns.py:{line} is f32[2,1], 2 being B" in said, said
    assert program.graph.inputs[0][1].shape[0] == 2


class SqueezeThenBranch(SqueezeAll):  # a fallback builds the Program again, and meets the squeeze again
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.gru(x)[1].squeeze()
        return hidden * 2 if x.size(1) < 16 else hidden


def test_a_warning_every_build_meets_is_said_once() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rnnc.trace(SqueezeThenBranch(None).eval(), (torch.randn(2, 7, 4),))
    said = [str(w.message) for w in caught if "squeeze()" in str(w.message)]
    assert len(said) == 1, said
