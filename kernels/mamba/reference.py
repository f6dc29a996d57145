"""Plain-torch loop of Mamba's S6 selective scan (Gu & Dao 2023, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces", Algorithm 2), the core SSM without conv or gating.

Input ``x [B, T, D]`` (D channels, the layer's input and output width), N states per channel.
Δ, B and C depend on the input ("selective"); Δ goes through a rank-R bottleneck as in Mamba
(``weight_x`` is Mamba's ``x_proj``, ``weight_dt``/``bias_dt`` its ``dt_proj``)::

    δ_t, B_t, C_t = split(W_x x_t)                   sizes R, N, N
    Δ_t = softplus(W_dt δ_t + b_dt)                   [D]
    A   = -exp(A_log)                                 [D, N], negative: a decaying state
    h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t B_t) x_t        [D, N]  (zero-order hold for A, Euler for B)
    y_t = h_t C_t + D ⊙ x_t                           [D]

State: ``h [B, D, N]`` (zeros when not given).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F


def coefficients(x: torch.Tensor, params: Mapping[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For all steps: decay ``exp(ΔA) [B, T, D, N]``, input ``Δ B x [B, T, D, N]``, ``C [B, T, N]``."""
    n = params["A_log"].shape[1]
    rank = params["weight_dt"].shape[1]
    dt_low, b_t, c_t = F.linear(x, params["weight_x"]).split((rank, n, n), dim=-1)
    delta = F.softplus(F.linear(dt_low, params["weight_dt"], params.get("bias_dt")))
    a = -torch.exp(params["A_log"])
    decay = torch.exp(delta[..., None] * a)
    drive = (delta * x)[..., None] * b_t[..., None, :]
    return decay, drive, c_t


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor],
              state: tuple[torch.Tensor, ...] | None = None, **hparams: Any
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, D]`` -> (y ``[B, T, D]``, (h ``[B, D, N]``,))."""
    d, n = params["A_log"].shape
    rank = params["weight_dt"].shape[1]
    a = -torch.exp(params["A_log"])
    h = x.new_zeros(x.shape[0], d, n) if state is None else state[0]
    ys = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        dt_low, b_t, c_t = F.linear(xt, params["weight_x"]).split((rank, n, n), dim=-1)
        delta = F.softplus(F.linear(dt_low, params["weight_dt"], params.get("bias_dt")))
        h = torch.exp(delta[:, :, None] * a) * h + (delta * xt)[:, :, None] * b_t[:, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, c_t) + params["D"] * xt)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(x.shape)
    return y, (h,)
