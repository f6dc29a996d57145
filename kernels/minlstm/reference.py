"""Plain-torch minLSTM loop (Feng et al. 2024, "Were RNNs All We Needed?", §3.2).

Gates from the input only, normalised so that forget and input weights sum to one (the
time-independent scale that keeps h bounded)::

    f_t = σ(W_f x_t + b_f),  i_t = σ(W_i x_t + b_i),  h̃_t = W_h x_t + b_h
                                                      (one fused ``weight [3H, I]``: f, i, h̃)
    f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)
    h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

State: ``h [B, H]`` (zeros when not given); ``y_t = h_t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F


def coefficients(x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of ``h_t = a_t h_{t-1} + b_t`` for every step: ``a = f'``, ``b = i' h̃``."""
    f_pre, i_pre, cand = F.linear(x, params["weight"], params.get("bias")).chunk(3, dim=-1)
    f, i = torch.sigmoid(f_pre), torch.sigmoid(i_pre)
    return f / (f + i), i / (f + i) * cand


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor],
              state: tuple[torch.Tensor, ...] | None = None, **hparams: Any
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (h ``[B, H]``,))."""
    hid = params["weight"].shape[0] // 3
    batch = x.shape[0]
    h = x.new_zeros(batch, hid) if state is None else state[0]
    ys = []
    for t in range(x.shape[1]):
        f_pre, i_pre, cand = F.linear(x[:, t], params["weight"], params.get("bias")).chunk(3, dim=-1)
        f, i = torch.sigmoid(f_pre), torch.sigmoid(i_pre)
        total = f + i
        h = (f / total) * h + (i / total) * cand
        ys.append(h)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, hid)
    return y, (h,)
