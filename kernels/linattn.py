"""The gated linear-attention family, written once: GLA, RetNet, HGRN2, DeltaNet and Mamba-2.

Each of these cells keeps one matrix state per head, ``S [NH, DK, DV]``, and differs only in how
it projects the input into queries, keys, values and gates (``project``) and how it turns the
per-head readout into the layer's output (``readout``).  Two state updates cover all of them
(per head; ``g`` is a log decay, per key channel ``[DK]`` or one per head ``[1]``)::

    "gla"   (GLA, RetNet, HGRN2, Mamba-2):  S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ
    "delta" (DeltaNet, Gated DeltaNet):     S̄ = exp(g_t) S_{t-1};  S_t = S̄ + β_t k_t (v_t - S̄ᵀ k_t)ᵀ
    readout (both):                         o_t = S_tᵀ q_t                                 ([DV])

Why one module: :func:`run` is the reference every cell's ``reference.py`` runs (the step loop
of ``rnnc.ir.chunkform``, which defines the two updates), the IR helpers build the same step for
every ``cell.py``, and ``rnnc.ir.chunkform.chunkwise`` evaluates it chunkwise -- so a new member
of the family is a ``project`` and a ``readout``, and its chunkwise form comes for free.  The cell
tells the compiler which step values are q, k, v, g, β and o through its ``chunk`` attribute
(``rnnc.ir.chunkform.chunk_attr``); ``rnnc.passes`` checks that claim against the step graph
before any backend relies on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnc.errors import UserInputError
from rnnc.ir.chunkform import Projected, chunk_attr, loop

NORM_EPS = 1e-5
L2_EPS = 1e-6


Project = Callable[..., Projected]
Readout = Callable[..., torch.Tensor]


def head_dims(hidden_size: int, num_heads: int, key_size: int | None, what: str, default_key: int) -> tuple[int, int]:
    """(DK, DV) per head; sizes the heads do not divide are the user's error, in one sentence."""
    key = default_key if key_size is None else key_size
    for name, size in (("hidden_size", hidden_size), ("key_size", key)):
        if num_heads < 1 or size < num_heads or size % num_heads:
            raise UserInputError(f"{what} {name} {size} must be a positive multiple of num_heads {num_heads}")
    return key // num_heads, hidden_size // num_heads


def half_key_size(hidden_size: int, num_heads: int) -> int:
    """The total key width across heads when each head's key is half its value width, at least one
    channel per head (GLA's expand_k = 0.5; RetNet's d_v = 2 d_k)."""
    return num_heads * max(1, hidden_size // num_heads // 2)


def split_heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[..., NH*D] -> [..., NH, D]``."""
    return t.reshape(*t.shape[:-1], num_heads, t.shape[-1] // num_heads)


def l2norm(t: torch.Tensor) -> torch.Tensor:
    """Unit length along the last axis (DeltaNet's q, k)."""
    return t / torch.sqrt(t.square().sum(-1, keepdim=True) + L2_EPS)


def head_norm(o: torch.Tensor, centered: bool = False) -> torch.Tensor:
    """Per-head normalisation without affine weights (the next linear layer absorbs a scale):
    RMSNorm, or group norm with one group per head (``centered``, RetNet)."""
    if centered:
        o = o - o.mean(-1, keepdim=True)
    return o / torch.sqrt(o.square().mean(-1, keepdim=True) + NORM_EPS)


def merge_heads(o: torch.Tensor) -> torch.Tensor:
    return o.reshape(*o.shape[:-2], o.shape[-2] * o.shape[-1])


def run(x: torch.Tensor, params: Mapping[str, torch.Tensor], state: tuple[torch.Tensor, ...] | None,
        hp: dict[str, Any], form: str, project: Project, readout: Readout,
        chunk_size: int | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (S ``[B, NH, DK, DV]``,)); ``chunk_size=None`` steps
    through time (the reference), otherwise the chunkwise form of ``rnnc.ir.chunkform``."""
    p = project(x, params, **hp)
    batch, nh, dk, dv = x.shape[0], p.q.shape[-2], p.q.shape[-1], p.v.shape[-1]
    s0 = state[0] if state is not None else x.new_zeros(batch, nh, dk, dv)
    if chunk_size is None:
        o, s = loop(form, p, s0)
    else:
        from rnnc.ir.chunkform import chunkwise

        o, s = chunkwise(form, p, s0, chunk_size)
    return readout(o, x, params, **hp), (s,)


# -- the same step in the IR ----------------------------------------------------------------------


def ir_step(b: Any, form: str, s: Any, q: Any, k: Any, v: Any, g: Any | None, beta: Any | None) -> tuple[Any, Any]:
    """The IR of ``rnnc.ir.chunkform.step`` (``b`` a ``GraphBuilder``; operands ``[B, NH, ...]``)
    -> (o, S')."""
    if g is not None:
        s = b.unsqueeze(b.exp(g), axis=-1) * s
    if form == "gla":
        s_new = s + b.unsqueeze(k, axis=-1) * b.unsqueeze(v, axis=-2)
    else:
        u = beta * (v - b.sum(b.unsqueeze(k, axis=-1) * s, axes=(-2,)))
        s_new = s + b.unsqueeze(k, axis=-1) * b.unsqueeze(u, axis=-2)
    o = b.sum(s_new * b.unsqueeze(q, axis=-1), axes=(-2,))
    return o, s_new


def ir_heads(b: Any, t: Any, num_heads: int) -> Any:
    """``[B, NH*D] -> [B, NH, D]``."""
    return b.reshape(t, shape=(0, num_heads, -1))


def ir_l2norm(b: Any, t: Any) -> Any:
    return t / b.sqrt(b.sum(t * t, axes=(-1,), keepdim=True) + L2_EPS)


def ir_head_norm(b: Any, o: Any, centered: bool = False) -> Any:
    """The IR of :func:`head_norm` on ``[B, NH, DV]`` (means as sums times 1/DV: every backend
    lowers ``sum``)."""
    inv = 1.0 / int(o.shape[-1])
    if centered:
        o = o - b.sum(o, axes=(-1,), keepdim=True) * inv
    return o / b.sqrt(b.sum(o * o, axes=(-1,), keepdim=True) * inv + NORM_EPS)


def silu_gate(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``silu(W x)``: the output gate GLA, RetNet and Gated DeltaNet put on the normed readout."""
    return F.silu(F.linear(x, w))


def build_family_cell(kind: str, form: str, input_size: int, hidden_size: int, dims: tuple[int, int, int],
                      dtype: str, project_ir: Callable[..., tuple[Any, ...]], readout_ir: Callable[..., Any],
                      attrs: tuple[tuple[str, Any], ...]) -> Any:
    """A family cell's IR: inputs x and S ``[B, NH, DK, DV]``, ``project_ir(b, x) -> (q, k, v, g,
    β)``, the shared step, ``readout_ir(b, x, o) -> y``; the ``chunk`` attribute names the operands."""
    from rnnc.ir import Cell, GraphBuilder, StateSpec

    nh, dk, dv = dims
    b = GraphBuilder(f"{kind}_step")
    x = b.input("x", ("B", input_size), dtype)
    s = b.input("S", ("B", nh, dk, dv), dtype)
    q, k, v, g, beta = project_ir(b, x)
    o, s_new = ir_step(b, form, s, q, k, v, g, beta)
    step_graph = b.build({"y": readout_ir(b, x, o), "S": s_new})
    chunk = chunk_attr(form, "S", q, k, v, o, g, beta)
    return Cell(kind, "linear", input_size, hidden_size, hidden_size, (StateSpec("S", (nh, dk, dv), dtype),),
                step_graph, tuple(sorted((*attrs, ("num_heads", nh), chunk))))  # sorted, as printed


def make_chunked(form: str, project: Project, readout: Readout) -> Callable[..., Any]:
    """A cell's chunkwise form (``kernels/<cell>/chunk.py``): its own projections and readout
    around ``rnnc.ir.chunkform``; same contract as its ``reference``, plus ``chunk_size``."""
    from rnnc.ir.chunkform import DEFAULT_CHUNK

    def chunked(x: torch.Tensor, params: Mapping[str, torch.Tensor], state: tuple[torch.Tensor, ...] | None = None,
                *, chunk_size: int = DEFAULT_CHUNK, **hparams: Any) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        return run(x, params, state, hparams, form, project, readout, chunk_size)

    return chunked


def init_decay(a_log: torch.Tensor, dt_bias: torch.Tensor) -> None:
    """Mamba-2's decay initialisation: A ~ U(1, 16), Δ = softplus(dt_bias) log-uniform in [1e-3, 1e-1]."""
    a_log.copy_(torch.log(torch.empty_like(a_log).uniform_(1.0, 16.0)))
    dt = torch.exp(torch.empty_like(dt_bias).uniform_(math.log(1e-3), math.log(1e-1)))
    dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
