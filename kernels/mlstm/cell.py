"""IR builder of the mLSTM cell (xLSTM): matrix memory per head, linear in the state.

Projections q, k, v, o and the scalar gates ĩ, f̃ per head depend on x only; the state update
``C' = f' C + i' v kᵀ`` is a rank-1 update, and the readout is one batched matvec ``C' q``.
See ``reference.py`` for the equations.
"""

from __future__ import annotations

import math

from rnnc.errors import UnsupportedError
from rnnc.ir import Cell, GraphBuilder, StateSpec
from rnnc.ir.chunkform import chunk_attr
from rnnc.kernels.slstm.cell import check_heads


def build_cell(input_size: int, hidden_size: int, *, num_heads: int = 1, forget_gate: str = "sigmoid",
               bias: bool = True, dtype: str = "float32") -> Cell:
    """m' = max(log f + m, ĩ); C' = f'C + i' v kᵀ; n' = f'n + i'k;
    h = σ(o) ⊙ C'q / max(|n'ᵀq|, exp(-m'))."""
    if forget_gate not in ("sigmoid", "exp"):
        raise UnsupportedError(f"mLSTM forget_gate {forget_gate!r} is not supported; use 'sigmoid' or 'exp'")
    hid, nh = hidden_size, num_heads
    dh = check_heads(hidden_size, num_heads, "mLSTM")
    b = GraphBuilder("mlstm_step")
    x = b.input("x", ("B", input_size), dtype)
    cmat = b.input("C", ("B", nh, dh, dh), dtype)
    n = b.input("n", ("B", nh, dh), dtype)
    m = b.input("m", ("B", nh), dtype)
    w_q, w_k, w_v = (b.param(f"weight_{p}", (hid, input_size), dtype) for p in "qkv")
    w_i = b.param("weight_i", (nh, input_size), dtype)
    b_i = b.param("bias_i", (nh,), dtype) if bias else None
    w_f = b.param("weight_f", (nh, input_size), dtype)
    b_f = b.param("bias_f", (nh,), dtype) if bias else None
    w_o = b.param("weight_o", (hid, input_size), dtype)
    b_o = b.param("bias_o", (hid,), dtype) if bias else None
    q = b.reshape(b.linear(x, w_q), shape=(0, nh, dh))
    k = b.reshape(b.linear(x, w_k), shape=(0, nh, dh)) * (1.0 / math.sqrt(dh))
    v = b.reshape(b.linear(x, w_v), shape=(0, nh, dh))
    i_pre = b.linear(x, w_i, b_i)
    f_pre = b.linear(x, w_f, b_f)
    log_f = b.logsigmoid(f_pre) if forget_gate == "sigmoid" else f_pre
    m_new = b.max(log_f + m, i_pre)  # [B, NH]
    i_g = b.unsqueeze(b.exp(i_pre - m_new), axis=-1)  # [B, NH, 1]
    f_g = b.unsqueeze(b.exp(log_f + m - m_new), axis=-1)
    outer = b.unsqueeze(v, axis=-1) * b.unsqueeze(k, axis=-2)  # v kᵀ: [B, NH, DH, DH]
    c_new = b.unsqueeze(f_g, axis=-1) * cmat + b.unsqueeze(i_g, axis=-1) * outer
    n_new = f_g * n + i_g * k
    num = b.squeeze(b.matmul(c_new, b.unsqueeze(q, axis=-1)), axis=-1)  # C' q: [B, NH, DH]
    nq = b.sum(n_new * q, axes=(-1,), keepdim=True)  # [B, NH, 1]
    den = b.max(b.abs(nq), b.exp(-b.unsqueeze(m_new, axis=-1)))
    o = num / den  # [B, NH, DH]: the chunk form's readout
    h = b.sigmoid(b.linear(x, w_o, b_o)) * b.reshape(o, shape=(0, hid))
    step = b.build({"y": h, "C": c_new, "n": n_new, "m": m_new})
    # the chunkwise form (rnnc.ir.chunkform, "mlstm"); rnnc.passes checks this claim numerically
    chunk = chunk_attr("mlstm", "C", q, k, v, o, g=log_f, i=i_pre, norm="n", stab="m")
    return Cell("mlstm", "linear", input_size, hid, hid,
                (StateSpec("C", (nh, dh, dh), dtype), StateSpec("n", (nh, dh), dtype),
                 StateSpec("m", (nh,), dtype)), step,
                (("bias", bias), chunk, ("forget_gate", forget_gate), ("num_heads", nh)))  # sorted, as parsed
