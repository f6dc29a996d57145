"""IR builder of the LSTM cell, with torch.nn.LSTM's parameter names, layout and gate order.

Keeping torch's names and ``[4H, I]`` layout (gates i, f, g, o) means a trained ``nn.LSTM``
maps onto the cell without copying or reordering weights.
"""

from __future__ import annotations

from rnnc.ir import Cell, GraphBuilder, StateSpec


def build_cell(input_size: int, hidden_size: int, *, bias: bool = True, proj_size: int = 0,
               dtype: str = "float32") -> Cell:
    """i,f,g,o = split(W_ih x + b_ih + W_hh h + b_hh); c' = σ(f)c + σ(i)tanh(g);
    h' = σ(o) tanh(c') (then ``W_hr h'`` when ``proj_size > 0``)."""
    hid = hidden_size
    out = proj_size or hidden_size
    b = GraphBuilder("lstm_step")
    x = b.input("x", ("B", input_size), dtype)
    h = b.input("h", ("B", out), dtype)
    c = b.input("c", ("B", hid), dtype)
    w_ih = b.param("weight_ih", (4 * hid, input_size), dtype)
    w_hh = b.param("weight_hh", (4 * hid, out), dtype)
    b_ih = b.param("bias_ih", (4 * hid,), dtype) if bias else None
    b_hh = b.param("bias_hh", (4 * hid,), dtype) if bias else None
    w_hr = b.param("weight_hr", (proj_size, hid), dtype) if proj_size else None
    gates = b.linear(x, w_ih, b_ih) + b.linear(h, w_hh, b_hh)
    i, f, g, o = b.split(gates, axis=-1, sizes=(hid,) * 4)
    c_new = b.sigmoid(f) * c + b.sigmoid(i) * b.tanh(g)
    h_new = b.sigmoid(o) * b.tanh(c_new)
    if w_hr is not None:
        h_new = b.linear(h_new, w_hr)
    step = b.build({"y": h_new, "h": h_new, "c": c_new})
    return Cell("lstm", "nonlinear", input_size, hid, out,
                (StateSpec("h", (out,), dtype), StateSpec("c", (hid,), dtype)), step,
                (("bias", bias), ("proj_size", proj_size)))
