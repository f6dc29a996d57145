"""Quantize/dequantize round trips against their analytic error bounds."""

from __future__ import annotations

import pytest
import torch

from rnnc.ir.ops import OPS
from rnnc.ir.ops_quant import dequantize_weight, dynamic_quantize_u8
from rnnc.quant.weights import quantize_groupwise, quantize_per_channel, quantize_weight

GEN = torch.Generator().manual_seed(0)


def test_int8_per_channel_within_half_a_step():
    w = torch.randn(64, 48, generator=GEN) * torch.logspace(-3, 1, 64).view(-1, 1)  # rows 10^4 apart
    qw = quantize_per_channel(w, 8)
    assert qw.q.dtype == torch.int8 and int(qw.q.abs().max()) == 127
    err = (qw.dequantize() - w).abs()
    assert torch.all(err <= qw.scale.view(-1, 1) / 2 + 1e-7)
    # per channel: the smallest row keeps its relative precision (a per-tensor scale would zero it)
    assert float(err[0].max() / w[0].abs().max()) <= 0.5 / 127 + 1e-6


def test_int4_groupwise_within_half_a_group_step():
    w = torch.randn(16, 128, generator=GEN)
    w[:, 40] *= 30  # one hot input column: only its group's scale suffers
    qw = quantize_groupwise(w, 4, 32)
    assert qw.scale.shape == (16, 4) and int(qw.q.abs().max()) <= 7
    err = (qw.dequantize() - w).abs().reshape(16, 4, 32)
    assert torch.all(err <= qw.scale.unsqueeze(-1) / 2 + 1e-6)
    assert float(err[:, 0].max()) < float(err[:, 1].max())  # group 1 holds the hot column
    assert qw.nbytes == 16 * 128 // 2 + 4 * 16 * 4


def test_int4_falls_back_to_int8_when_groups_do_not_fit():
    assert quantize_weight(torch.randn(8, 20), 4, 32).bits == 8
    assert quantize_weight(torch.randn(8, 64), 4, 32).bits == 4


def test_dynamic_uint8_matches_onnx_rules():
    x = torch.randn(5, 40, generator=GEN) * 3 + 1
    xq, s, zp = dynamic_quantize_u8(x)
    assert float(xq.min()) >= 0 and float(xq.max()) <= 255
    assert float(s) == pytest.approx((float(x.max()) - min(0.0, float(x.min()))) / 255, rel=1e-6)
    assert torch.all(((xq - zp) * s - x).abs() <= s / 2 + 1e-6)
    # zero is exactly representable (padding and ReLU zeros stay zero)
    zq, zs, zzp = dynamic_quantize_u8(torch.tensor([0.0, 1.0, -2.0]))
    assert float((zq[0] - zzp) * zs) == 0.0


@pytest.mark.parametrize("act", ["dynamic", "static"])
def test_qlinear_error_within_analytic_bound(act):
    x = torch.randn(7, 64, generator=GEN)
    w = torch.randn(24, 64, generator=GEN)
    b = torch.randn(24, generator=GEN)
    qw = quantize_per_channel(w, 8)
    x_scale = torch.tensor(float(x.abs().max()) / 127)
    y = OPS["qlinear"].evaluate([x, qw.q, qw.scale, b, x_scale], {"act": act})[0]
    if act == "dynamic":
        _, s, _ = dynamic_quantize_u8(x)
    else:
        s = x_scale
    # |x w - x' w'| <= sum_k |x_k| dw + |w_k| dx + dx dw, with dx <= s/2 and dw <= scale/2
    dw, dx = qw.scale.view(-1, 1) / 2, float(s) / 2
    bound = (x.abs() @ dw.expand(-1, 64).T) + dx * w.abs().sum(1) + dx * dw.view(-1) * 64
    err = (y - (x @ w.T + b)).abs()
    assert torch.all(err <= bound + 1e-4)
    assert float(err.max()) > 0  # it did quantize


def test_dequantize_groupwise_layout():
    q = torch.arange(-4, 4, dtype=torch.int8).repeat(2, 2)  # [2, 16]
    scale = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    w = dequantize_weight(q, scale)
    assert torch.equal(w[0, :8], q[0, :8].float()) and torch.equal(w[1, 8:], 4 * q[1, 8:].float())
