"""The mLSTM's parallel (quadratic, attention-like) form: a check of the loop's order of evaluation
(it reuses the reference's ``project`` gate math; the outside check of that math is
``tests/kernels/test_paper_oracles.py``).

Unrolling the stabilised recurrence with F_t = Σ_{τ≤t} log f_τ gives, for every step t and
every earlier step s (plus the initial state as a pseudo-step 0 with log-weight F_t + m_0)::

    L_ts = F_t - F_s + ĩ_s   (s ≥ 1),   L_t0 = F_t + m_0
    m_t  = max_s L_ts                            (equals the loop's stabiliser exactly)
    C_t  = Σ_s exp(L_ts - m_t) v_s k_sᵀ + exp(L_t0 - m_t) C_0,   n_t likewise with k_s, n_0
    h_t  = o_t ⊙ C_t q_t / max(|n_tᵀ q_t|, exp(-m_t))

computed for all t at once with a causal [T, T] weight matrix, as in the xLSTM paper's parallel
formulation (here extended with the initial state).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from rnnc.kernels.mlstm.reference import project


def parallel(x: torch.Tensor, params: Mapping[str, torch.Tensor],
             state: tuple[torch.Tensor, ...] | None = None, *, num_heads: int = 1,
             forget_gate: str = "sigmoid") -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Same contract as ``reference``; O(T²) memory, no time loop."""
    batch, steps = x.shape[0], x.shape[1]
    hid = params["weight_q"].shape[0]
    nh, dh = num_heads, hid // num_heads
    if state is None:
        c0, n0, m0 = x.new_zeros(batch, nh, dh, dh), x.new_zeros(batch, nh, dh), x.new_zeros(batch, nh)
    else:
        c0, n0, m0 = state
    q, k, v, i_pre, log_f, o = project(x, params, nh, forget_gate)
    if steps == 0:
        return x.new_zeros(batch, 0, hid), (c0, n0, m0)
    cum = log_f.cumsum(dim=1)  # F_t, [B, T, NH]
    logw = cum[:, :, None, :] - cum[:, None, :, :] + i_pre[:, None, :, :]  # [B, t, s, NH]
    causal = torch.ones(steps, steps, dtype=torch.bool, device=x.device).tril()
    logw = logw.masked_fill(~causal[None, :, :, None], float("-inf"))
    log0 = cum + m0[:, None, :]  # [B, T, NH]
    m = torch.maximum(logw.amax(dim=2), log0)  # [B, T, NH]
    w = torch.exp(logw - m[:, :, None, :])  # [B, t, s, NH]
    w0 = torch.exp(log0 - m)  # [B, T, NH]
    scores = torch.einsum("bthd,bshd->btsh", q, k)  # q_t · k_s
    num = torch.einsum("btsh,bshd->bthd", w * scores, v) + w0[..., None] * torch.einsum("bhij,bthj->bthi", c0, q)
    nq = (w * scores).sum(dim=2) + w0 * torch.einsum("bhd,bthd->bth", n0, q)
    den = torch.maximum(nq.abs(), torch.exp(-m))
    y = o * (num / den[..., None]).reshape(batch, steps, hid)
    wl, w0l = w[:, -1], w0[:, -1]  # weights of the last step: the final state
    c_fin = torch.einsum("bsh,bshi,bshj->bhij", wl, v, k) + w0l[..., None, None] * c0
    n_fin = torch.einsum("bsh,bshd->bhd", wl, k) + w0l[..., None] * n0
    return y, (c_fin, n_fin, m[:, -1])
