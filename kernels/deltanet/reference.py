"""Plain-torch DeltaNet (Schlag et al. 2021; Yang et al. 2024, "Parallelizing Linear Transformers
with the Delta Rule over Sequence Length") and Gated DeltaNet (Yang et al. 2025, "Gated Delta
Networks"): the state is corrected towards v_t along k_t instead of only accumulating.

NH heads, DK key and DV value channels each (H = NH·DV)::

    q = l2norm(silu(W_q x)),  k = l2norm(silu(W_k x)),  v = silu(W_v x),  β = σ(W_β x + b_β)
    DeltaNet:        S_t = (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ
    Gated DeltaNet:  S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ,
                     log α = -exp(A_log) softplus(W_a x + b_a)       (Mamba-2's decay, per head)
    o_t = S_tᵀ q_t
    y_t = concat_heads(RMSNorm(o_t))  (⊙ silu(W_g x) when gated)

State: S ``[B, NH, DK, DV]``.  Step form used (``kernels/linattn.py``, "delta"):
S̄ = α S;  S_t = S̄ + β k (v - S̄ᵀ k)ᵀ, which expands to the lines above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnc.ir.chunkform import Projected
from rnnc.kernels.linattn import head_norm, l2norm, merge_heads, run, silu_gate, split_heads


def project(x: torch.Tensor, params: Mapping[str, torch.Tensor], *, num_heads: int, gated: bool = False,
            **_: Any) -> Projected:
    q, k, v = (F.silu(split_heads(F.linear(x, params[f"weight_{p}"]), num_heads)) for p in "qkv")
    beta = torch.sigmoid(F.linear(x, params["weight_b"], params["bias_b"]))[..., None]
    g = None
    if gated:
        g = (-torch.exp(params["A_log"]) * F.softplus(F.linear(x, params["weight_a"], params["bias_a"])))[..., None]
    return Projected(l2norm(q), l2norm(k), v, g, beta)


def readout(o: torch.Tensor, x: torch.Tensor, params: Mapping[str, torch.Tensor], *, gated: bool = False,
            **_: Any) -> torch.Tensor:
    y = merge_heads(head_norm(o))
    return y * silu_gate(x, params["weight_g"]) if gated else y


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor], state: tuple[torch.Tensor, ...] | None = None,
              **hparams: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (S ``[B, NH, DK, DV]``,))."""
    return run(x, params, state, hparams, "delta", project, readout)
