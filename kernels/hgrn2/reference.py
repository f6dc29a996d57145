"""Plain-torch HGRN2 (Qin et al. 2024, "HGRN2: Gated Linear RNNs with State Expansion", §3):
HGRN's lower-bounded forget gate, expanded from a vector to a matrix state by an outer product.

NH heads, DK (the expansion) and DV channels each (H = NH·DV)::

    f = lb + (1 - lb) σ(W_f x + b_f)      forget gate, lower bound lb ∈ [0, 1)  (per head [DK])
    q = silu(W_q x),  k = 1 - f,  v = W_i x                 (the input gate is tied to 1 - f)
    S_t = diag(f_t) S_{t-1} + k_t v_tᵀ
    o_t = S_tᵀ q_t,   y_t = concat_heads(RMSNorm(o_t))

The paper raises lb layer by layer (a learned, cumulatively increasing bound); here it is the
layer's hyperparameter ``lower_bound``.  State: S ``[B, NH, DK, DV]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnc.ir.chunkform import Projected
from rnnc.kernels.linattn import head_norm, merge_heads, run, split_heads


def project(x: torch.Tensor, params: Mapping[str, torch.Tensor], *, num_heads: int, lower_bound: float = 0.0,
            **_: Any) -> Projected:
    f_pre = split_heads(F.linear(x, params["weight_f"], params["bias_f"]), num_heads)
    if lower_bound == 0.0:  # log σ and 1 - σ = σ(-f) without cancellation
        g, k = F.logsigmoid(f_pre), torch.sigmoid(-f_pre)
    else:
        f = lower_bound + (1.0 - lower_bound) * torch.sigmoid(f_pre)
        g, k = torch.log(f), 1.0 - f
    q = F.silu(split_heads(F.linear(x, params["weight_q"]), num_heads))
    v = split_heads(F.linear(x, params["weight_i"]), num_heads)
    return Projected(q, k, v, g)


def readout(o: torch.Tensor, x: torch.Tensor, params: Mapping[str, torch.Tensor], **_: Any) -> torch.Tensor:
    return merge_heads(head_norm(o))


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor], state: tuple[torch.Tensor, ...] | None = None,
              **hparams: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (S ``[B, NH, DK, DV]``,))."""
    return run(x, params, state, hparams, "gla", project, readout)
