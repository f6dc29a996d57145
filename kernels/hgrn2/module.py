"""``HGRN2Layer``: HGRN2 as a recurrent layer users can train and rnnc can compile."""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnc.kernels.hgrn2.cell import build_cell, check_lower_bound
from rnnc.kernels.hgrn2.reference import reference
from rnnc.kernels.layer import RnncLayer, maybe_param
from rnnc.kernels.linattn import head_dims


class HGRN2Layer(RnncLayer):
    """HGRN2 over ``x[B, T, I]``; state S ``[B, NH, DK, DV]`` (DK = key_size / NH, default DV).

    Initialisation: projections ~ N(0, 1/I); forget-gate bias ~ U(1, 4) (σ from 0.73 to 0.98:
    long memory at start, on top of the lower bound).
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, key_size: int | None = None,
                 lower_bound: float = 0.0) -> None:
        super().__init__(input_size, hidden_size)
        check_lower_bound(lower_bound)
        dk, _ = head_dims(hidden_size, num_heads, key_size, "HGRN2", hidden_size)
        self.num_heads, self.key_size, self.lower_bound = num_heads, num_heads * dk, float(lower_bound)
        for p, rows in (("f", self.key_size), ("q", self.key_size), ("i", hidden_size)):
            maybe_param(self, f"weight_{p}", (rows, input_size))
        maybe_param(self, "bias_f", (self.key_size,))
        with torch.no_grad():
            for p in ("weight_f", "weight_q", "weight_i"):
                getattr(self, p).normal_(0.0, 1 / math.sqrt(input_size))
            self.bias_f.uniform_(1.0, 4.0)

    def hparams(self) -> dict[str, Any]:
        return {"num_heads": self.num_heads, "key_size": self.key_size, "lower_bound": self.lower_bound}
