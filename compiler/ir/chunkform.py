"""The chunk form of a matrix-state cell: what a cell's ``chunk`` attribute means, in torch.

A cell of the gated linear-attention family (``kernels/linattn.py``: GLA, RetNet, HGRN2,
DeltaNet, Mamba-2) keeps one matrix state per head, ``S [NH, DK, DV]``, and names in its
``chunk`` attribute which step values are its operands (:func:`chunk_attr`).  Two updates cover
the family (per head; ``g`` a log decay, per key channel ``[DK]`` or one per head ``[1]``)::

    "gla"   (GLA, RetNet, HGRN2, Mamba-2):  S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ
    "delta" (DeltaNet, Gated DeltaNet):     S̄ = exp(g_t) S_{t-1};  S_t = S̄ + β_t k_t (v_t - S̄ᵀ k_t)ᵀ
    readout (both):                         o_t = S_tᵀ q_t                                 ([DV])

A third form is xLSTM's mLSTM, which adds a normaliser n, a max-stabiliser m and an input gate
i (log domain, one per head like its log forget gate g); its matrix state is kept in xLSTM's
layout ``C = Σ v kᵀ`` ``[NH, DV, DK]``::

    "mlstm":  m_t = max(g_t + m_{t-1}, i_t);  f' = e^{g_t + m_{t-1} - m_t};  i' = e^{i_t - m_t}
              C_t = f' C_{t-1} + i' v_t k_tᵀ;   n_t = f' n_{t-1} + i' k_t
              o_t = C_t q_t / max(|n_tᵀ q_t|, e^{-m_t})

It has no chunk form of its own: unrolled, the loop's stabiliser is a prefix maximum, m_t =
G_t + max(m_0, max_{s≤t} (i_s - G_s)) with G_t = Σ_{j≤t} g_j (``kernels/mlstm/scan.py`` checks
this against the loop), so all T stabilisers come first, in float64, without a loop.  Given them
the update is the "gla" form with one decay per head g'_t = g_t + m_{t-1} - m_t (≤ 0: a decay),
keys k'_t = e^{i_t - m_t} k_t (scale ≤ 1) and the normaliser as one more value column (v' = [v,
1], S = [Cᵀ | n]); the readout divides the two parts of o' = Sᵀq (:func:`mlstm_as_gla`,
:func:`mlstm_readout`).  Every chunk kernel of the "gla" form therefore runs mLSTM too, and no
exponent it takes is positive.

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

FORMS = ("gla", "delta", "mlstm")
#: the states a form keeps, in the chunk attribute's keys: the matrix, then mLSTM's n and m
STATE_KEYS = {"gla": ("state",), "delta": ("state",), "mlstm": ("state", "norm", "stab")}


@dataclass(frozen=True)
class Projected:
    """A sequence's per-step operands, ``[B, T, NH, ...]``: q, k ``[..., DK]``, v ``[..., DV]``,
    log decay g ``[..., DK]`` or ``[..., 1]`` (None: no decay), β ``[..., 1]`` (delta rule) and
    the log input gate i ``[..., 1]`` (mLSTM)."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    g: torch.Tensor | None = None
    beta: torch.Tensor | None = None
    i: torch.Tensor | None = None


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


def step_mlstm(states: tuple[torch.Tensor, ...], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               g: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One step of the "mlstm" form (module docstring) on ``[B, NH, ...]`` operands, g and i
    ``[B, NH, 1]``; states (C ``[B, NH, DV, DK]``, n ``[B, NH, DK]``, m ``[B, NH]``) -> (o_t, states)."""
    c, n, m = states
    g1, i1 = g[..., 0], i[..., 0]
    m_new = torch.maximum(g1 + m, i1)
    fg, ig = torch.exp(g1 + m - m_new)[..., None], torch.exp(i1 - m_new)[..., None]
    c = fg[..., None] * c + ig[..., None] * v[..., :, None] * k[..., None, :]
    n = fg * n + ig * k
    den = torch.maximum((n * q).sum(-1).abs(), torch.exp(-m_new))
    return (c * q[..., None, :]).sum(-1) / den[..., None], (c, n, m_new)


def mlstm_as_gla(p: Projected, states: tuple[torch.Tensor, ...]) -> tuple[Projected, torch.Tensor, torch.Tensor]:
    """The "mlstm" form as the "gla" form (module docstring): (operands with g' ``[B, T, NH, 1]``,
    k' and v' = [v, 1], the state S = [Cᵀ | n] ``[B, NH, DK, DV + 1]``, the stabilisers m_t
    ``[B, T, NH]``).  A step with i = -inf and g = 0 (a padded step) leaves every state as it was."""
    c0, n0, m0 = states
    g, i = p.g[..., 0].double(), p.i[..., 0].double()
    cum = g.cumsum(1)
    m = cum + torch.maximum(m0.double()[:, None], torch.cummax(i - cum, dim=1).values)
    m_prev = torch.cat([m0.double()[:, None], m[:, :-1]], 1)
    decay = (g + m_prev - m).clamp(max=0.0)  # ≤ 0 exactly; rounding must not make it a growth
    k = p.k * torch.exp(i - m).to(p.k.dtype)[..., None]
    v = torch.cat([p.v, torch.ones_like(p.v[..., :1])], -1)
    s = torch.cat([c0.transpose(-1, -2), n0[..., None]], -1).to(p.v.dtype)
    return Projected(p.q, k, v, decay.to(p.q.dtype)[..., None]), s, m.to(p.q.dtype)


def mlstm_readout(o: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """o_t from the "gla" readout o' = Sᵀq ``[..., DV + 1]`` and the stabilisers ``[...]``."""
    return o[..., :-1] / torch.maximum(o[..., -1].abs(), torch.exp(-m))[..., None]


def mlstm_states(s: torch.Tensor, m_last: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(C, n, m) from the "gla" state [Cᵀ | n] and the last stabiliser."""
    return s[..., :-1].transpose(-1, -2), s[..., -1], m_last


def run_form(form: str, p: Projected, states: tuple[torch.Tensor, ...], chunk_size: int | None = None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Any form over a sequence: o ``[B, T, NH, DV]`` and the states after the last step, step by
    step (``chunk_size=None``) or chunkwise."""
    if form != "mlstm":
        o, s = loop(form, p, states[0]) if chunk_size is None else chunkwise(form, p, states[0], chunk_size)
        return o, (s,)
    if chunk_size is None:
        outs = []
        for t in range(p.q.shape[1]):
            o, states = step_mlstm(states, p.q[:, t], p.k[:, t], p.v[:, t], p.g[:, t], p.i[:, t])
            outs.append(o)
        return (torch.stack(outs, 1) if outs else p.v.new_zeros(*p.v.shape)), states
    gp, s, m = mlstm_as_gla(p, states)
    o, s = chunkwise("gla", gp, s, chunk_size)
    if not m.shape[1]:
        return p.v.new_zeros(*p.v.shape), states
    return mlstm_readout(o, m), mlstm_states(s, m[:, -1])


def chunk_attr(form: str, state: str, q: Any, k: Any, v: Any, o: Any, g: Any | None = None,
               beta: Any | None = None, i: Any | None = None, norm: str | None = None,
               stab: str | None = None) -> tuple[str, str]:
    """The ``("chunk", ...)`` cell attribute: which step values are the family's operands (and,
    for "mlstm", which states are n and m), as ``"<form> state=S q=%a k=%b ..."`` (a string, so
    the printed IR round-trips)."""
    if form not in FORMS:
        raise ValueError(f"chunk form {form!r} is not one of {FORMS}")
    names = {"q": q, "k": k, "v": v, "o": o, "g": g, "beta": beta, "i": i}
    states = {"state": state, "norm": norm, "stab": stab}
    return "chunk", " ".join([form] + [f"{n}={v}" for n, v in states.items() if v is not None]
                             + [f"{n}={v.name}" for n, v in names.items() if v is not None])


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
    if form not in ("gla", "delta"):
        raise UnsupportedError(f"chunkwise() runs the one-state forms; the {form!r} form goes through run_form()")
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
