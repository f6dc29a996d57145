"""IR builder of the GRU cell with torch.nn.GRU's names, ``[3H, I]`` layout and gate order (r, z, n).

torch's GRU applies the reset gate *after* the recurrent matmul (``r * (W_hn h + b_hn)``), which
is ONNX's ``linear_before_reset=1``; the step graph states that explicitly.
"""

from __future__ import annotations

from rnnc.ir import Cell, GraphBuilder, StateSpec


def build_cell(input_size: int, hidden_size: int, *, bias: bool = True, dtype: str = "float32") -> Cell:
    """r = σ(W_ir x + b_ir + W_hr h + b_hr); z = σ(W_iz x + b_iz + W_hz h + b_hz);
    n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h' = (1 - z) n + z h."""
    hid = hidden_size
    b = GraphBuilder("gru_step")
    x = b.input("x", ("B", input_size), dtype)
    h = b.input("h", ("B", hid), dtype)
    w_ih = b.param("weight_ih", (3 * hid, input_size), dtype)
    w_hh = b.param("weight_hh", (3 * hid, hid), dtype)
    b_ih = b.param("bias_ih", (3 * hid,), dtype) if bias else None
    b_hh = b.param("bias_hh", (3 * hid,), dtype) if bias else None
    gi = b.linear(x, w_ih, b_ih)
    gh = b.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = b.split(gi, axis=-1, sizes=(hid,) * 3)
    h_r, h_z, h_n = b.split(gh, axis=-1, sizes=(hid,) * 3)
    r = b.sigmoid(i_r + h_r)
    z = b.sigmoid(i_z + h_z)
    n = b.tanh(i_n + r * h_n)
    h_new = (1.0 - z) * n + z * h
    step = b.build({"y": h_new, "h": h_new})
    return Cell("gru", "nonlinear", input_size, hid, hid, (StateSpec("h", (hid,), dtype),), step,
                (("bias", bias), ("linear_before_reset", True)))
