"""IR builder of the sLSTM cell (xLSTM): exponential gating, stabiliser m, block-diagonal heads.

The recurrent matrix is stored per head and gate, ``weight_hh [4, NH, DH, DH]`` (in, out), and
applied as one broadcast ``matmul`` of ``h [B, 1, NH, 1, DH]``: backends see the head structure
(NH small GEMVs, 1/NH of a dense recurrent matmul's work) instead of a dense ``[4H, H]`` matrix
full of zeros.  See ``reference.py`` for the equations.
"""

from __future__ import annotations

from rnnc.errors import UnsupportedError, UserInputError
from rnnc.ir import Cell, GraphBuilder, StateSpec


def check_heads(hidden_size: int, num_heads: int, what: str = "sLSTM") -> int:
    """Head size DH; a hidden size that the heads do not divide is the user's error."""
    if num_heads < 1 or hidden_size % num_heads:
        raise UserInputError(f"{what} hidden_size {hidden_size} must be a positive multiple of "
                             f"num_heads {num_heads}")
    return hidden_size // num_heads


def build_cell(input_size: int, hidden_size: int, *, num_heads: int = 1, forget_gate: str = "sigmoid",
               bias: bool = True, dtype: str = "float32") -> Cell:
    """pre = W_ih x + b + blockdiag(R) h; m' = max(log f + m, ĩ); c' = f'c + i' tanh(z̃);
    n' = f'n + i'; h' = σ(õ) c'/n'   (i' = exp(ĩ - m'), f' = exp(log f + m - m'))."""
    if forget_gate not in ("sigmoid", "exp"):
        raise UnsupportedError(f"sLSTM forget_gate {forget_gate!r} is not supported; use 'sigmoid' or 'exp'")
    hid = hidden_size
    nh, dh = num_heads, check_heads(hidden_size, num_heads)
    b = GraphBuilder("slstm_step")
    x = b.input("x", ("B", input_size), dtype)
    h, c, n, m = (b.input(s, ("B", hid), dtype) for s in "hcnm")
    w_ih = b.param("weight_ih", (4 * hid, input_size), dtype)
    r = b.param("weight_hh", (4, nh, dh, dh), dtype)
    bias_v = b.param("bias", (4 * hid,), dtype) if bias else None
    h_heads = b.reshape(h, shape=(0, 1, nh, 1, dh))  # [B, 1, NH, 1, DH]
    rec = b.reshape(b.matmul(h_heads, r), shape=(0, 4 * hid))  # [B, 4, NH, 1, DH] -> [B, 4H]
    pre = b.linear(x, w_ih, bias_v) + rec
    i_pre, f_pre, z_pre, o_pre = b.split(pre, axis=-1, sizes=(hid,) * 4)
    log_f = b.logsigmoid(f_pre) if forget_gate == "sigmoid" else f_pre
    m_new = b.max(log_f + m, i_pre)
    i_g = b.exp(i_pre - m_new)
    f_g = b.exp(log_f + m - m_new)
    c_new = f_g * c + i_g * b.tanh(z_pre)
    n_new = f_g * n + i_g
    h_new = b.sigmoid(o_pre) * c_new / n_new
    step = b.build({"y": h_new, "h": h_new, "c": c_new, "n": n_new, "m": m_new})
    return Cell("slstm", "nonlinear", input_size, hid, hid,
                tuple(StateSpec(s, (hid,), dtype) for s in "hcnm"), step,
                (("bias", bias), ("forget_gate", forget_gate), ("num_heads", nh)))
