"""IR builder of the (Gated) DeltaNet cell; the equations are in ``reference.py``, the step in
``kernels/linattn.py``."""

from __future__ import annotations

from typing import Any

from rnnc.ir import Cell
from rnnc.kernels.linattn import build_family_cell, head_dims, ir_head_norm, ir_heads, ir_l2norm


def build_cell(input_size: int, hidden_size: int, *, num_heads: int = 4, key_size: int | None = None,
               gated: bool = False, dtype: str = "float32") -> Cell:
    """S̄ = α S; S' = S̄ + β k (v - S̄ᵀk)ᵀ; y = RMSNorm(S'ᵀ q) (⊙ silu(W_g x) when gated)."""
    dk, dv = head_dims(hidden_size, num_heads, key_size, "DeltaNet", hidden_size)
    nh = num_heads

    def project(b: Any, x: Any) -> tuple[Any, ...]:
        w = {p: b.param(f"weight_{p}", (nh * (dv if p == "v" else dk), input_size), dtype) for p in "qkv"}
        w_b, b_b = b.param("weight_b", (nh, input_size), dtype), b.param("bias_b", (nh,), dtype)
        q, k, v = (b.silu(ir_heads(b, b.linear(x, w[p]), nh)) for p in "qkv")
        beta = b.unsqueeze(b.sigmoid(b.linear(x, w_b, b_b)), axis=-1)
        g = None
        if gated:
            a_log = b.param("A_log", (nh,), dtype)
            w_a, b_a = b.param("weight_a", (nh, input_size), dtype), b.param("bias_a", (nh,), dtype)
            g = b.unsqueeze(-b.exp(a_log) * b.softplus(b.linear(x, w_a, b_a)), axis=-1)
        return ir_l2norm(b, q), ir_l2norm(b, k), v, g, beta

    def readout(b: Any, x: Any, o: Any) -> Any:
        y = b.reshape(ir_head_norm(b, o), shape=(0, hidden_size))
        if gated:
            y = y * b.silu(b.linear(x, b.param("weight_g", (hidden_size, input_size), dtype)))
        return y

    return build_family_cell("deltanet", "delta", input_size, hidden_size, (nh, dk, dv), dtype, project, readout,
                             (("key_size", nh * dk), ("gated", gated)))
