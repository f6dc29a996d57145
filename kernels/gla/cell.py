"""IR builder of the GLA cell; the equations are in ``reference.py``, the step in ``kernels/linattn.py``."""

from __future__ import annotations

from typing import Any

from rnnc.ir import Cell
from rnnc.kernels.gla.reference import TEMPERATURE
from rnnc.kernels.linattn import build_family_cell, half_key_size, head_dims, ir_head_norm, ir_heads


def build_cell(input_size: int, hidden_size: int, *, num_heads: int = 4, key_size: int | None = None,
               gate_rank: int = 16, dtype: str = "float32") -> Cell:
    """S' = diag(α) S + k vᵀ; y = silu(W_r x) ⊙ RMSNorm(S'ᵀ q) per head."""
    dk, dv = head_dims(hidden_size, num_heads, key_size, "GLA", half_key_size(hidden_size, num_heads))
    nh = num_heads

    def project(b: Any, x: Any) -> tuple[Any, ...]:
        w = {p: b.param(f"weight_{p}", (nh * (dv if p == "v" else dk), input_size), dtype) for p in "qkv"}
        w_a1 = b.param("weight_a1", (gate_rank, input_size), dtype)
        w_a2 = b.param("weight_a2", (nh * dk, gate_rank), dtype)
        b_a = b.param("bias_a", (nh * dk,), dtype)
        q = ir_heads(b, b.linear(x, w["q"]), nh) * dk ** -0.5
        k, v = (ir_heads(b, b.linear(x, w[p]), nh) for p in "kv")
        g = ir_heads(b, b.logsigmoid(b.linear(b.linear(x, w_a1), w_a2, b_a)), nh) * (1.0 / TEMPERATURE)
        return q, k, v, g, None

    def readout(b: Any, x: Any, o: Any) -> Any:
        w_r = b.param("weight_r", (hidden_size, input_size), dtype)
        return b.silu(b.linear(x, w_r)) * b.reshape(ir_head_norm(b, o), shape=(0, hidden_size))

    return build_family_cell("gla", "gla", input_size, hidden_size, (nh, dk, dv), dtype, project, readout,
                             (("key_size", nh * dk), ("gate_rank", gate_rank)))
