"""``MambaBlock``: the full Mamba block (Gu & Dao 2023, Fig. 3) around the S6 scan, as a module
users drop into a model -- in-projection, depthwise causal conv1d, SiLU, the selective scan,
the SiLU gate and the out-projection.

Why here: the S6 layer alone is the recurrence; every Mamba model wraps it the same way, and
writing that wrapper with torch.nn layers rnnc already traces (``nn.Linear``, ``nn.Conv1d``)
keeps the block traceable with batch and length symbolic, so ``rnnc.compile``/``export_onnx`` take
a Mamba model without the user re-deriving the block::

    x, z = in_proj(u).chunk(2)                      # [B, T, E] each, E = expand * d_model
    x = silu(causal_depthwise_conv1d(x))            # kernel d_conv, left padding d_conv - 1
    y = S6(x) * silu(z)
    out = out_proj(y)                               # [B, T, d_model]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnc.kernels.mamba.module import MambaS6Layer


class MambaBlock(nn.Module):
    """One Mamba block: ``forward(u [B, T, d_model]) -> [B, T, d_model]``."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, bias: bool = False,
                 conv_bias: bool = True) -> None:
        super().__init__()
        inner = expand * d_model
        self.d_conv = d_conv
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=bias)
        self.conv1d = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1, bias=conv_bias)
        self.ssm = MambaS6Layer(inner, d_state)
        self.out_proj = nn.Linear(inner, d_model, bias=bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(u).chunk(2, dim=-1)
        steps = x.shape[1]
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :steps].transpose(1, 2))  # causal: drop the right pad
        y, _ = self.ssm(x)
        return self.out_proj(y * F.silu(z))
