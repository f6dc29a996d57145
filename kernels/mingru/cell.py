"""IR builder of the minGRU cell: ``h' = (1 - z) h + z h̃``, gates from x only (linear recurrence)."""

from __future__ import annotations

from rnnc.ir import Cell, GraphBuilder, StateSpec


def build_cell(input_size: int, hidden_size: int, *, bias: bool = True, dtype: str = "float32") -> Cell:
    """z, h̃ = split(W x + b); z = σ(z); h' = (1 - z) h + z h̃."""
    hid = hidden_size
    b = GraphBuilder("mingru_step")
    x = b.input("x", ("B", input_size), dtype)
    h = b.input("h", ("B", hid), dtype)
    w = b.param("weight", (2 * hid, input_size), dtype)
    bias_v = b.param("bias", (2 * hid,), dtype) if bias else None
    z_pre, cand = b.split(b.linear(x, w, bias_v), axis=-1, sizes=(hid, hid))
    z = b.sigmoid(z_pre)
    h_new = (1.0 - z) * h + z * cand
    step = b.build({"y": h_new, "h": h_new})
    return Cell("mingru", "linear", input_size, hid, hid, (StateSpec("h", (hid,), dtype),), step,
                (("bias", bias),))
