"""Plain-torch GRU loop with torch.nn.GRU's names, ``[3H, I]`` layout and gate order (r, z, n).

Equations (Cho et al. 2014, torch's variant: the reset gate multiplies the recurrent term
*after* its matmul and bias)::

    r = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 - z) ⊙ n + z ⊙ h

State: ``h [B, H]``; ``y_t = h_t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor],
              state: tuple[torch.Tensor, ...] | None = None, **hparams: Any
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, H]``, (h ``[B, H]``,)); hparams are implied by params."""
    w_ih, w_hh = params["weight_ih"], params["weight_hh"]
    b_ih, b_hh = params.get("bias_ih"), params.get("bias_hh")
    hid = w_hh.shape[1]
    batch = x.shape[0]
    h = x.new_zeros(batch, hid) if state is None else state[0]
    ys = []
    for t in range(x.shape[1]):
        i_r, i_z, i_n = F.linear(x[:, t], w_ih, b_ih).chunk(3, dim=-1)
        h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h
        ys.append(h)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, hid)
    return y, (h,)
