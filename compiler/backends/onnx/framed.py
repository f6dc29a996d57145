"""A one-channel strided conv1d whose kernel spans whole strides, as one MatMul over blocks.

Audio front ends (Silero's STFT: 1 channel, kernel 256, stride 128, 258 filters) are a
``Conv`` that onnxruntime runs through im2col; at batch 1 that costs ~10 us per call for ~0.3
MFLOP.  When the kernel is ``m`` whole strides, frame ``f`` is blocks ``f .. f+m-1`` of the
signal cut into ``stride``-long blocks, so

    y[:, c, f] = sum_j  blocks[:, f + j] @ W[c, 0, j*stride:(j+1)*stride]

is one MatMul of the blocks with all ``m`` weight slices side by side, then ``m`` shifted
slices of it summed and one Transpose back to ``[B, C, F]`` (~5 us at Silero's size).  Same
products, summed in ``m`` partial sums instead of one (float reassociation only).  Needs no
padding or dilation, one group, and a static length that is a whole number of blocks.
"""

from __future__ import annotations

import numpy as np

from rnnc.backends.onnx.emit import OnnxGraph
from rnnc.ir import TensorType


def frames_of(x_type: TensorType | None, weight_shape: tuple[int, ...], attrs: dict, g: OnnxGraph) -> int | None:
    """How many weight slices (``m``) the framed form uses for this conv, or None if it does not apply."""
    if x_type is None or x_type.rank != 3 or len(weight_shape) != 3:
        return None
    out_c, in_c, k = weight_shape
    stride = attrs["stride"]
    length = g.emitter.dim(x_type.shape[2])
    if in_c != 1 or attrs["groups"] != 1 or attrs["padding"] != 0 or attrs["dilation"] != 1:
        return None
    if stride < 2 or k % stride or not isinstance(length, int) or length % stride or length < k:
        return None
    return k // stride


def side_by_side(w: np.ndarray, stride: int) -> np.ndarray:
    """``[C, 1, m*stride]`` -> ``[stride, m*C]``: column ``j*C + c`` is slice ``j`` of filter ``c``."""
    out_c, _, k = w.shape
    m = k // stride
    return np.ascontiguousarray(w[:, 0, :].reshape(out_c, m, stride).transpose(2, 1, 0).reshape(stride, m * out_c))


def framed_conv(g: OnnxGraph, x: str, w_cat: str, out_c: int, m: int, stride: int, length: int,
                hint: str) -> str:
    """``y [B, C, F]`` of the conv from ``x [B, 1, L]`` and the side-by-side weight ``[stride, m*C]``."""
    blocks = length // stride
    frames = blocks - m + 1
    p = g.op("MatMul", g.op("Reshape", x, g.const([0, blocks, stride]), hint=f"{hint}.blocks"), w_cat,
             hint=f"{hint}.partial")  # [B, blocks, m*C]
    axes = g.const([1, 2])
    y = None
    for j in range(m):
        part = g.op("Slice", p, g.const([j, j * out_c]), g.const([j + frames, (j + 1) * out_c]), axes,
                    hint=f"{hint}.slice{j}")
        y = part if y is None else g.op("Add", y, part, hint=f"{hint}.sum{j}")
    return g.op("Transpose", y, perm=[0, 2, 1], hint=f"{hint}.framed")
