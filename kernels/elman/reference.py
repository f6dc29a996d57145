"""Plain-torch Elman RNN loop (torch.nn.RNN semantics, tanh or relu).

Equation (Elman 1990)::

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   act ∈ {tanh, relu}

State: ``h [B, H]``; ``y_t = h_t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnc.errors import UnsupportedError


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor],
              state: tuple[torch.Tensor, ...] | None = None, *, nonlinearity: str = "tanh",
              **hparams: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (h ``[B, H]``,))."""
    if nonlinearity not in ("tanh", "relu"):
        raise UnsupportedError(f"Elman nonlinearity {nonlinearity!r} is not supported; use 'tanh' or 'relu'")
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    w_ih, w_hh = params["weight_ih"], params["weight_hh"]
    b_ih, b_hh = params.get("bias_ih"), params.get("bias_hh")
    hid = w_hh.shape[0]
    batch = x.shape[0]
    h = x.new_zeros(batch, hid) if state is None else state[0]
    ys = []
    for t in range(x.shape[1]):
        h = act(F.linear(x[:, t], w_ih, b_ih) + F.linear(h, w_hh, b_hh))
        ys.append(h)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, hid)
    return y, (h,)
