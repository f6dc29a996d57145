"""Mamba S6 as a parallel scan: every Δ, B, C at once, then ``rnnc.kernels.scan.linear_scan``."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from rnnc.kernels.mamba.reference import coefficients
from rnnc.kernels.scan import linear_scan


def parallel(x: torch.Tensor, params: Mapping[str, torch.Tensor],
             state: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Same contract as ``reference``, without a time loop."""
    decay, drive, c_t = coefficients(x, params)
    h0 = state[0] if state is not None else None
    hs = linear_scan(decay, drive, h0)  # [B, T, D, N]
    y = (hs * c_t[:, :, None, :]).sum(-1) + params["D"] * x
    if hs.shape[1]:
        final = hs[:, -1]
    else:
        final = h0 if h0 is not None else x.new_zeros(x.shape[0], *params["A_log"].shape)
    return y, (final,)
