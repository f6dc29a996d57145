"""Plain-torch minGRU loop (Feng et al. 2024, "Were RNNs All We Needed?", §3.1).

The gate and the candidate depend on the input only, which makes the recurrence linear in h::

    z_t = σ(W_z x_t + b_z),   h̃_t = W_h x_t + b_h        (one fused ``weight [2H, I]``: z, h̃)
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

State: ``h [B, H]`` (zeros when not given); ``y_t = h_t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F


def coefficients(x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of ``h_t = a_t h_{t-1} + b_t`` for every step: ``a = 1 - z``, ``b = z h̃``."""
    z_pre, cand = F.linear(x, params["weight"], params.get("bias")).chunk(2, dim=-1)
    z = torch.sigmoid(z_pre)
    return 1 - z, z * cand


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor],
              state: tuple[torch.Tensor, ...] | None = None, **hparams: Any
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (h ``[B, H]``,))."""
    hid = params["weight"].shape[0] // 2
    batch = x.shape[0]
    h = x.new_zeros(batch, hid) if state is None else state[0]
    ys = []
    for t in range(x.shape[1]):
        z_pre, cand = F.linear(x[:, t], params["weight"], params.get("bias")).chunk(2, dim=-1)
        z = torch.sigmoid(z_pre)
        h = (1 - z) * h + z * cand
        ys.append(h)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, hid)
    return y, (h,)
