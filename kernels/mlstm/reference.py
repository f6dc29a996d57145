"""Plain-torch mLSTM loop (xLSTM, Beck et al. 2024, §2.3): matrix memory, covariance update.

H = NH heads of DH.  Everything but the memory comes from the input alone (so the state update
is linear in the state and the cell can run as a parallel scan)::

    q = W_q x,  k = W_k x / √DH,  v = W_v x                  (per head: [DH])
    ĩ = W_i x + b_i,  f̃ = W_f x + b_f                       (per head: scalars)
    o = σ(W_o x + b_o)                                       ([H])
    log f = logsigmoid(f̃)   (forget_gate="sigmoid")   or   f̃   (forget_gate="exp")
    m_t = max(log f + m_{t-1}, ĩ)                            stabiliser
    i' = exp(ĩ - m_t),  f' = exp(log f + m_{t-1} - m_t)
    C_t = f' C_{t-1} + i' v kᵀ                               ([DH, DH] per head)
    n_t = f' n_{t-1} + i' k                                  ([DH] per head)
    h_t = o ⊙ concat_heads( C_t q / max(|n_tᵀ q|, exp(-m_t)) )

Since C, n carry the factor exp(-m_t), the last line equals the paper's unstabilised
``C̄ q / max(|n̄ᵀ q|, 1)``.  States (per sample): C ``[NH, DH, DH]``, n ``[NH, DH]``, m ``[NH]``,
zeros when not given; ``y_t = h_t`` (``[H]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnc.errors import UnsupportedError


def log_forget(f_pre: torch.Tensor, forget_gate: str) -> torch.Tensor:
    """log of the forget gate (sigmoid or exp gate)."""
    if forget_gate == "sigmoid":
        return F.logsigmoid(f_pre)
    if forget_gate == "exp":
        return f_pre
    raise UnsupportedError(f"mLSTM forget_gate {forget_gate!r} is not supported; use 'sigmoid' or 'exp'")


def project(x: torch.Tensor, params: Mapping[str, torch.Tensor], num_heads: int, forget_gate: str
            ) -> tuple[torch.Tensor, ...]:
    """The input-only projections for any leading dims: q, k, v ``[..., NH, DH]`` (k scaled),
    ĩ and log f ``[..., NH]``, o ``[..., H]``; shared by the loop and the parallel form."""
    hid = params["weight_q"].shape[0]
    dh = hid // num_heads
    lead = x.shape[:-1]
    q = F.linear(x, params["weight_q"]).reshape(*lead, num_heads, dh)
    k = F.linear(x, params["weight_k"]).reshape(*lead, num_heads, dh) / math.sqrt(dh)
    v = F.linear(x, params["weight_v"]).reshape(*lead, num_heads, dh)
    i_pre = F.linear(x, params["weight_i"], params.get("bias_i"))
    log_f = log_forget(F.linear(x, params["weight_f"], params.get("bias_f")), forget_gate)
    o = torch.sigmoid(F.linear(x, params["weight_o"], params.get("bias_o")))
    return q, k, v, i_pre, log_f, o


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor],
              state: tuple[torch.Tensor, ...] | None = None, *, num_heads: int = 1,
              forget_gate: str = "sigmoid", **hparams: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (C ``[B, NH, DH, DH]``, n ``[B, NH, DH]``, m ``[B, NH]``))."""
    hid = params["weight_q"].shape[0]
    nh, dh = num_heads, hid // num_heads
    batch = x.shape[0]
    if state is None:
        cmat, n, m = x.new_zeros(batch, nh, dh, dh), x.new_zeros(batch, nh, dh), x.new_zeros(batch, nh)
    else:
        cmat, n, m = state
    q, k, v, i_pre, log_f, o = project(x, params, nh, forget_gate)
    ys = []
    for t in range(x.shape[1]):
        m_new = torch.maximum(log_f[:, t] + m, i_pre[:, t])
        i_g = torch.exp(i_pre[:, t] - m_new)
        f_g = torch.exp(log_f[:, t] + m - m_new)
        kt, vt, qt = k[:, t], v[:, t], q[:, t]
        cmat = f_g[..., None, None] * cmat + i_g[..., None, None] * vt[..., :, None] * kt[..., None, :]
        n = f_g[..., None] * n + i_g[..., None] * kt
        m = m_new
        num = torch.einsum("bhij,bhj->bhi", cmat, qt)
        den = torch.maximum((n * qt).sum(-1).abs(), torch.exp(-m))
        ys.append(o[:, t] * (num / den[..., None]).reshape(batch, hid))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, hid)
    return y, (cmat, n, m)
