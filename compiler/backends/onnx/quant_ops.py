"""ONNX renderings of the quantized IR ops (``qlinear``, ``qconv1d``) with integer kernels.

The meaning is ``rnnc.ir.ops_quant``; here each activation mode becomes what onnxruntime runs
as a real integer kernel:

* ``dynamic``: ``DynamicQuantizeLinear`` (uint8, per tensor) -> ``MatMulInteger`` /
  ``ConvInteger`` against int8 weights -> int32 -> one float rescale (``x_scale * w_scale``);
* ``static``: ``QuantizeLinear`` with the calibrated (clipped) scale (uint8, zero point 128:
  the IR's symmetric int8 codes shifted onto the u8s8 fast path) -> the same integer kernels;
* ``none`` (weight-only int8): the int8 weight widened by ``Cast``/``Mul`` (folded once at load:
  a storage format; onnxruntime's QDQ fusion of ``DequantizeLinear`` fails inside Scan bodies);
* int4 group-wise weights: ``com.microsoft.MatMulNBits`` (packed 4-bit blocks), with
  ``accuracy_level=4`` (int8 activations inside the kernel) when activations are quantized.

Kept outlier channels are zeroed (one ``Mul`` by a 0/1 mask) before quantization and added
back through a small float ``MatMul``/``Conv`` on the gathered channels.  Weights are written
in the layout each kernel wants (``MatMulInteger`` has no transB, so ``[in, out]``).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from rnnc.backends.onnx.emit import OnnxGraph, to_numpy
from rnnc.backends.onnx.ops import Ins, Types, renders
from rnnc.errors import UnsupportedError
from rnnc.ir import Node

MS_DOMAIN = "com.microsoft"


def _weight(g: OnnxGraph, name: str | None, what: str) -> np.ndarray:
    """A param's tensor: quantized weights are laid out at export time, so they must be constants."""
    if not name or name not in g.emitter.weights:
        raise UnsupportedError(f"the ONNX quantized renderer needs {what} as a Program weight, got a computed value")
    return to_numpy(g.emitter.weights[name])


def _split_keep(g: OnnxGraph, x: str, ins: Ins, axis: int, rank: int, hint: str) -> tuple[str, str | None]:
    """(x with the kept channels zeroed, the gathered kept channels) or (x, None)."""
    if not ins[5]:
        return x, None
    idx = _weight(g, ins[5], "keep_idx")
    n = int(_weight(g, ins[1], "wq").shape[1])  # input channels (groups=1 is checked by the IR)
    mask = np.ones(n, np.float32)
    mask[idx] = 0.0
    shape = [n] + [1] * (rank - 1 - axis % rank)  # broadcasts over the axes after the channels
    m = g.emitter.initializer(f"{hint}.keep_mask", mask.reshape(shape))
    rest = g.op("Mul", x, m, hint=f"{hint}.rest")
    kept = g.op("Gather", x, ins[5], axis=axis, hint=f"{hint}.kept")
    return rest, kept


def _pack(q: np.ndarray, block: int, bits: int) -> np.ndarray:
    """MatMulNBits' ``B``: ``[N, K / block, block * bits / 8]`` uint8 of unsigned codes (code +
    2**(bits-1), the kernel's default zero point); int4 packs two per byte, low nibble first."""
    n, k = q.shape
    u = (q.astype(np.int16) + (1 << (bits - 1))).astype(np.uint8).reshape(n, k // block, block)
    return u if bits == 8 else (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def _nbits_block(k: int, groups: int) -> int | None:
    """Block size for MatMulNBits: the group size, or for per-channel scales (one group) the
    largest power of two >= 16 dividing K (the scale is repeated per block); None if none fits."""
    if groups > 1:
        return k // groups
    return next((b for b in (256, 128, 64, 32, 16) if k % b == 0), None)


def _nbits(g: OnnxGraph, x: str, wq: np.ndarray, ws: np.ndarray, bits: int, act: str, hint: str) -> str | None:
    """``com.microsoft.MatMulNBits``: onnxruntime's packed low-bit weight kernel (None: shape unfit)."""
    n, k = wq.shape
    groups = ws.shape[1] if ws.ndim == 2 else 1
    block = _nbits_block(k, groups)
    if block is None:
        return None
    scales = np.repeat(ws.reshape(n, groups), (k // block) // groups, axis=1).astype(np.float32)
    b = g.emitter.initializer(f"{hint}.b{bits}", _pack(wq, block, bits))
    s = g.emitter.initializer(f"{hint}.s{bits}", scales.reshape(-1))
    return g.node("MatMulNBits", [x, b, s], f"{hint}.nbits", 1, domain=MS_DOMAIN, K=k, N=n, bits=bits,
                  block_size=block, accuracy_level=0 if act == "none" else 4)[0]


def _integer(g: OnnxGraph, x: str, act: str, x_scale: str | None, kernel, w_scale: str, hint: str) -> str:
    """Quantize ``x`` for ``act``, run ``kernel(xq, zero_point)`` (int32), rescale to float."""
    if act == "dynamic":
        xq, s, zp = g.node("DynamicQuantizeLinear", [x], f"{hint}.xq", 3)
    else:  # symmetric int8 shifted by 128 into uint8: the same codes, on onnxruntime's fast u8s8 path
        assert x_scale is not None
        zp = g.const(128, "uint8")
        xq = g.op("QuantizeLinear", x, x_scale, zp, hint=f"{hint}.xq")
        s = x_scale
    acc = kernel(xq, zp)
    rescale = g.op("Mul", s, w_scale, hint=f"{hint}.rescale")
    return g.op("Mul", g.op("Cast", acc, to=TensorProto.FLOAT), rescale, hint=f"{hint}.y")


@renders("qlinear")
def _qlinear(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    hint = node.outputs[0]
    act = node.attr("act")
    ins = [*ins, *([None] * (7 - len(ins)))]
    x = ins[0]
    assert x is not None and types[0] is not None
    wq, ws = _weight(g, ins[1], "wq"), _weight(g, ins[2], "w_scale")
    rest, kept = _split_keep(g, x, ins, -1, types[0].rank, hint)
    bits = node.attr("bits", 8)
    if bits == 4:  # the packed 4-bit kernel (int8 activations inside it when act != none)
        if act == "static":
            bound = g.op("Mul", ins[4], g.const(127.0, "float32"))
            rest = g.op("Clip", rest, g.op("Neg", bound), bound)  # the calibrated (clipped) range
        y = _nbits(g, rest, wq, ws, bits, act, hint)
        if y is None:
            raise UnsupportedError(f"{node.label}: {wq.shape[1]} inputs fit no MatMulNBits block (16..256)")
    elif act == "none":  # int8 weight-only: stored int8, widened once (onnxruntime folds it at load)
        w_t = g.emitter.initializer(f"{hint}.wq_t", np.ascontiguousarray(wq.T))
        scale = g.emitter.initializer(f"{hint}.w_scale", ws.reshape(-1).astype(np.float32))
        w = g.op("Mul", g.op("Cast", w_t, to=TensorProto.FLOAT), scale)
        y = g.op("MatMul", rest, w, hint=f"{hint}.mm")
    else:
        w_t = g.emitter.initializer(f"{hint}.wq_t", np.ascontiguousarray(wq.T))
        w_scale = g.emitter.initializer(f"{hint}.w_scale", ws.reshape(-1).astype(np.float32))
        y = _integer(g, rest, act, ins[4], lambda xq, zp: g.op("MatMulInteger", xq, w_t, zp, hint=f"{hint}.acc"),
                     w_scale, hint)
    if kept is not None:
        kw = g.emitter.initializer(f"{hint}.keep_w_t", np.ascontiguousarray(_weight(g, ins[6], "keep_w").T))
        y = g.op("Add", y, g.op("MatMul", kept, kw), hint=f"{hint}.with_kept")
    if ins[3]:
        y = g.op("Add", y, ins[3], hint=hint)
    return [y]


@renders("qconv1d")
def _qconv1d(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    hint = node.outputs[0]
    a = node.attr_dict
    act = a["act"]
    ins = [*ins, *([None] * (7 - len(ins)))]
    x = ins[0]
    assert x is not None
    ws = _weight(g, ins[2], "w_scale")
    conv = {"strides": [a["stride"]], "pads": [a["padding"]] * 2, "dilations": [a["dilation"]], "group": a["groups"]}
    rest, kept = _split_keep(g, x, ins, 1, 3, hint)
    if act == "none":  # weight-only: widened once (a DequantizeLinear here would be re-fused by ORT)
        scale = g.emitter.initializer(f"{hint}.w_scale", ws.reshape(-1, 1, 1).astype(np.float32))
        w = g.op("Mul", g.op("Cast", ins[1], to=TensorProto.FLOAT), scale)
        y = g.op("Conv", rest, w, hint=f"{hint}.conv", **conv)
    else:
        w_scale = g.emitter.initializer(f"{hint}.w_scale", ws.reshape(-1, 1).astype(np.float32))
        y = _integer(g, rest, act, ins[4],
                     lambda xq, zp: g.op("ConvInteger", xq, ins[1], zp, hint=f"{hint}.acc", **conv),
                     w_scale, hint)
    if kept is not None:
        y = g.op("Add", y, g.op("Conv", kept, ins[6], **{**conv, "group": 1}), hint=f"{hint}.with_kept")
    if ins[3]:
        y = g.op("Add", y, g.op("Unsqueeze", ins[3], g.const([1])), hint=hint)
    return [y]
