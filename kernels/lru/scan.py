"""LRU as a parallel scan over the complex diagonal recurrence (``rnnc.kernels.scan``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from rnnc.kernels.lru.reference import coefficients, readout, to_complex
from rnnc.kernels.scan import linear_scan


def parallel(x: torch.Tensor, params: Mapping[str, torch.Tensor],
             state: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Same contract as ``reference``, without a time loop."""
    lam, bx = coefficients(x, params)
    h0 = to_complex(state, x, lam.shape[0])
    hs = linear_scan(lam, bx, h0)
    final = hs[:, -1] if hs.shape[1] else h0
    return readout(hs, x, params), (final.real.contiguous(), final.imag.contiguous())
