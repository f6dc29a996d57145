"""Chunkwise-parallel Triton kernels for the matrix-state family (GLA, RetNet, HGRN2, DeltaNet,
Mamba-2 and any cell with a verified chunk form, ``rnnc.passes.chunk``).

One program owns one (batch row, head, value tile): its state tile ``S [DK, VT]`` stays in
registers for the whole sequence, and each chunk of ``C`` steps is a handful of ``tl.dot``\\ s on
chunk tiles, fla-style (``rnnc.ir.chunkform`` has the equations and the torch twin this is
checked against):

* intra-chunk: the causal ``[C, C]`` score matrix ``A = (Q Kᵀ) ⊙ Γ`` times V (per-head decays:
  Γ_ts = e^{b_t - b_s}; per-key-channel decays: each column of A as its own decayed dot product,
  so for decays (g ≤ 0) no exponent is positive and nothing overflows however strong they are);
* inter-chunk: ``(Q ⊙ e^b) S`` for the outputs and ``e^{b_L} S + (K ⊙ e^{b_L - b})ᵀ V`` for the
  carried state;
* delta rule: the UT transform -- ``(I + tril(diag β (K Kᵀ ⊙ Γ), -1))⁻¹`` by forward
  substitution on the ``[C, C]`` tile, then ``U = T⁻¹ · diag β (V - e^b K S)`` with ``tl.dot``.

Operands arrive time-major ``[T, B, NH, D]`` (the pre-loop graph's rows, evaluated once with
torch like the scan path's), the outputs o leave the same way and the post-loop graph turns
them into y.  Dot products run in IEEE fp32 (``input_precision="ieee"``): TF32 would cost the
fp32 tolerance.  Padded rows (past T, or past a sequence's length) carry k = v = g = β = 0,
which leaves the state untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnnc.backends.triton.render import KERNEL_NAME, pow2
from rnnc.ir.graph import Cell
from rnnc.passes.chunk import ChunkForm

MIN_TILE = 16  # tl.dot's smallest tile side on a GPU


@dataclass(frozen=True)
class ChunkPlan:
    """A chunk-form cell and its sizes: heads, key/value widths, decay width (DK, 1 or 0)."""

    cell: Cell
    form: ChunkForm
    heads: int
    dk: int
    dv: int
    gate: int  # 0: no decay, 1: one per head, dk: one per key channel

    @property
    def delta(self) -> bool:
        return self.form.form == "delta"  # mLSTM runs as "gla" (rnnc.lower.chunkwise.kernel_shape)


def plan_chunk(cell: Cell, form: ChunkForm) -> ChunkPlan:
    """The kernel's sizes (``rnnc.lower.chunkwise.kernel_shape``: mLSTM runs as "gla" with one
    more value column)."""
    from rnnc.lower.chunkwise import kernel_shape

    ks = kernel_shape(cell, form)
    return ChunkPlan(cell, form, ks.heads, ks.dk, ks.dv, ks.gate)


def tiles(plan: ChunkPlan, chunk: int, value_tile: int) -> dict[str, Any]:
    """The kernel's constexprs for a chunk length and a value tile (powers of two >= 16)."""
    bk = max(MIN_TILE, pow2(plan.dk))
    vt = max(MIN_TILE, min(pow2(value_tile), pow2(plan.dv)))
    return {"DK": plan.dk, "DV": plan.dv, "C": max(MIN_TILE, pow2(chunk)), "BK": bk, "VT": vt,
            "GATE": 0 if plan.gate == 0 else (1 if plan.gate == 1 else 2), "DELTA": plan.delta}


SOURCE = '''"""rnnc chunkwise kernel of the matrix-state family (rendered by rnnc.backends.triton.chunk)."""
import triton
import triton.language as tl


@triton.jit
def rnnc_layer(q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, s0_ptr, o_ptr, s_ptr, T, B, NH,
               DK: tl.constexpr, DV: tl.constexpr, C: tl.constexpr, BK: tl.constexpr, VT: tl.constexpr,
               GATE: tl.constexpr, DELTA: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // NH
    h = pid % NH
    cv0 = tl.program_id(1) * VT
    rows = tl.arange(0, C)
    ck = tl.arange(0, BK)
    cv = cv0 + tl.arange(0, VT)
    mk = ck < DK
    mv = cv < DV
    causal = rows[:, None] >= rows[None, :]
    s_off = ((b * NH + h) * DK + ck[:, None]) * DV + cv[None, :]
    S = tl.load(s0_ptr + s_off, mask=mk[:, None] & mv[None, :], other=0.0).to(tl.float32)
    for c0 in range(0, T, C):
        t = c0 + rows
        mt = t < T
        base = (t * B + b) * NH + h
        mqk = mt[:, None] & mk[None, :]
        q = tl.load(q_ptr + base[:, None] * DK + ck[None, :], mask=mqk, other=0.0).to(tl.float32)
        k = tl.load(k_ptr + base[:, None] * DK + ck[None, :], mask=mqk, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + base[:, None] * DV + cv[None, :], mask=mt[:, None] & mv[None, :], other=0.0
                    ).to(tl.float32)
        if GATE == 2:  # one decay per key channel
            bc = tl.cumsum(tl.load(g_ptr + base[:, None] * DK + ck[None, :], mask=mqk, other=0.0).to(tl.float32),
                           axis=0)
            blast = tl.sum(tl.where(rows[:, None] == C - 1, bc, 0.0), axis=0)
            a = tl.zeros([C, C], dtype=tl.float32)
            for s in range(0, C):
                sel = rows == s
                ks = tl.sum(tl.where(sel[:, None], k, 0.0), axis=0)
                bs = tl.sum(tl.where(sel[:, None], bc, 0.0), axis=0)
                live = rows[:, None] >= s
                col = tl.sum(tl.where(live, q * ks[None, :] * tl.exp(tl.where(live, bc - bs[None, :], 0.0)), 0.0),
                             axis=1)
                a = tl.where(sel[None, :], col[:, None], a)
            o = tl.dot(a, v, input_precision="ieee") + tl.dot(q * tl.exp(bc), S, input_precision="ieee")
            S = S * tl.exp(blast)[:, None] + tl.dot(tl.trans(k * tl.exp(blast[None, :] - bc)), v,
                                                    input_precision="ieee")
        else:
            if GATE == 1:  # one decay per head
                bq = tl.cumsum(tl.load(g_ptr + base, mask=mt, other=0.0).to(tl.float32), axis=0)
            else:
                bq = tl.zeros([C], dtype=tl.float32)
            blast = tl.sum(tl.where(rows == C - 1, bq, 0.0), axis=0)
            gam = tl.exp(tl.where(causal, bq[:, None] - bq[None, :], float("-inf")))
            qk = tl.dot(q, tl.trans(k), input_precision="ieee") * gam
            if DELTA:
                beta = tl.load(beta_ptr + base, mask=mt, other=0.0).to(tl.float32)
                kk = tl.dot(k, tl.trans(k), input_precision="ieee") * gam
                m = tl.where(rows[:, None] > rows[None, :], beta[:, None] * kk, 0.0)
                tinv = tl.where(rows[:, None] == rows[None, :], 1.0, 0.0)
                for i in range(1, C):  # forward substitution: row i of (I + M)^-1
                    sel = rows == i
                    mi = tl.sum(tl.where(sel[:, None], m, 0.0), axis=0)
                    row = tl.sum(mi[:, None] * tinv, axis=0)
                    tinv = tl.where(sel[:, None], tinv - row[None, :], tinv)
                eb = tl.exp(bq)[:, None]
                rhs = beta[:, None] * (v - eb * tl.dot(k, S, input_precision="ieee"))
                u = tl.dot(tinv, rhs, input_precision="ieee")
                o = eb * tl.dot(q, S, input_precision="ieee") + tl.dot(qk, u, input_precision="ieee")
                S = S * tl.exp(blast) + tl.dot(tl.trans(k * tl.exp(blast - bq)[:, None]), u, input_precision="ieee")
            else:
                o = tl.dot(qk, v, input_precision="ieee") + tl.dot(q * tl.exp(bq)[:, None], S, input_precision="ieee")
                S = S * tl.exp(blast) + tl.dot(tl.trans(k * tl.exp(blast - bq)[:, None]), v, input_precision="ieee")
        tl.store(o_ptr + base[:, None] * DV + cv[None, :], o.to(o_ptr.dtype.element_ty),
                 mask=mt[:, None] & mv[None, :])
    tl.store(s_ptr + s_off, S.to(s_ptr.dtype.element_ty), mask=mk[:, None] & mv[None, :])
'''


def render_chunk(plan: ChunkPlan) -> str:
    """The kernel source: one text for the whole family (its sizes and form are constexprs)."""
    del plan  # the same source serves every plan; the launch's constexprs specialise it
    assert f"def {KERNEL_NAME}(" in SOURCE
    return SOURCE


def run_chunk_layer(lk: Any, x: Any, params: dict[str, Any], init: list[Any], lengths: Any,
                    reverse: bool) -> tuple[Any, list[Any]]:
    """One (layer, direction) of a chunk-form cell: pre-nodes on all rows (torch), one kernel
    launch over (batch x heads, value tiles), post-nodes on all rows; ``x`` is ``[T, B, I]``."""
    import torch

    from rnnc.lower.chunkwise import finish, prepare

    plan: ChunkPlan = lk.plan
    steps, batch = int(x.shape[0]), int(x.shape[1])
    if steps == 0 or batch == 0:  # nothing to run: an empty output, the states as they were
        return x.new_zeros(steps, batch, plan.cell.output_size), [s.to(x.dtype) for s in init]
    prep = prepare(plan.cell, plan.form, params, x, init, lengths, reverse)
    tm, s0 = prep.ops, prep.s0
    o = torch.empty((steps, batch, plan.heads, plan.dv), dtype=torch.float32, device=x.device)
    s_out = torch.empty_like(s0)
    consts = tiles(plan, lk.chunk, lk.tile)
    dummy = o.new_zeros(1)
    grid = (batch * plan.heads, -(-plan.dv // consts["VT"]))
    lk.kernel[grid](tm["q"], tm["k"], tm["v"], dummy if tm["g"] is None else tm["g"],
                    dummy if tm["beta"] is None else tm["beta"], s0, o, s_out, steps, batch, plan.heads,
                    num_warps=lk.warps, **consts)
    y, finals = finish(plan.cell, plan.form, prep, o, s_out, lengths, reverse)
    return y.to(x.dtype), [s.to(x.dtype) for s in finals]
