"""mLSTM's chunkwise form: the reference's projections around ``rnnc.ir.chunkform``'s "mlstm" form
(stabilisers by a prefix maximum, then the "gla" chunk form with the normaliser as one more value
column -- the form the C and Triton chunk kernels run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rnnc.ir.chunkform import DEFAULT_CHUNK, Projected, run_form
from rnnc.kernels.mlstm.reference import project


def chunked(x: torch.Tensor, params: Mapping[str, torch.Tensor], state: tuple[torch.Tensor, ...] | None = None, *,
            num_heads: int = 1, forget_gate: str = "sigmoid", chunk_size: int = DEFAULT_CHUNK, **hparams: Any
            ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Same contract as ``reference`` (``bias`` is in the params); ``chunk_size`` steps per chunk."""
    batch = x.shape[0]
    hid = params["weight_q"].shape[0]
    nh, dh = num_heads, hid // num_heads
    if state is None:
        state = (x.new_zeros(batch, nh, dh, dh), x.new_zeros(batch, nh, dh), x.new_zeros(batch, nh))
    q, k, v, i_pre, log_f, o = project(x, params, nh, forget_gate)
    p = Projected(q, k, v, log_f[..., None], None, i_pre[..., None])
    h, states = run_form("mlstm", p, tuple(state), chunk_size)
    return o * h.reshape(batch, x.shape[1], hid), states
