"""IR builder of the Mamba-2 SSD cell; the equations are in ``reference.py``, the step in
``kernels/linattn.py``."""

from __future__ import annotations

from typing import Any

from rnnc.errors import UserInputError
from rnnc.ir import Cell
from rnnc.kernels.linattn import build_family_cell, head_dims, ir_head_norm, ir_heads


def build_cell(input_size: int, hidden_size: int, *, num_heads: int = 4, state_size: int = 16,
               dtype: str = "float32") -> Cell:
    """S' = exp(ΔA) S + B (Δ x_h)ᵀ; y = RMSNorm((S'ᵀC + D x_h) ⊙ silu(z)) per head."""
    if state_size < 1:
        raise UserInputError(f"Mamba-2 state_size must be >= 1, got {state_size}")
    _, p = head_dims(hidden_size, num_heads, num_heads, "Mamba-2", hidden_size)
    nh, n = num_heads, state_size
    x_h = {}

    def project(b: Any, x: Any) -> tuple[Any, ...]:
        w = {q: b.param(f"weight_{q}", (hidden_size if q in "xz" else n, input_size), dtype) for q in "xzBC"}
        w_dt, b_dt = b.param("weight_dt", (nh, input_size), dtype), b.param("bias_dt", (nh,), dtype)
        a_log = b.param("A_log", (nh,), dtype)
        x_h["x"] = xh = ir_heads(b, b.linear(x, w["x"]), nh)
        x_h["z"] = ir_heads(b, b.linear(x, w["z"]), nh)
        k, q = (b.unsqueeze(b.linear(x, w[c]), axis=-2) for c in "BC")  # [B, 1, N]: shared by the heads
        dt = b.unsqueeze(b.softplus(b.linear(x, w_dt, b_dt)), axis=-1)  # [B, NH, 1]
        g = dt * b.reshape(-b.exp(a_log), shape=(nh, 1))
        return q, k, dt * xh, g, None

    def readout(b: Any, x: Any, o: Any) -> Any:
        d = b.reshape(b.param("D", (nh,), dtype), shape=(nh, 1))
        y = (o + d * x_h["x"]) * b.silu(x_h["z"])
        return b.reshape(ir_head_norm(b, y), shape=(0, hidden_size))

    return build_family_cell("mamba2", "gla", input_size, hidden_size, (nh, n, p), dtype, project, readout,
                             (("state_size", n),))
