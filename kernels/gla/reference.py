"""Plain-torch GLA (Yang et al. 2024, "Gated Linear Attention Transformers with Hardware-Efficient
Training", §4): a matrix state per head with a data-dependent gate on every key channel.

NH heads, DK key and DV value channels each (H = NH·DV)::

    q = W_q x / √DK,  k = W_k x,  v = W_v x                  (per head: [DK], [DK], [DV])
    log α = logsigmoid(W_α2 W_α1 x + b_α) / τ               (low-rank gate, τ = 16; per head [DK])
    S_t = diag(α_t) S_{t-1} + k_t v_tᵀ                      ([DK, DV] per head)
    o_t = S_tᵀ q_t
    y_t = silu(W_r x) ⊙ concat_heads(RMSNorm(o_t))           (norm without affine weights)

State: S ``[B, NH, DK, DV]``, zeros when not given.  The step loop is ``kernels/linattn.py``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnc.ir.chunkform import Projected
from rnnc.kernels.linattn import head_norm, merge_heads, run, silu_gate, split_heads

TEMPERATURE = 16.0


def project(x: torch.Tensor, params: Mapping[str, torch.Tensor], *, num_heads: int, **_: Any) -> Projected:
    q, k, v = (split_heads(F.linear(x, params[f"weight_{p}"]), num_heads) for p in "qkv")
    gate = F.linear(F.linear(x, params["weight_a1"]), params["weight_a2"], params["bias_a"])
    g = split_heads(F.logsigmoid(gate), num_heads) / TEMPERATURE
    return Projected(q * q.shape[-1] ** -0.5, k, v, g)


def readout(o: torch.Tensor, x: torch.Tensor, params: Mapping[str, torch.Tensor], **_: Any) -> torch.Tensor:
    return silu_gate(x, params["weight_r"]) * merge_heads(head_norm(o))


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor], state: tuple[torch.Tensor, ...] | None = None,
              **hparams: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (S ``[B, NH, DK, DV]``,))."""
    return run(x, params, state, hparams, "gla", project, readout)
