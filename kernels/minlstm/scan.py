"""minLSTM as a parallel scan: all gates at once, then ``rnnc.kernels.scan.linear_scan``."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from rnnc.kernels.minlstm.reference import coefficients
from rnnc.kernels.scan import linear_scan


def parallel(x: torch.Tensor, params: Mapping[str, torch.Tensor],
             state: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Same contract as ``reference``, without a time loop."""
    a, b = coefficients(x, params)
    h0 = state[0] if state is not None else None
    y = linear_scan(a, b, h0)
    final = y[:, -1] if y.shape[1] else (h0 if h0 is not None else b.new_zeros(b.shape[0], b.shape[2]))
    return y, (final,)
