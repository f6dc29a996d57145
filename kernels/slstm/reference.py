"""Plain-torch sLSTM loop (xLSTM, Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", §2.2).

Gates i, f, z, o (in that order, each H wide) come from the input and from a *block-diagonal*
recurrent matrix: H = NH heads of DH, head k only sees its own slice of h::

    pre_g = W_g x_t + b_g + R_g h_{t-1}           R_g = blockdiag(R[g, 0], …, R[g, NH-1])
    (per head: pre_g[k] += h_{t-1}[k] @ R[g, k], with R [4, NH, DH, DH] in (in, out) layout)
    log f = logsigmoid(f̃)   (forget_gate="sigmoid")   or   f̃   (forget_gate="exp")
    m_t  = max(log f + m_{t-1}, ĩ)                    stabiliser: keeps exp() from overflowing
    i'   = exp(ĩ - m_t),   f' = exp(log f + m_{t-1} - m_t)
    c_t  = f' c_{t-1} + i' tanh(z̃)
    n_t  = f' n_{t-1} + i'
    h_t  = σ(õ) ⊙ c_t / n_t

The stabiliser rescales c and n by the same factor exp(-m_t), so h is exactly the paper's
unstabilised ``σ(o) c / n`` with ``i = exp(ĩ)``.  States h, c, n, m are all ``[B, H]``
(zeros when not given); ``y_t = h_t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnc.errors import UnsupportedError


def log_forget(f_pre: torch.Tensor, forget_gate: str) -> torch.Tensor:
    """log of the forget gate: ``logsigmoid`` for a sigmoid gate, identity for an exp gate."""
    if forget_gate == "sigmoid":
        return F.logsigmoid(f_pre)
    if forget_gate == "exp":
        return f_pre
    raise UnsupportedError(f"sLSTM forget_gate {forget_gate!r} is not supported; use 'sigmoid' or 'exp'")


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor],
              state: tuple[torch.Tensor, ...] | None = None, *, num_heads: int = 1,
              forget_gate: str = "sigmoid", **hparams: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (h, c, n, m) each ``[B, H]``)."""
    w_ih, r, bias = params["weight_ih"], params["weight_hh"], params.get("bias")
    hid = w_ih.shape[0] // 4
    nh, dh = r.shape[1], r.shape[2]
    if nh != num_heads:
        raise UnsupportedError(f"sLSTM weight_hh has {nh} heads but num_heads={num_heads}")
    batch = x.shape[0]
    if state is None:
        h, c, n, m = (x.new_zeros(batch, hid) for _ in range(4))
    else:
        h, c, n, m = state
    ys = []
    for t in range(x.shape[1]):
        rec = torch.einsum("bkd,gkde->bgke", h.view(batch, nh, dh), r).reshape(batch, 4 * hid)
        i_pre, f_pre, z_pre, o_pre = (F.linear(x[:, t], w_ih, bias) + rec).chunk(4, dim=-1)
        log_f = log_forget(f_pre, forget_gate)
        m_new = torch.maximum(log_f + m, i_pre)
        i_g = torch.exp(i_pre - m_new)
        f_g = torch.exp(log_f + m - m_new)
        c = f_g * c + i_g * torch.tanh(z_pre)
        n = f_g * n + i_g
        m = m_new
        h = torch.sigmoid(o_pre) * c / n
        ys.append(h)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, hid)
    return y, (h, c, n, m)
