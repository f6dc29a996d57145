"""IR builder of the minLSTM cell: normalised gates from x only (linear recurrence)."""

from __future__ import annotations

from rnnc.ir import Cell, GraphBuilder, StateSpec


def build_cell(input_size: int, hidden_size: int, *, bias: bool = True, dtype: str = "float32") -> Cell:
    """f, i, h̃ = split(W x + b); f, i = σ(f), σ(i); h' = f/(f+i) h + i/(f+i) h̃."""
    hid = hidden_size
    b = GraphBuilder("minlstm_step")
    x = b.input("x", ("B", input_size), dtype)
    h = b.input("h", ("B", hid), dtype)
    w = b.param("weight", (3 * hid, input_size), dtype)
    bias_v = b.param("bias", (3 * hid,), dtype) if bias else None
    f_pre, i_pre, cand = b.split(b.linear(x, w, bias_v), axis=-1, sizes=(hid, hid, hid))
    f, i = b.sigmoid(f_pre), b.sigmoid(i_pre)
    total = f + i
    h_new = (f / total) * h + (i / total) * cand
    step = b.build({"y": h_new, "h": h_new})
    return Cell("minlstm", "linear", input_size, hid, hid, (StateSpec("h", (hid,), dtype),), step,
                (("bias", bias),))
