"""The chunk form of a matrix-state cell: what a cell's ``chunk`` attribute means, in torch.

A cell of the gated linear-attention family (``kernels/linattn.py``: GLA, RetNet, HGRN2,
DeltaNet, Mamba-2) keeps one matrix state per head, ``S [NH, DK, DV]``, and names in its
``chunk`` attribute which step values are its operands (:func:`chunk_attr`).  Two updates cover
the family (per head; ``g`` a log decay, per key channel ``[DK]`` or one per head ``[1]``)::

    "gla"   (GLA, RetNet, HGRN2, Mamba-2):  S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ
    "delta" (DeltaNet, Gated DeltaNet):     S̄ = exp(g_t) S_{t-1};  S_t = S̄ + β_t k_t (v_t - S̄ᵀ k_t)ᵀ
    readout (both):                         o_t = S_tᵀ q_t                                 ([DV])

This module is that meaning, written once, in the IR layer (like the interpreter): :func:`step`
(one step; the chunk pass checks a cell's graph against it), :func:`loop` (the recurrent form)
and :func:`chunkwise` (the chunkwise-parallel form every chunk kernel is tested against).

Why chunks: stepping the update is T dependent rank-one updates; cutting the sequence into
chunks of C steps turns each chunk into a few dense matrix products (intra-chunk attention-like
``[C, C]`` matrices, inter-chunk state passing), so only T/C steps stay sequential -- the form
of GLA, RetNet's chunkwise retention, Mamba-2's SSD and fla's kernels.

Within a chunk (positions t, s = 1..L, state S0 at its start, b_t = Σ_{j≤t} g_j the cumulative
log decay; for decays (g ≤ 0) every exponent used, ``b_t - b_s`` with s ≤ t or ``b_t`` itself,
is ≤ 0, so nothing overflows however strong the decay)::

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

from dataclasses import dataclass
from typing import Any

import torch

from rnnc.errors import UnsupportedError

FORMS = ("gla", "delta")


@dataclass(frozen=True)
class Projected:
    """A sequence's per-step operands, ``[B, T, NH, ...]``: q, k ``[..., DK]``, v ``[..., DV]``,
    log decay g ``[..., DK]`` or ``[..., 1]`` (None: no decay) and β ``[..., 1]`` (delta rule)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    g: torch.Tensor | None = None
    beta: torch.Tensor | None = None


def step(form: str, s: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
         g: torch.Tensor | None, beta: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the family (module docstring) on ``[B, NH, ...]`` operands -> (o_t, S_t)."""
    if g is not None:
        s = torch.exp(g)[..., None] * s
    if form == "gla":
        s = s + k[..., :, None] * v[..., None, :]
    else:
        u = beta * (v - (k[..., :, None] * s).sum(-2))
        s = s + k[..., :, None] * u[..., None, :]
    return (s * q[..., :, None]).sum(-2), s


def loop(form: str, p: Projected, s0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrent form, one step at a time: o ``[B, T, NH, DV]`` and the last state."""
    outs, s = [], s0
    for t in range(p.q.shape[1]):
        o, s = step(form, s, p.q[:, t], p.k[:, t], p.v[:, t],
                    None if p.g is None else p.g[:, t], None if p.beta is None else p.beta[:, t])
        outs.append(o)
    o = torch.stack(outs, 1) if outs else p.v.new_zeros(p.v.shape[0], 0, *s0.shape[1:2], s0.shape[-1])
    return o, s


def chunk_attr(form: str, state: str, q: Any, k: Any, v: Any, o: Any, g: Any | None = None,
               beta: Any | None = None) -> tuple[str, str]:
    """The ``("chunk", ...)`` cell attribute: which step values are the family's operands, as
    ``"<form> state=S q=%a k=%b ..."`` (a string, so the printed IR round-trips)."""
    if form not in FORMS:
        raise ValueError(f"chunk form {form!r} is not one of {FORMS}")
    names = {"q": q, "k": k, "v": v, "o": o, "g": g, "beta": beta}
    return "chunk", " ".join([form, f"state={state}"] + [f"{n}={v.name}" for n, v in names.items() if v is not None])


def parse_chunk_attr(text: str) -> tuple[str, dict[str, str]]:
    """Inverse of :func:`chunk_attr`: (form, {"state": ..., "q": value name, ...})."""
    form, *pairs = text.split()
    return form, dict(p.split("=", 1) for p in pairs)


DEFAULT_CHUNK = 64


def chunkwise(form: str, p: Projected, s0: torch.Tensor, chunk_size: int = DEFAULT_CHUNK
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as :func:`loop`: o ``[B, T, NH, DV]`` and the state after the last step."""
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
    wide = torch.promote_types(rhs.dtype, torch.float32)  # torch has no fp16/bf16 triangular solve on CPUs
    u = torch.linalg.solve_triangular(lower.to(wide), rhs.to(wide), upper=False, unitriangular=True).to(rhs.dtype)
    o = eb * (q @ s0) + ((q @ k.transpose(-1, -2)) * gamma) @ u
    s = torch.exp(b[..., -1])[..., None, None] * s0 + (k * torch.exp(b[..., -1:] - b)[..., None]).transpose(-1, -2) @ u
    return o, s
