"""Chunkwise-parallel evaluation of the gated linear-attention family (``kernels/linattn.py``).

Why: stepping ``S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ`` one step at a time is T dependent
rank-1 updates; cutting the sequence into chunks of C steps turns each chunk into a few dense
matrix products (intra-chunk attention-like ``[C, C]`` matrices, inter-chunk state passing), so
only T/C steps stay sequential -- the form of GLA, RetNet's chunkwise retention, Mamba-2's SSD
and fla's kernels.  Everything here is plain torch: the reference the rnnc kernels of this form
are checked against, and what ``rnnc.kernels.<cell>.chunk`` exposes.

Within a chunk (positions t, s = 1..L, state S0 at its start, b_t = Σ_{j≤t} g_j the cumulative
log decay; every exponent used is ``b_t - b_s`` with s ≤ t or ``b_t`` itself, i.e. ≤ 0, so
nothing overflows however strong the decay)::

    gla:    o_t = (q_t ⊙ e^{b_t})ᵀ S0 + Σ_{s≤t} [Σ_d q_td k_sd e^{b_td - b_sd}] v_s
            S_L = diag(e^{b_L}) S0 + Σ_s (k_s ⊙ e^{b_L - b_s}) v_sᵀ
    delta:  u = (I + tril(diag β (K Kᵀ ⊙ Γ), -1))⁻¹ diag β (V - diag(e^b) K S0),  Γ_ts = e^{b_t - b_s}
            O = diag(e^b) Q S0 + tril(Q Kᵀ ⊙ Γ) u,   S_L = e^{b_L} S0 + (K ⊙ e^{b_L - b})ᵀ u

The delta rule's chunk form is the WY/UT representation (Yang et al. 2024, "Parallelizing
Linear Transformers with the Delta Rule over Sequence Length"): the products of the L
Householder-like factors (I - β k kᵀ) collapse into one unit-lower-triangular solve per chunk.
Derivation: with u_t = β_t (v_t - S̄_tᵀ k_t) the update is S_t = e^{g_t} S_{t-1} + k_t u_tᵀ, so
S_t = e^{b_t} S0 + Σ_{s≤t} e^{b_t-b_s} k_s u_sᵀ, and substituting S_{t-1} into u_t gives the
triangular system above.
"""

from __future__ import annotations

import torch

from rnnc.errors import UnsupportedError
from rnnc.kernels.linattn import Projected

DEFAULT_CHUNK = 64


def chunkwise(form: str, p: Projected, s0: torch.Tensor, chunk_size: int = DEFAULT_CHUNK
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``linattn.loop``: o ``[B, T, NH, DV]`` and the state after the last step."""
    if chunk_size < 1:
        raise UnsupportedError(f"chunk_size must be >= 1, got {chunk_size}")
    if form == "delta" and p.g is not None and p.g.shape[-1] != 1:
        raise UnsupportedError("the delta rule's chunk form takes one decay per head, not per key channel")
    # time-major within each head: [B, NH, T, D]
    q, k, v = (t.transpose(1, 2) for t in (p.q, p.k, p.v))
    g = None if p.g is None else p.g.transpose(1, 2)
    beta = None if p.beta is None else p.beta.transpose(1, 2)
    steps = q.shape[2]
    outs, s = [], s0
    for c0 in range(0, steps, chunk_size):
        sl = slice(c0, min(c0 + chunk_size, steps))
        gc = None if g is None else g[:, :, sl]
        if form == "gla":
            o, s = _gla_chunk(q[:, :, sl], k[:, :, sl], v[:, :, sl], gc, s)
        else:
            o, s = _delta_chunk(q[:, :, sl], k[:, :, sl], v[:, :, sl], beta[:, :, sl], gc, s)
        outs.append(o)
    o = torch.cat(outs, 2) if outs else v.new_zeros(*v.shape[:2], 0, v.shape[-1])
    return o.transpose(1, 2), s


def _cum_decay(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """b_t = Σ_{j≤t} g_j within the chunk (zeros without a decay): ``[B, NH, L, DK or 1]``."""
    return torch.zeros_like(like[..., :1]) if g is None else g.cumsum(2)


def _causal(length: int, device: torch.device, strict: bool = False) -> torch.Tensor:
    return torch.ones(length, length, dtype=torch.bool, device=device).tril(-1 if strict else 0)


def _gla_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor | None,
               s0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b = _cum_decay(g, q)
    length = q.shape[2]
    mask = _causal(length, q.device)
    diff = b[:, :, :, None, :] - b[:, :, None, :, :]  # [B, NH, t, s, DK or 1]
    decay = torch.exp(diff.masked_fill(~mask[:, :, None], float("-inf")))
    if b.shape[-1] == 1:  # one decay per head: an ordinary masked matmul
        scores = (q @ k.transpose(-1, -2)) * decay[..., 0]
    else:  # per key channel: the decay sits inside the dot product
        scores = torch.einsum("bhtd,bhsd,bhtsd->bhts", q, k, decay)
    o = scores @ v + (q * torch.exp(b)) @ s0
    last = b[:, :, -1:]  # b_L, [B, NH, 1, DK or 1]
    s = torch.exp(last[:, :, 0, :, None]) * s0 + (k * torch.exp(last - b)).transpose(-1, -2) @ v
    return o, s


def _delta_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                 g: torch.Tensor | None, s0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b = _cum_decay(g, q)[..., 0]  # [B, NH, L]
    length = q.shape[2]
    gamma = torch.exp((b[..., :, None] - b[..., None, :]).masked_fill(~_causal(length, q.device), float("-inf")))
    eye = torch.eye(length, dtype=q.dtype, device=q.device)
    lower = eye + ((beta * (k @ k.transpose(-1, -2))) * gamma).masked_fill(~_causal(length, q.device, True), 0.0)
    eb = torch.exp(b)[..., None]
    rhs = beta * (v - eb * (k @ s0))
    u = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
    o = eb * (q @ s0) + ((q @ k.transpose(-1, -2)) * gamma) @ u
    s = torch.exp(b[..., -1])[..., None, None] * s0 + (k * torch.exp(b[..., -1:] - b)[..., None]).transpose(-1, -2) @ u
    return o, s
