"""Quantized ops of the IR: ``qlinear`` and ``qconv1d`` (their torch semantics are the meaning).

Both ops take int8 weights (int4 values are stored in int8, range [-8, 7]) with float scales and
compute the product the way an integer kernel does, so the interpreter reproduces what
onnxruntime's ``MatMulInteger`` / ``ConvInteger`` return (up to float summation order):

* ``act="none"``: weight-only; ``x`` stays float and meets the dequantized weight.
* ``act="dynamic"``: ``x`` is quantized per tensor to asymmetric uint8 exactly like ONNX's
  ``DynamicQuantizeLinear`` (range widened to include 0, round half to even), then an integer
  product, then rescaled.  Inside a cell step this is per time step.
* ``act="static"``: ``x`` is quantized to symmetric int8 with a calibrated ``x_scale``
  (saturating: values beyond the calibrated range clip, which is what percentile clipping buys).

Inputs: ``x, wq, w_scale, bias?, x_scale?, keep_idx?, keep_w?``.  ``w_scale`` is ``[out]`` (per
output channel) or ``[out, in / group]`` (group-wise along the input, int4 schemes).  The
optional ``keep_idx`` (int64 ``[k]``) lists input channels kept in floating point (outliers,
LLM.int8 / Mamba-PTQ style): they are zeroed before ``x`` is quantized, so they no longer set
its range, and added back through ``keep_w`` (float ``[out, k]``, or ``[out, k, K]`` for conv).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rnnc.ir.ops import ShapeError, _req, _t, infers, register_op
from rnnc.ir.types import TensorType, dims_compatible

ACT_MODES = ("none", "dynamic", "static")


def dynamic_quantize_u8(x: Any) -> tuple[Any, Any, Any]:
    """ONNX ``DynamicQuantizeLinear``: ``(xq as float, scale, zero_point as float)``."""
    torch = _t()
    lo = torch.clamp(x.min(), max=0.0) if x.numel() else torch.tensor(0.0)
    hi = torch.clamp(x.max(), min=0.0) if x.numel() else torch.tensor(0.0)
    scale = ((hi - lo) / 255.0).to(torch.float32)
    if float(scale) == 0.0:
        return torch.zeros_like(x), scale, torch.tensor(0.0)
    zp = torch.clamp(torch.round(-lo / scale), 0, 255)
    xq = torch.clamp(torch.round(x / scale) + zp, 0, 255)
    return xq, scale, zp


def sequence_codes(x: Any) -> Any:
    """A quantized LSTM layer's input (cell attr ``xquant="sequence"``): the whole sequence
    ``[B, T, I]`` quantized once by :func:`dynamic_quantize_u8` and handed to the cell as
    ``(code - zero_point) * scale``.  Its weight-only input projection then computes exactly the
    integer product of onnxruntime's ``DynamicQuantizeLSTM`` (up to float summation order)."""
    xq, scale, zp = dynamic_quantize_u8(x)
    return (xq - zp) * scale


def static_quantize_s8(x: Any, scale: Any) -> Any:
    """ONNX ``QuantizeLinear`` to int8 with zero point 0 (saturating), as float."""
    torch = _t()
    return torch.clamp(torch.round(x / scale), -128, 127)


def dequantize_weight(wq: Any, w_scale: Any) -> Any:
    """Float weight from int8 values and per-channel ``[out]`` or group-wise ``[out, G]`` scales."""
    w = wq.to(_t().float32)
    if w_scale.dim() == 1:
        return w * w_scale.view(-1, *([1] * (w.dim() - 1)))
    groups = w_scale.shape[1]
    flat = w.reshape(w.shape[0], groups, -1) * w_scale.unsqueeze(-1)
    return flat.reshape(w.shape)


def _split_keep(x: Any, keep_idx: Any, axis: int) -> tuple[Any, Any]:
    """(x with the kept channels zeroed, the kept channels gathered)."""
    if keep_idx is None or keep_idx.numel() == 0:
        return x, None
    kept = x.index_select(axis, keep_idx)
    rest = x.index_fill(axis, keep_idx, 0.0)
    return rest, kept


def _int_product(x: Any, wq: Any, w_scale: Any, mode: str, x_scale: Any, product) -> Any:
    """``product(x_like, w_like)`` evaluated the integer way for ``mode``.

    Integer sums are done in float64, which is exact for 8-bit operands (every partial sum is
    an integer below 2**53), so the result matches an int32-accumulating kernel.
    """
    torch = _t()
    if mode == "none":
        return product(x, dequantize_weight(wq, w_scale))
    if mode == "dynamic":
        xq, s, zp = dynamic_quantize_u8(x)
        xi = (xq - zp).to(torch.float64)
    else:
        s = x_scale.to(torch.float32)
        xi = static_quantize_s8(x, s).to(torch.float64)
    wi = wq.to(torch.float64)
    if w_scale.dim() == 1:
        acc = product(xi, wi).to(torch.float32)
        return acc * s * w_scale.view(-1, *([1] * getattr(product, "channel_from_end", 0)))
    groups = w_scale.shape[1]
    size = wi.shape[1] // groups
    out = 0
    for g in range(groups):  # one integer product per group, rescaled by that group's scale
        acc = product(xi[..., g * size:(g + 1) * size], wi[:, g * size:(g + 1) * size]).to(torch.float32)
        out = out + acc * s * w_scale[:, g]
    return out


# --------------------------------------------------------------------------- qlinear
def _linear_product(x: Any, w: Any) -> Any:
    return _t().matmul(x, w.transpose(0, 1).to(x.dtype))


@register_op("qlinear", inputs=(3, 7), attrs=("act",),
             doc="y = x @ dequant(wq).T + b with int8/int4 weights, optional int activations and fp outliers")
def _qlinear(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    x, wq, w_scale = xs[0], xs[1], xs[2]
    bias, x_scale, keep_idx, keep_w = (list(xs[3:]) + [None] * 4)[:4]
    rest, kept = _split_keep(x, keep_idx, x.dim() - 1)
    y = _int_product(rest, wq, w_scale, a["act"], x_scale, _linear_product)
    if kept is not None:
        y = y + _t().matmul(kept, keep_w.transpose(0, 1))
    if bias is not None:
        y = y + bias
    return (y,)


def _check_common(types: Sequence[TensorType | None], attrs: dict[str, Any], w_rank: int) -> None:
    if attrs["act"] not in ACT_MODES:
        raise ShapeError(f"act must be one of {ACT_MODES}, got {attrs['act']!r}")
    wq, ws = _req(types[1], "wq"), _req(types[2], "w_scale")
    if wq.dtype != "int8" or wq.rank != w_rank:
        raise ShapeError(f"wq must be int8 of rank {w_rank}, got {wq.text()}")
    if ws.dtype != "float32" or ws.rank not in (1, 2) or not dims_compatible(ws.shape[0], wq.shape[0]):
        raise ShapeError(f"w_scale must be f32[out] or f32[out, groups] for {wq.text()}, got {ws.text()}")
    x_scale = types[4] if len(types) > 4 else None
    if attrs["act"] == "static" and (x_scale is None or x_scale.rank != 0):
        raise ShapeError("act=static needs a scalar x_scale input")
    keep_idx = types[5] if len(types) > 5 else None
    keep_w = types[6] if len(types) > 6 else None
    if (keep_idx is None) != (keep_w is None):
        raise ShapeError("keep_idx and keep_w come together")
    if keep_idx is not None and (keep_idx.dtype != "int64" or keep_idx.rank != 1 or keep_w is None
                                 or keep_w.shape[1] != keep_idx.shape[0]):
        raise ShapeError(f"keep_idx must be i64[k] and keep_w [out, k, ...], got {keep_idx.text()}")


@infers("qlinear")
def _qlinear_infer(types, attrs):
    x, wq = _req(types[0], "x"), _req(types[1], "wq")
    _check_common(types, attrs, 2)
    if not dims_compatible(x.shape[-1], wq.shape[1]):
        raise ShapeError(f"qlinear: x has {x.shape[-1]} features but wq {wq.text()} expects {wq.shape[1]}")
    return (TensorType((*x.shape[:-1], wq.shape[0]), x.dtype),)


# --------------------------------------------------------------------------- qconv1d
def _conv_product(attrs: dict[str, Any]):
    def product(x: Any, w: Any) -> Any:
        return _t().nn.functional.conv1d(x, w.to(x.dtype), None, attrs["stride"], attrs["padding"],
                                         attrs["dilation"], attrs["groups"])

    product.channel_from_end = 1  # y is [B, O, L]: scales broadcast over the length axis
    return product


@register_op("qconv1d", inputs=(3, 7), attrs=("act", "stride", "padding", "dilation", "groups"),
             doc="conv1d with int8 weights [O, C/g, K], per-output-channel scales, optional int activations")
def _qconv1d(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    x, wq, w_scale = xs[0], xs[1], xs[2]
    bias, x_scale, keep_idx, keep_w = (list(xs[3:]) + [None] * 4)[:4]
    rest, kept = _split_keep(x, keep_idx, 1)
    y = _int_product(rest, wq, w_scale, a["act"], x_scale, _conv_product(a))
    if kept is not None:
        y = y + _t().nn.functional.conv1d(kept, keep_w, None, a["stride"], a["padding"], a["dilation"])
    if bias is not None:
        y = y + bias.view(1, -1, 1)
    return (y,)


@infers("qconv1d")
def _qconv1d_infer(types, attrs):
    from rnnc.ir.ops_shape import _conv1d_infer

    _check_common(types, attrs, 3)
    if _req(types[2], "w_scale").rank != 1:
        raise ShapeError("qconv1d takes per-output-channel weight scales only")
    if attrs["groups"] != 1 and len(types) > 5 and types[5] is not None:
        raise ShapeError("qconv1d keeps outlier channels only for groups=1")
    wq = _req(types[1], "wq")
    return _conv1d_infer([types[0], TensorType(wq.shape, "float32")], attrs)
