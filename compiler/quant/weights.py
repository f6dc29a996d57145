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

#: largest magnitude of a symmetric code of each width (int4 keeps -8 unused: symmetric range)
QMAX = {8: 127, 4: 7}
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
        return (self.q.numel() * self.bits + 7) // 8 + 4 * self.scale.numel()


def quantize_per_channel(w: torch.Tensor, bits: int = 8) -> QuantizedWeight:
    """One symmetric scale per output channel (dim 0); any rank (linear or conv weights)."""
    if bits not in QMAX:
        raise ValueError(f"weight width {bits} is not supported (use 8 or 4)")
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


def quantize_weight(w: torch.Tensor, bits: int, group: int = DEFAULT_GROUP,
                    per_tensor: bool = False) -> QuantizedWeight:
    """The scheme's weight format for one matrix: int4 group-wise where the shape allows it.

    A ``[out, in]`` matrix whose ``in`` is not a multiple of ``group`` (tiny input layers), and
    every conv kernel, fall back to int8 per channel: onnxruntime's int4 kernel (MatMulNBits)
    exists for matmuls only, and an odd-sized group would need padding for a negligible saving.
    """
    if per_tensor:  # the ablation: every row shares the largest row's scale
        scale = torch.full((w.shape[0],), float(w.abs().amax()) / QMAX[8] or 1.0)
        codes = torch.clamp(torch.round(w.detach().float() / scale.view(-1, *([1] * (w.dim() - 1)))), -127, 127)
        return QuantizedWeight(codes.to(torch.int8), scale, 8, 0)
    if bits == 4 and w.dim() == 2 and w.shape[1] % group == 0:
        return quantize_groupwise(w, 4, group)
    return quantize_per_channel(w, 8)
