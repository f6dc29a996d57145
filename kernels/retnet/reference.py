"""Plain-torch RetNet retention (Sun et al. 2023, "Retentive Network", §2): a matrix state per
head decayed by a fixed per-head factor γ_h (multi-scale retention).

NH heads, DK key and DV value channels each (H = NH·DV, DK = DV/2 by default as in the paper)::

    q = W_q x / √DK,  k = W_k x,  v = W_v x
    S_t = γ_h S_{t-1} + k_t v_tᵀ,     γ_h = 1 - 2^(-5-h)   (log γ_h = ``log_decay[h]``)
    o_t = S_tᵀ q_t
    y_t = silu(W_g x) ⊙ concat_heads(GroupNorm(o_t))        (one group per head, no affine)

The decays start at the paper's values and are parameters (freeze them with
``layer.log_decay.requires_grad_(False)`` for the paper's fixed γ).  The xPos rotation of q and
k is left to the surrounding model, as in fla's retention kernels.  State: S ``[B, NH, DK, DV]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnc.ir.chunkform import Projected
from rnnc.kernels.linattn import head_norm, merge_heads, run, silu_gate, split_heads


def paper_log_decay(num_heads: int) -> torch.Tensor:
    """log γ_h = log(1 - 2^(-5-h)), h = 0..NH-1."""
    return torch.log1p(-torch.exp2(-5.0 - torch.arange(num_heads, dtype=torch.float64))).float()


def project(x: torch.Tensor, params: Mapping[str, torch.Tensor], *, num_heads: int, **_: Any) -> Projected:
    q, k, v = (split_heads(F.linear(x, params[f"weight_{p}"]), num_heads) for p in "qkv")
    g = params["log_decay"][:, None].expand(*q.shape[:-1], 1)
    return Projected(q * q.shape[-1] ** -0.5, k, v, g)


def readout(o: torch.Tensor, x: torch.Tensor, params: Mapping[str, torch.Tensor], **_: Any) -> torch.Tensor:
    return silu_gate(x, params["weight_g"]) * merge_heads(head_norm(o, centered=True))


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor], state: tuple[torch.Tensor, ...] | None = None,
              **hparams: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (S ``[B, NH, DK, DV]``,))."""
    return run(x, params, state, hparams, "gla", project, readout)
