"""IR builder of the LRU cell: a complex diagonal recurrence written in real arithmetic.

The complex state h is the pair of states ``h_re, h_im [B, N]``; the complex product
``λ h`` becomes ``(λ_re h_re - λ_im h_im, λ_re h_im + λ_im h_re)``.  λ is built from the trained
``ν_log, θ_log`` inside the step graph (param-only subexpressions a backend can hoist).
See ``reference.py`` for the equations.
"""

from __future__ import annotations

from rnnc.ir import Cell, GraphBuilder, StateSpec


def build_cell(input_size: int, hidden_size: int, *, dtype: str = "float32") -> Cell:
    """h' = λ h + γ B x (complex, as re/im pairs); y = C_re h'_re - C_im h'_im + D x."""
    n, d = hidden_size, input_size
    b = GraphBuilder("lru_step")
    x = b.input("x", ("B", d), dtype)
    h_re = b.input("h_re", ("B", n), dtype)
    h_im = b.input("h_im", ("B", n), dtype)
    nu_log = b.param("nu_log", (n,), dtype)
    theta_log = b.param("theta_log", (n,), dtype)
    gamma_log = b.param("gamma_log", (n,), dtype)
    b_re = b.param("B_re", (n, d), dtype)
    b_im = b.param("B_im", (n, d), dtype)
    c_re = b.param("C_re", (d, n), dtype)
    c_im = b.param("C_im", (d, n), dtype)
    d_skip = b.param("D", (d,), dtype)
    modulus = b.exp(-b.exp(nu_log))
    theta = b.exp(theta_log)
    lam_re = modulus * b.cos(theta)
    lam_im = modulus * b.sin(theta)
    gamma = b.exp(gamma_log)
    new_re = lam_re * h_re - lam_im * h_im + gamma * b.linear(x, b_re)
    new_im = lam_re * h_im + lam_im * h_re + gamma * b.linear(x, b_im)
    y = b.linear(new_re, c_re) - b.linear(new_im, c_im) + d_skip * x
    step = b.build({"y": y, "h_re": new_re, "h_im": new_im})
    return Cell("lru", "linear", d, n, d, (StateSpec("h_re", (n,), dtype), StateSpec("h_im", (n,), dtype)),
                step, ())
