"""``GLALayer``: gated linear attention as a recurrent layer users can train and rnnc can compile."""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnc.kernels.gla.cell import build_cell
from rnnc.kernels.gla.reference import reference
from rnnc.kernels.layer import RnncLayer, maybe_param
from rnnc.kernels.linattn import half_key_size, head_dims


class GLALayer(RnncLayer):
    """GLA over ``x[B, T, I]``; state S ``[B, NH, DK, DV]`` (DK = key_size / NH, DV = H / NH).

    Initialisation: projections ~ N(0, 1/I); gate bias ~ U(1, 4), so α = σ(·)^(1/16) starts
    between about 0.98 and 0.999 per channel (long memory at start).
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, key_size: int | None = None,
                 gate_rank: int = 16) -> None:
        super().__init__(input_size, hidden_size)
        dk, dv = head_dims(hidden_size, num_heads, key_size, "GLA", half_key_size(hidden_size, num_heads))
        self.num_heads, self.key_size, self.gate_rank = num_heads, num_heads * dk, gate_rank
        for p, rows in (("q", self.key_size), ("k", self.key_size), ("v", hidden_size), ("r", hidden_size)):
            maybe_param(self, f"weight_{p}", (rows, input_size))
        maybe_param(self, "weight_a1", (gate_rank, input_size))
        maybe_param(self, "weight_a2", (self.key_size, gate_rank))
        maybe_param(self, "bias_a", (self.key_size,))
        std = 1 / math.sqrt(input_size)
        with torch.no_grad():
            for p in ("weight_q", "weight_k", "weight_v", "weight_r", "weight_a1"):
                getattr(self, p).normal_(0.0, std)
            self.weight_a2.normal_(0.0, 1 / math.sqrt(gate_rank))
            self.bias_a.uniform_(1.0, 4.0)

    def hparams(self) -> dict[str, Any]:
        return {"num_heads": self.num_heads, "key_size": self.key_size, "gate_rank": self.gate_rank}
