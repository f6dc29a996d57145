"""Losses summed into a Python number across steps (``kld_loss = 0; kld_loss += ...`` in VRNN,
auxiliary losses and activation statistics returned beside the outputs) keep the length
symbolic: the chain of additions is the sum of a stack of the per-step terms (``sums.py``), the
stack moves through the elementwise ops and reductions that make each term, and a step that reads
``x[t]`` twice reads it once (``scan._read_once``).  Before, the first step (``0 + term``) differed
from the rest and the loop stayed unrolled at the traced length.  Checked against torch eager at
lengths and batches not traced at, in the interpreter, onnxruntime and ``rnnc.compile``."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.tolerances import assert_close


class SquaredActivations(nn.Module):
    """An activation penalty summed over the steps of a cell loop, returned with the outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [T, B, 4]
        h = torch.zeros(x.size(1), 8)
        penalty = 0
        outs = []
        for t in range(x.size(0)):
            h = self.cell(x[t], h)
            penalty += torch.sum(h ** 2)
            outs.append(h)
        return penalty, torch.stack(outs)


class TinyVRNN(nn.Module):
    """VRNN's step (encoder, prior, decoder around an ``nn.GRU`` called per step) with its KL and
    Bernoulli terms accumulated from ``0``; ``x[t]`` is read by the encoder and again by the loss."""

    def __init__(self, x_dim: int = 6, h_dim: int = 10, z_dim: int = 3) -> None:
        super().__init__()
        self.phi_x = nn.Sequential(nn.Linear(x_dim, h_dim), nn.ReLU())
        self.enc = nn.Linear(2 * h_dim, h_dim)
        self.enc_mean, self.enc_std = nn.Linear(h_dim, z_dim), nn.Sequential(nn.Linear(h_dim, z_dim), nn.Softplus())
        self.prior_mean = nn.Linear(h_dim, z_dim)
        self.prior_std = nn.Sequential(nn.Linear(h_dim, z_dim), nn.Softplus())
        self.phi_z = nn.Linear(z_dim, h_dim)
        self.dec_mean = nn.Sequential(nn.Linear(2 * h_dim, x_dim), nn.Sigmoid())
        self.rnn = nn.GRU(2 * h_dim, h_dim, 1)
        self.h_dim = h_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # [T, B, x_dim]
        kld_loss, nll_loss = 0, 0
        h = torch.zeros(1, x.size(1), self.h_dim)
        means = []
        for t in range(x.size(0)):
            phi_x_t = self.phi_x(x[t])
            enc_t = F.relu(self.enc(torch.cat([phi_x_t, h[-1]], 1)))
            mean_1, std_1 = self.enc_mean(enc_t), self.enc_std(enc_t)
            mean_2, std_2 = self.prior_mean(h[-1]), self.prior_std(h[-1])
            phi_z_t = self.phi_z(mean_1)
            theta = self.dec_mean(torch.cat([phi_z_t, h[-1]], 1))
            _, h = self.rnn(torch.cat([phi_x_t, phi_z_t], 1).unsqueeze(0), h)
            kld = (2 * torch.log(std_2) - 2 * torch.log(std_1)
                   + (std_1.pow(2) + (mean_1 - mean_2).pow(2)) / std_2.pow(2) - 1)
            kld_loss += 0.5 * torch.sum(kld)
            nll_loss += -torch.sum(x[t] * torch.log(theta) + (1 - x[t]) * torch.log(1 - theta))
            means.append(theta)
        return kld_loss, nll_loss, torch.stack(means)


def _binary(t: int, b: int, d: int) -> torch.Tensor:
    return (torch.rand(t, b, d, generator=torch.Generator().manual_seed(t * 100 + b)) > 0.5).float()


CASES = [(SquaredActivations, 4), (TinyVRNN, 6)]


@pytest.mark.parametrize(("cls", "width"), CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_loss_from_zero_keeps_length(cls: type[nn.Module], width: int, tmp_path: object) -> None:
    torch.manual_seed(0)
    model = cls().eval()
    program = trace_quietly(model, (_binary(12, 2, width),))
    assert [isinstance(d, str) for d in program.graph.inputs[0][1].shape] == [True, True, False]
    for t, b in ((12, 2), (21, 3), (5, 1)):
        matches_torch(program, model, (_binary(t, b, width),), tmp_path, f"{cls.__name__}_{t}")
    compiled = rnnc.compile(model, (_binary(12, 2, width),))
    x = _binary(17, 3, width)
    with torch.no_grad():
        want = model(x)
    for got, w in zip(compiled(x), want, strict=True):
        assert_close(got, w, backend="c")


class RunningSum(nn.Module):
    """A running sum from ``0`` read at every step (a cumulative sum): no accumulator to move."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 4]
        acc = 0
        outs = []
        for t in range(x.size(1)):
            acc = acc + x[:, t]
            outs.append(torch.tanh(acc))
        return torch.stack(outs, 1)


def test_running_sum_read_each_step_stays_right() -> None:
    model = RunningSum().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # whether it rolls is not this test's question
        program = rnnc.trace(model, (torch.randn(2, 9, 4),))
    x = torch.randn(2, 9, 4)
    assert_close(program.run(x), model(x), backend="interp")
    if isinstance(program.graph.inputs[0][1].shape[1], str):
        x = torch.randn(3, 14, 4)
        assert_close(program.run(x), model(x), backend="interp")


class Counts(nn.Module):
    """Sums across steps the rewrite must leave to the loop: integer and boolean counts (a sum
    over a stack would widen them), and terms of two shapes in one chain."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 8)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 4]
        h = torch.zeros(x.size(1), 8)
        acc: object = 0.0 if self.kind == "float_of_ints" else 0
        for t in range(x.size(0)):
            h = self.cell(x[t], h)
            if self.kind == "float_of_ints":
                acc = acc + (h > 0).sum(1)
            elif self.kind == "int32":
                acc += (h > 0).sum(1).int()
            elif self.kind == "bool":
                acc = acc + (h > 0.1)
            else:  # two terms of different shapes per step, both scalars
                acc = acc + h.mean() + (x[t] ** 2).mean()
        return acc


@pytest.mark.parametrize("kind", ["float_of_ints", "int32", "bool", "mixed"])
def test_sums_keep_torch_dtypes_and_shapes(kind: str) -> None:
    """Eager's dtype at every size it runs (the rewrite returned int64 for float and int32 sums,
    failed on booleans, and crashed stacking operands of two shapes)."""
    torch.manual_seed(0)
    model = Counts(kind).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # whether the loop rolls is not this test's question
        program = rnnc.trace(model, (torch.randn(5, 2, 4),))
    sizes = [(5, 2), (9, 3)] if isinstance(program.graph.inputs[0][1].shape[0], str) else [(5, 3)]
    for t, b in sizes:
        x = torch.randn(t, b, 4)
        got, want = program.run(x), model(x)
        assert got.dtype == want.dtype
        assert_close(got, want, backend="interp")
