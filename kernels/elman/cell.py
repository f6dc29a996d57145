"""IR builder of the Elman cell (torch.nn.RNN): ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``."""

from __future__ import annotations

from rnnc.errors import UnsupportedError
from rnnc.ir import Cell, GraphBuilder, StateSpec


def build_cell(input_size: int, hidden_size: int, *, nonlinearity: str = "tanh", bias: bool = True,
               dtype: str = "float32") -> Cell:
    """h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu (torch.nn.RNN's choices)."""
    if nonlinearity not in ("tanh", "relu"):
        raise UnsupportedError(f"Elman nonlinearity {nonlinearity!r} is not supported; use 'tanh' or 'relu'")
    b = GraphBuilder("elman_step")
    x = b.input("x", ("B", input_size), dtype)
    h = b.input("h", ("B", hidden_size), dtype)
    w_ih = b.param("weight_ih", (hidden_size, input_size), dtype)
    w_hh = b.param("weight_hh", (hidden_size, hidden_size), dtype)
    b_ih = b.param("bias_ih", (hidden_size,), dtype) if bias else None
    b_hh = b.param("bias_hh", (hidden_size,), dtype) if bias else None
    pre = b.linear(x, w_ih, b_ih) + b.linear(h, w_hh, b_hh)
    h_new = b.op(nonlinearity, pre)
    step = b.build({"y": h_new, "h": h_new})
    return Cell("elman", "nonlinear", input_size, hidden_size, hidden_size,
                (StateSpec("h", (hidden_size,), dtype),), step,
                (("bias", bias), ("nonlinearity", nonlinearity)))
