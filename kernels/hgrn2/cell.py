"""IR builder of the HGRN2 cell; the equations are in ``reference.py``, the step in ``kernels/linattn.py``."""

from __future__ import annotations

from typing import Any

from rnnc.errors import UserInputError
from rnnc.ir import Cell
from rnnc.kernels.linattn import build_family_cell, head_dims, ir_head_norm, ir_heads


def check_lower_bound(lower_bound: float) -> None:
    if not 0.0 <= lower_bound < 1.0:
        raise UserInputError(f"HGRN2 lower_bound must lie in [0, 1), got {lower_bound}")


def build_cell(input_size: int, hidden_size: int, *, num_heads: int = 4, key_size: int | None = None,
               lower_bound: float = 0.0, dtype: str = "float32") -> Cell:
    """f = lb + (1-lb)σ(W_f x + b); S' = diag(f) S + (1-f) vᵀ; y = RMSNorm(S'ᵀ silu(W_q x))."""
    check_lower_bound(lower_bound)
    dk, dv = head_dims(hidden_size, num_heads, key_size, "HGRN2", hidden_size)
    nh = num_heads

    def project(b: Any, x: Any) -> tuple[Any, ...]:
        w_f = b.param("weight_f", (nh * dk, input_size), dtype)
        b_f = b.param("bias_f", (nh * dk,), dtype)
        w_q = b.param("weight_q", (nh * dk, input_size), dtype)
        w_i = b.param("weight_i", (hidden_size, input_size), dtype)
        f_pre = ir_heads(b, b.linear(x, w_f, b_f), nh)
        if lower_bound == 0.0:
            g, k = b.logsigmoid(f_pre), b.sigmoid(-f_pre)
        else:
            f = b.sigmoid(f_pre) * (1.0 - lower_bound) + lower_bound
            g, k = b.log(f), 1.0 - f
        q = b.silu(ir_heads(b, b.linear(x, w_q), nh))
        return q, k, ir_heads(b, b.linear(x, w_i), nh), g, None

    def readout(b: Any, x: Any, o: Any) -> Any:
        return b.reshape(ir_head_norm(b, o), shape=(0, hidden_size))

    return build_family_cell("hgrn2", "gla", input_size, hidden_size, (nh, dk, dv), dtype, project, readout,
                             (("key_size", nh * dk), ("lower_bound", float(lower_bound))))
