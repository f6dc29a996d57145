"""The reference every Newton scan (torch, C, Triton) is checked against: ``s_t = A_t s_{t-1} + b_t``
from ``s_0 = 0``, written out step by step in float64 -- no scan, no chunks."""

from __future__ import annotations

import torch


def random_system(steps: int, rows: int, dim: int, full: bool, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Coefficients ``a [T, R, D, D]`` (full, contracting on average) or ``[T, R, D]`` and ``b [T, R, D]``."""
    a = torch.randn(steps, rows, dim, dim, generator=gen) * 0.4 if full else torch.rand(steps, rows, dim, generator=gen)
    return a, torch.randn(steps, rows, dim, generator=gen)


def sequential(a: torch.Tensor, b: torch.Tensor, full: bool) -> torch.Tensor:
    """All ``s_t`` ``[T, R, D]`` in float32, computed in float64."""
    s, out = torch.zeros(b.shape[1:], dtype=torch.float64), []
    for t in range(b.shape[0]):
        s = (torch.einsum("rij,rj->ri", a[t].double(), s) if full else a[t].double() * s) + b[t].double()
        out.append(s)
    return torch.stack(out).float()
