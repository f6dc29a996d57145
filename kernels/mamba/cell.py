"""IR builder of Mamba's S6 cell: input-dependent Δ, B, C; diagonal negative A; state [D, N].

One step is a rank-R projection for Δ, two N-wide projections for B and C, then elementwise
work over the ``[B, D, N]`` state and a reduction over N.  The recurrence is diagonal and linear
in h, so backends may run it as a parallel scan.  See ``reference.py`` for the equations.
"""

from __future__ import annotations

from rnnc.errors import UserInputError
from rnnc.ir import Cell, GraphBuilder, StateSpec


def default_dt_rank(input_size: int) -> int:
    """Mamba's default ``dt_rank = ceil(D / 16)``."""
    return -(-input_size // 16)


def build_cell(input_size: int, hidden_size: int, *, dt_rank: int | None = None, dtype: str = "float32") -> Cell:
    """Δ = softplus(W_dt δ + b_dt); h' = exp(Δ A) h + Δ B x; y = h' C + D x (A = -exp(A_log)).

    ``input_size`` is the channel count D, ``hidden_size`` the state size N per channel.
    """
    d, n = input_size, hidden_size
    rank = default_dt_rank(d) if dt_rank is None else dt_rank
    if rank < 1 or d < 1 or n < 1:
        raise UserInputError(f"Mamba S6 needs positive sizes, got D={d}, N={n}, dt_rank={rank}")
    b = GraphBuilder("mamba_step")
    x = b.input("x", ("B", d), dtype)
    h = b.input("h", ("B", d, n), dtype)
    w_x = b.param("weight_x", (rank + 2 * n, d), dtype)
    w_dt = b.param("weight_dt", (d, rank), dtype)
    b_dt = b.param("bias_dt", (d,), dtype)
    a_log = b.param("A_log", (d, n), dtype)
    d_skip = b.param("D", (d,), dtype)
    dt_low, b_t, c_t = b.split(b.linear(x, w_x), axis=-1, sizes=(rank, n, n))
    delta = b.softplus(b.linear(dt_low, w_dt, b_dt))  # [B, D]
    a = -b.exp(a_log)  # [D, N]
    decay = b.exp(b.unsqueeze(delta, axis=-1) * a)  # [B, D, N]
    drive = b.unsqueeze(delta * x, axis=-1) * b.unsqueeze(b_t, axis=1)  # [B, D, N]
    h_new = decay * h + drive
    y = b.sum(h_new * b.unsqueeze(c_t, axis=1), axes=(-1,)) + d_skip * x
    step = b.build({"y": y, "h": h_new})
    return Cell("mamba", "linear", d, n, d, (StateSpec("h", (d, n), dtype),), step, (("dt_rank", rank),))
