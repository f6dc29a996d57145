"""Every ONNX rendering of the ``aten`` op, and the run-time-shaped ops, against torch eager.

Each case is a small module around one torch call that reaches rnnc through ``torch.export``
(``frontend/aten.py``); it is traced at batch 2 with the batch symbolic and run at batch 3 in
rnnc's interpreter and, exported, in onnxruntime.  torch's own result is the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.backends.onnx.runtime import StatefulSession
from rnnc.ir import Program
from rnnc.ir.parser import parse_program


class Fn(nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor], *mods: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *self.mods)


def _img(b: int) -> torch.Tensor:
    return torch.randn(b, 4, 10, 12, generator=torch.Generator().manual_seed(b))


def _seq(b: int) -> torch.Tensor:
    return torch.randn(b, 4, 16, generator=torch.Generator().manual_seed(b + 7))


def _pool_with_indices(x: torch.Tensor) -> torch.Tensor:
    """Values and indices of 2-D and 3-D max pools (indices count within each channel's plane)."""
    v2, i2 = F.max_pool2d(x, 2, return_indices=True)
    v3, i3 = F.max_pool3d(x.unsqueeze(1), (1, 2, 2), return_indices=True)
    return torch.cat([v2.flatten(1), i2.flatten(1).float(), v3.flatten(1), i3.flatten(1).float()], 1)


CASES: dict[str, tuple[nn.Module, Callable[[int], torch.Tensor]]] = {
    "max_pool_indices": (Fn(_pool_with_indices), _img),
    "conv2d_same_dilated": (Fn(lambda x, c: c(x), nn.Conv2d(4, 6, 3, padding="same", dilation=2)), _img),
    "conv2d_stride_groups": (Fn(lambda x, c: c(x), nn.Conv2d(4, 8, (3, 5), stride=(2, 1), padding=(1, 2),
                                                              groups=2)), _img),
    "conv2d_reflect": (Fn(lambda x, c: c(x), nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")), _img),
    "conv_transpose2d": (Fn(lambda x, c: c(x), nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1,
                                                                  output_padding=1)), _img),
    "conv_transpose1d": (Fn(lambda x, c: c(x), nn.ConvTranspose1d(4, 3, 4, stride=2, padding=1)), _seq),
    "batchnorm2d": (Fn(lambda x, m: m(x), nn.BatchNorm2d(4)), _img),
    "instancenorm1d_affine": (Fn(lambda x, m: m(x), nn.InstanceNorm1d(4, affine=True)), _seq),
    "groupnorm": (Fn(lambda x, m: m(x), nn.GroupNorm(2, 4)), _img),
    "maxpool2d_ceil_pad": (Fn(lambda x: F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True)), _img),
    "avgpool2d": (Fn(lambda x: F.avg_pool2d(x, (2, 3), count_include_pad=False, padding=(1, 1))), _img),
    "maxpool1d": (Fn(lambda x: F.max_pool1d(x, 2)), _seq),
    "avgpool1d": (Fn(lambda x: F.avg_pool1d(x, 4, 2)), _seq),
    "adaptive_avg_global": (Fn(lambda x: F.adaptive_avg_pool2d(x, 1)), _img),
    "adaptive_avg_divisible": (Fn(lambda x: F.adaptive_avg_pool2d(x, (5, 4))), _img),
    "upsample_nearest_scale": (Fn(lambda x: F.interpolate(x, scale_factor=2, mode="nearest")), _img),
    "upsample_nearest_size": (Fn(lambda x: F.interpolate(x, size=(7, 9), mode="nearest")), _img),
    "upsample_bilinear": (Fn(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")), _img),
    "upsample_bilinear_corners": (Fn(lambda x: F.interpolate(x, size=(5, 7), mode="bilinear",
                                                             align_corners=True)), _img),
    "upsample_linear": (Fn(lambda x: F.interpolate(x, scale_factor=3, mode="linear")), _seq),
    "pixel_shuffle": (Fn(lambda x: F.pixel_shuffle(x, 2)), _img),
    "glu": (Fn(lambda x: F.glu(x, dim=1)), _img),
    "activations": (Fn(lambda x: F.hardswish(x) + F.hardsigmoid(x) + F.leaky_relu(x, 0.2) + F.elu(x, 0.5)
                       + F.mish(x) + F.selu(x) + torch.log1p(x.abs())), _img),
    "prelu_channels": (Fn(lambda x, p: p(x), nn.PReLU(4, 0.1)), _img),
    "norms": (Fn(lambda x: F.normalize(x, dim=1) + torch.linalg.vector_norm(x, 1, dim=-1, keepdim=True)
                 + x.abs().amax(-1, keepdim=True) + torch.norm(x, dim=2, keepdim=True)), _img),
    "logsumexp_cumsum": (Fn(lambda x: torch.logsumexp(x, dim=-1, keepdim=True) + torch.cumsum(x, 2)
                            + torch.logcumsumexp(x, 2)), _seq),
    "min_max_arg": (Fn(lambda x: x.amin(-1) + x.max(dim=-1).values + x.argmax(-1).float()
                       + x.min(dim=-1).indices.float()), _seq),
    "compare_logic": (Fn(lambda x: ((x >= 0.1) & (x <= 0.5) | (x == 0) ^ (x != 1)).float()
                      + (x > 0).any(dim=-1, keepdim=True).float()), _seq),
    "floor_trunc_div": (Fn(lambda x: torch.div(x * 7, 2, rounding_mode="floor")
                        + torch.div(x * 7, 3, rounding_mode="trunc") + torch.floor(x) + torch.sign(x)), _seq),
    "einsum_bmm": (Fn(lambda x: torch.einsum("bct,bdt->bcd", x, x) + torch.bmm(x, x.transpose(1, 2))), _seq),
    "expand_repeat": (Fn(lambda x: x.mean(1, keepdim=True).expand(-1, 4, -1) + x[:, :1].repeat(1, 4, 1)
                         + x.repeat(1, 1, 2)[..., :16]), _seq),
    "index_select_gather": (Fn(lambda x: x.index_select(2, torch.tensor([3, 0, 5]))
                               + x.gather(2, torch.tensor([[[1, 2, 0]] * 4])).expand(x.shape[0], -1, -1)
                               + x[:, :, torch.tensor([2, 2, 1])]), _seq),
    "pads": (Fn(lambda x: F.pad(x, (1, 2, 3, 0), mode="reflect")[..., :10, :12]
                + F.pad(x, (2, 1, 0, 1), mode="replicate")[..., :10, :12]
                + F.pad(x, (1, 1, 1, 1), value=0.5)[..., :10, :12]), _img),
    "tril_triu": (Fn(lambda x: torch.tril(x, -1) + torch.triu(x, 2)), _img),
    "prods": (Fn(lambda x: (1 + 0.1 * x).prod(-1, keepdim=True) + torch.prod(0.5 + 0.01 * x)
                 + (x > 0).prod(1).unsqueeze(1)), _seq),
    "clamp_tensor": (Fn(lambda x: torch.clamp(x, min=x.mean(), max=x.amax() * 0.5)), _seq),
    "sort_topk": (Fn(lambda x: torch.sort(x, dim=-1, descending=True).values[..., :3]
                     + torch.topk(x, 3, dim=-1).values + torch.topk(x, 3, dim=-1, largest=False).values), _seq),
    "sdpa_causal": (Fn(lambda x: F.scaled_dot_product_attention(x, x, x, is_causal=True)), _seq),
    "sdpa_masks": (Fn(lambda x: F.scaled_dot_product_attention(x, x, x, attn_mask=torch.ones(4, 4).tril().bool())
                      + F.scaled_dot_product_attention(x.transpose(1, 2), x.transpose(1, 2), x.transpose(1, 2),
                                                       attn_mask=torch.randn(16, 16, generator=torch.Generator()
                                                                             .manual_seed(0)), scale=0.3)
                      .transpose(1, 2)), _seq),
    "multihead_attention": (Fn(lambda x, m: m(x, x, x, need_weights=False)[0],
                               nn.MultiheadAttention(16, 2, batch_first=True)), _seq),
    "full_like_arange": (Fn(lambda x: torch.full_like(x, 2.0) * torch.arange(16.0) + torch.ones_like(x)
                            + torch.zeros_like(x)), _seq),
    "erf_round": (Fn(lambda x: torch.erf(x) + torch.round(x * 3) + torch.ceil(x)), _seq),
    "var_std": (Fn(lambda x: x.var(2) + x.std(-1, correction=0) + torch.var(x, (1, 2), keepdim=True)[:, 0]
                   + x.var()), _seq),
    "index_tensors": (Fn(lambda x: torch.cat([
        x[torch.arange(x.shape[0]), torch.arange(x.shape[0]) % 4],  # leading axes: [B, 16]
        x[:, torch.tensor([0, 3]), torch.tensor([5, -1])],  # adjacent, after a sliced axis: [B, 2]
        x[torch.arange(x.shape[0]), :, (torch.arange(x.shape[0]) * 3) % 16]], 1)), _seq),  # apart: [B, 4]
    "unfold": (Fn(lambda x: torch.cat([x.unfold(2, 4, 3).flatten(1), x.unfold(1, 3, 1).flatten(1)], 1)), _seq),
    "im2col": (Fn(lambda x: F.unfold(x, (3, 2), stride=(1, 2))), _img),
    "atan2": (Fn(lambda x: torch.atan2(x, x.flip(-1)) + torch.atan2(x.clamp(min=0), torch.zeros_like(x))
                 + torch.atan2(x * 0, x) + torch.atan2(x * 0, x.flip(-1) * 0)), _seq),  # (x * 0: signed zeros)
    "remainder_promoted": (Fn(lambda x: torch.remainder((x * 4).long(), 2.5) + x), _seq),
    "fmod_remainder": (Fn(lambda x: torch.fmod(x * 5, 1.5) + torch.remainder(x * 5, 1.5)
                          + torch.fmod(x * 3, x.abs() + 0.5)), _seq),
    # operands of two dtypes (int64 positions against int32 lengths), a Python float against an
    # integer tensor, a Python int first (``t % self.periods``), integer bits, floats as truth
    "compare_promoted": (Fn(lambda x: ((x * 4).long() >= (x * 3).int()).float() + ((x * 4).long() >= 0.5).float()
                            + ((x * 2).long() == 1.0).float() + torch.bitwise_and((x * 8).long(), 5).float()
                            + torch.logical_and(x, x.flip(-1)).float()
                            + (3 % ((x.abs() * 4).long() + 1)).float()), _seq),
    # a 0-dim tensor does not widen a tensor of its kind (float16 against a float32 scalar tensor);
    # uint8 against int8 is int16
    "compare_zero_dim": (Fn(lambda x: (x.half() >= torch.tensor(0.1)).float()
                            + ((x * 4).to(torch.uint8) >= (x * 4).to(torch.int8)).float()), _seq),
}


def _program(model: nn.Module, make: Callable[[int], torch.Tensor]) -> Program:
    return rnnc.trace(model.eval(), make(2), dynamic=[{0: "B"}])


@pytest.mark.parametrize("name", sorted(CASES))
def test_aten_op_in_interpreter_and_onnxruntime(name: str, tmp_path) -> None:
    model, make = CASES[name]
    torch.manual_seed(0)
    program = _program(model, make)
    matches_torch(program, model, (make(3),), tmp_path, name)


def test_aten_nodes_round_trip_through_the_printed_text() -> None:
    """The aten op's attributes (overload, arguments with tensor slots, dtypes, kwargs) are JSON:
    a printed Program parses back to the same hash."""
    model, make = CASES["index_select_gather"]
    program = _program(model, make)
    assert any(n.op == "aten" for n in program.graph.nodes)
    again = parse_program(program.text(), program.weights)
    assert again.hash() == program.hash()
    x = make(3)
    torch.testing.assert_close(again.run(x), program.run(x))


def test_an_op_without_onnx_rendering_is_named_in_one_sentence() -> None:
    """Which op, and where the model wrote it (``Program.lines``)."""
    import inspect

    model = Fn(lambda x: torch.special.i0(x))
    line = inspect.currentframe().f_lineno - 1  # the lambda's line
    program = _program(model, _seq)
    torch.testing.assert_close(program.run(_seq(3)), torch.special.i0(_seq(3)))
    with pytest.raises(rnnc.errors.UnsupportedError,
                       match=rf"aten\.(special_)?i0.*no ONNX rendering yet \(at test_aten_ops\.py:{line}\)"):
        rnnc.export_onnx(program)


@pytest.mark.parametrize("batch", [1, 4])
def test_run_time_shapes_follow_the_batch(batch: int, tmp_path) -> None:
    """reshape_dyn / expand_dyn / full_dyn / slice_dyn / arange with sizes read from inputs."""

    class Shapes(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
            b, t, f = x.shape
            z = x.reshape(t, b * 2, f // 2)  # two symbolic dims move
            h = torch.zeros(b, 3) + torch.ones(b, 3)  # sizes read from x
            s = y[:, : t - t % 4]  # a bound computed from T
            r = torch.arange(1, t + 1).float()[None, :].expand(b, t)
            e = x.mean(-1, keepdim=True).repeat(1, 1, 5)
            return z, h, s, r, e

    model = Shapes()
    x2, y2 = torch.randn(2, 9, 6), torch.randn(2, 11)
    program = rnnc.trace(model, (x2, y2), dynamic=[{0: "B", 1: "T"}, {0: "B", 1: "T1"}])
    ops = {n.op for n in program.graph.nodes}
    assert {"reshape_dyn", "full_dyn", "slice_dyn", "arange"} <= ops, ops
    x, y = torch.randn(batch, 13, 6), torch.randn(batch, 17)
    want = model(x, y)
    for g, w in zip(program.run(x, y), want, strict=True):
        torch.testing.assert_close(g, w)
    path = tmp_path / "shapes.onnx"
    rnnc.export_onnx(program, path=path)
    for g, w in zip(StatefulSession(str(path))(x, y), want, strict=True):
        torch.testing.assert_close(torch.from_numpy(g), w)


@pytest.mark.parametrize("op", ["inv", "solve"])
def test_ops_with_error_checks_trace(op: str) -> None:
    """A Kalman filter's gain ``P @ H.T @ torch.linalg.inv(S)`` and its ``torch.linalg.solve(S, r)``:
    their export carries an error check as a side effect (a token input and ``with_effects``),
    which crashed the trace with a bare ``KeyError: None``.  The check is no value; the ops run
    in the interpreter (ONNX names them: it has no rendering)."""
    from rnnc.tolerances import assert_close

    def gain(x: torch.Tensor) -> torch.Tensor:
        s = x.transpose(-1, -2) @ x + torch.eye(16)
        return torch.linalg.inv(s) if op == "inv" else torch.linalg.solve(s, x.transpose(-1, -2))

    model = Fn(gain)
    program = _program(model, _seq)
    x = _seq(3)
    with torch.no_grad():
        assert_close(program.run(x), model(x), backend="interp")
    with pytest.raises(rnnc.errors.UnsupportedError, match="linalg.*no ONNX rendering yet"):
        rnnc.export_onnx(program)
