"""``RetNetLayer``: multi-scale retention as a recurrent layer users can train and rnnc can compile."""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnc.kernels.layer import RnncLayer, maybe_param
from rnnc.kernels.linattn import half_key_size, head_dims
from rnnc.kernels.retnet.cell import build_cell
from rnnc.kernels.retnet.reference import paper_log_decay, reference


class RetNetLayer(RnncLayer):
    """Retention over ``x[B, T, I]``; state S ``[B, NH, DK, DV]``.

    Initialisation: projections ~ N(0, 1/I); decays at the paper's γ_h = 1 - 2^(-5-h).
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, key_size: int | None = None) -> None:
        super().__init__(input_size, hidden_size)
        dk, _ = head_dims(hidden_size, num_heads, key_size, "RetNet", half_key_size(hidden_size, num_heads))
        self.num_heads, self.key_size = num_heads, num_heads * dk
        for p, rows in (("q", self.key_size), ("k", self.key_size), ("v", hidden_size), ("g", hidden_size)):
            maybe_param(self, f"weight_{p}", (rows, input_size))
        maybe_param(self, "log_decay", (num_heads,))
        with torch.no_grad():
            for p in ("weight_q", "weight_k", "weight_v", "weight_g"):
                getattr(self, p).normal_(0.0, 1 / math.sqrt(input_size))
            self.log_decay.copy_(paper_log_decay(num_heads))

    def hparams(self) -> dict[str, Any]:
        return {"num_heads": self.num_heads, "key_size": self.key_size}
