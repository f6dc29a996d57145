"""IR builder of RetNet retention; the equations are in ``reference.py``, the step in ``kernels/linattn.py``."""

from __future__ import annotations

from typing import Any

from rnnc.ir import Cell
from rnnc.kernels.linattn import build_family_cell, half_key_size, head_dims, ir_head_norm, ir_heads


def build_cell(input_size: int, hidden_size: int, *, num_heads: int = 4, key_size: int | None = None,
               dtype: str = "float32") -> Cell:
    """S' = γ S + k vᵀ; y = silu(W_g x) ⊙ GroupNorm(S'ᵀ q) per head."""
    dk, dv = head_dims(hidden_size, num_heads, key_size, "RetNet", half_key_size(hidden_size, num_heads))
    nh = num_heads

    def project(b: Any, x: Any) -> tuple[Any, ...]:
        w = {p: b.param(f"weight_{p}", (nh * (dv if p == "v" else dk), input_size), dtype) for p in "qkv"}
        g = b.reshape(b.param("log_decay", (nh,), dtype), shape=(nh, 1))
        q = ir_heads(b, b.linear(x, w["q"]), nh) * dk ** -0.5
        k, v = (ir_heads(b, b.linear(x, w[p]), nh) for p in "kv")
        return q, k, v, g, None

    def readout(b: Any, x: Any, o: Any) -> Any:
        w_g = b.param("weight_g", (hidden_size, input_size), dtype)
        return b.silu(b.linear(x, w_g)) * b.reshape(ir_head_norm(b, o, centered=True), shape=(0, hidden_size))

    return build_family_cell("retnet", "gla", input_size, hidden_size, (nh, dk, dv), dtype, project, readout,
                             (("key_size", nh * dk),))
