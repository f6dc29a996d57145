"""Plain-torch Mamba-2 SSD layer (Dao & Gu 2024, "Transformers are SSMs", §7-8): a selective
state space model whose A is a scalar per head, i.e. a linear attention with a data-dependent
scalar decay.

NH heads of P = H/NH channels, N state channels shared by all heads (one group)::

    x_h = W_x x,  z = W_z x,  B = W_B x,  C = W_C x            ([H], [H], [N], [N])
    Δ = softplus(W_Δ x + b_Δ),  A = -exp(A_log)                (per head)
    S_t = exp(Δ_t A) S_{t-1} + B_t (Δ_t x_h,t)ᵀ                ([N, P] per head)
    y_t = concat_heads(RMSNorm((S_tᵀ C_t + D ⊙ x_h,t) ⊙ silu(z_h,t)))

so q = C, k = B, v = Δ x_h, log decay = Δ A in ``kernels/linattn.py``'s terms.  The depthwise
causal conv and the in/out projections of the full block belong to the surrounding model.
State: S ``[B, NH, N, P]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnc.ir.chunkform import Projected
from rnnc.kernels.linattn import head_norm, merge_heads, run, split_heads


def project(x: torch.Tensor, params: Mapping[str, torch.Tensor], *, num_heads: int, **_: Any) -> Projected:
    xh = split_heads(F.linear(x, params["weight_x"]), num_heads)
    b_t, c_t = (F.linear(x, params[f"weight_{p}"])[..., None, :].expand(*xh.shape[:-1], -1) for p in "BC")
    dt = F.softplus(F.linear(x, params["weight_dt"], params["bias_dt"]))[..., None]  # [B, T, NH, 1]
    return Projected(c_t, b_t, dt * xh, dt * -torch.exp(params["A_log"])[:, None])


def readout(o: torch.Tensor, x: torch.Tensor, params: Mapping[str, torch.Tensor], *, num_heads: int,
            **_: Any) -> torch.Tensor:
    xh, z = (split_heads(F.linear(x, params[f"weight_{p}"]), num_heads) for p in "xz")
    return merge_heads(head_norm((o + params["D"][:, None] * xh) * F.silu(z)))


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor], state: tuple[torch.Tensor, ...] | None = None,
              **hparams: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (S ``[B, NH, N, P]``,))."""
    return run(x, params, state, hparams, "gla", project, readout)
