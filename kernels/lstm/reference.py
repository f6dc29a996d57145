"""Plain-torch LSTM loop with torch.nn.LSTM's parameter names, layout and gate order.

Equations (Hochreiter & Schmidhuber 1997, in torch's form; gates i, f, g, o stacked in
``weight_ih [4H, I]`` / ``weight_hh [4H, P]``)::

    i, f, g, o = split(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
    h_t = σ(o) ⊙ tanh(c_t)            (then h_t = W_hr h_t when proj_size > 0)

States: ``h [B, P]`` (P = proj_size or H) and ``c [B, H]``; ``y_t = h_t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F


def reference(x: torch.Tensor, params: Mapping[str, torch.Tensor],
              state: tuple[torch.Tensor, ...] | None = None, **hparams: Any
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """x ``[B, T, I]`` -> (y ``[B, T, P]``, (h ``[B, P]``, c ``[B, H]``)); hparams are implied by params."""
    w_ih, w_hh = params["weight_ih"], params["weight_hh"]
    b_ih, b_hh, w_hr = params.get("bias_ih"), params.get("bias_hh"), params.get("weight_hr")
    hid = w_ih.shape[0] // 4
    out = w_hh.shape[1]
    batch = x.shape[0]
    if state is None:
        h = x.new_zeros(batch, out)
        c = x.new_zeros(batch, hid)
    else:
        h, c = state
    ys = []
    for t in range(x.shape[1]):
        i, f, g, o = (F.linear(x[:, t], w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if w_hr is not None:
            h = F.linear(h, w_hr)
        ys.append(h)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(batch, 0, out)
    return y, (h, c)
