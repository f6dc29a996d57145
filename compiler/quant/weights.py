"""Weight quantization: symmetric per-output-channel int8 and group-wise int4.

Symmetric, because a zero point on the weights would add a correction term (``zp * sum(x)``)
to every integer product; per output channel, because one scale per row costs nothing at
rescale time (it multiplies the int32 accumulator column) while a per-tensor scale lets the
largest row crush the others (one of the things that breaks naive int8 on Silero).  int4 needs
groups along the input as well: 15 levels cannot cover a whole row of a trained matrix.

The error bound every function here guarantees, and the tests check: each dequantized weight
is within half a step (``scale / 2``) of the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rnnc.targets.int8dot import WEIGHT_QMAX

#: largest magnitude of a symmetric code of each width (int4 keeps -8 unused: symmetric range).
#: 7 is int8 storage with 7-bit codes: the format that stays exact on CPUs whose u8 x s8 dot
#: product saturates pair sums in int16 (``targets/int8dot.py``)
QMAX = {8: 127, 7: WEIGHT_QMAX["s7"], 4: 7}
DEFAULT_GROUP = 32


@dataclass(frozen=True)
class QuantizedWeight:
    """Integer codes (int8 storage, whatever the width) and float32 scales.

    ``scale`` is ``[out]`` (per channel) or ``[out, in / group]`` (group-wise).
    """

    q: torch.Tensor
    scale: torch.Tensor
    bits: int
    group: int  # 0: one scale per output channel

    def dequantize(self) -> torch.Tensor:
        from rnnc.ir.ops_quant import dequantize_weight

        return dequantize_weight(self.q, self.scale)

    @property
    def nbytes(self) -> int:
        """Storage as it would be packed (two int4 codes per byte) plus the float scales."""
        stored = 8 if self.bits == 7 else self.bits  # 7-bit codes live in int8 bytes
        return (self.q.numel() * stored + 7) // 8 + 4 * self.scale.numel()


def quantize_per_channel(w: torch.Tensor, bits: int = 8) -> QuantizedWeight:
    """One symmetric scale per output channel (dim 0); any rank (linear or conv weights)."""
    if bits not in QMAX:
        raise ValueError(f"weight width {bits} is not supported (use 8, 7 or 4)")
    w = w.detach().to(torch.float32)
    absmax = w.reshape(w.shape[0], -1).abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / QMAX[bits], torch.ones_like(absmax))
    q = torch.clamp(torch.round(w / scale.view(-1, *([1] * (w.dim() - 1)))), -QMAX[bits], QMAX[bits])
    return QuantizedWeight(q.to(torch.int8), scale, bits, 0)


def quantize_groupwise(w: torch.Tensor, bits: int = 4, group: int = DEFAULT_GROUP) -> QuantizedWeight:
    """Symmetric scales per (output channel, group of ``group`` inputs) for a ``[out, in]`` weight."""
    if w.dim() != 2 or w.shape[1] % group:
        raise ValueError(f"group-wise quantization needs a [out, in] weight with in divisible by {group}, "
                         f"got {tuple(w.shape)}")
    w = w.detach().to(torch.float32)
    grouped = w.reshape(w.shape[0], -1, group)
    absmax = grouped.abs().amax(dim=2)
    scale = torch.where(absmax > 0, absmax / QMAX[bits], torch.ones_like(absmax))
    q = torch.clamp(torch.round(grouped / scale.unsqueeze(-1)), -QMAX[bits], QMAX[bits]).reshape(w.shape)
    return QuantizedWeight(q.to(torch.int8), scale, bits, group)


def mse_group_scales(w: torch.Tensor, bits: int = 4, group: int = DEFAULT_GROUP, grid: int = 24,
                     lowest: float = 0.5, importance: torch.Tensor | None = None) -> QuantizedWeight:
    """Group-wise codes whose per-group scale minimises the squared rounding error.

    The absmax scale wastes levels whenever one weight of a group sits far above the others:
    15 levels then cover mostly empty range.  Shrinking the scale to ``r * absmax / qmax``
    (``r`` on a grid in ``[lowest, 1]``) clips that one weight a little and gives every other
    weight of the group finer steps; per group the ``r`` with the least ``sum (w - deq(w))^2``
    wins (``r = 1`` is on the grid, so it is never worse than absmax).  The half-step bound of
    :func:`quantize_groupwise` then holds for unclipped weights only.

    ``importance`` (``[in]``, e.g. the calibrated mean ``x_j^2``) weighs each input's error by how
    much it reaches the output (``E[(x (W - W_q)^T)^2]`` with a diagonal input covariance: the
    GPTQ/AWQ objective without the off-diagonal terms), so rarely active inputs may clip.
    """
    if w.dim() != 2 or w.shape[1] % group:
        raise ValueError(f"group-wise quantization needs a [out, in] weight with in divisible by {group}, "
                         f"got {tuple(w.shape)}")
    qmax = QMAX[bits]
    grouped = w.detach().to(torch.float32).reshape(w.shape[0], -1, group)
    absmax = grouped.abs().amax(dim=2)
    best_err = torch.full_like(absmax, float("inf"))
    imp = torch.ones(1, 1, 1) if importance is None else importance.to(torch.float32).reshape(1, -1, group)
    best_scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    for r in torch.linspace(lowest, 1.0, grid):
        scale = torch.where(absmax > 0, absmax * r / qmax, torch.ones_like(absmax))
        q = torch.clamp(torch.round(grouped / scale.unsqueeze(-1)), -qmax, qmax)
        sq = (q * scale.unsqueeze(-1) - grouped) ** 2
        err = (sq * imp).sum(dim=2)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
    q = torch.clamp(torch.round(grouped / best_scale.unsqueeze(-1)), -qmax, qmax).reshape(w.shape)
    return QuantizedWeight(q.to(torch.int8), best_scale, bits, group)


def weight_format(w: torch.Tensor, bits: int, group: int = DEFAULT_GROUP, group8: int = 0) -> tuple[int, int]:
    """``(bits, group)`` a matrix gets under a scheme (group 0: one scale per output channel).

    A ``[out, in]`` matrix whose ``in`` is not a multiple of ``group`` (tiny input layers), and
    every conv kernel, fall back to int8 per channel: onnxruntime's int4 kernel (MatMulNBits)
    exists for matmuls only, and an odd-sized group would need padding for a negligible saving.
    Shared by round-to-nearest and GPTQ so both always produce the same format.
    """
    if bits == 4 and w.dim() == 2 and w.shape[1] % group == 0:
        return 4, group
    if group8 and w.dim() == 2 and w.shape[1] % group8 == 0 and w.shape[1] > group8:
        return 8, group8
    return (7 if bits == 7 else 8), 0


def quantize_weight(w: torch.Tensor, bits: int, group: int = DEFAULT_GROUP,
                    per_tensor: bool = False, mse: bool = False, group8: int = 0,
                    importance: torch.Tensor | None = None) -> QuantizedWeight:
    """The scheme's weight format for one matrix (see :func:`weight_format`), round-to-nearest."""
    if per_tensor:  # the ablation: every row shares the largest row's scale
        pbits = 7 if bits == 7 else 8
        scale = torch.full((w.shape[0],), float(w.abs().amax()) / QMAX[pbits] or 1.0)
        codes = torch.clamp(torch.round(w.detach().float() / scale.view(-1, *([1] * (w.dim() - 1)))),
                            -QMAX[pbits], QMAX[pbits])
        return QuantizedWeight(codes.to(torch.int8), scale, pbits, 0)
    fbits, fgroup = weight_format(w, bits, group, group8)
    if fbits == 4:
        return mse_group_scales(w, 4, fgroup, importance=importance) if mse else quantize_groupwise(w, 4, fgroup)
    if fgroup:
        return quantize_groupwise(w, 8, fgroup)
    return quantize_per_channel(w, fbits)
