"""``Mamba2Layer``: Mamba-2's SSD recurrence as a layer users can train and rnnc can compile."""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnc.kernels.layer import RnncLayer, maybe_param
from rnnc.kernels.linattn import init_decay
from rnnc.kernels.mamba2.cell import build_cell
from rnnc.kernels.mamba2.reference import reference


class Mamba2Layer(RnncLayer):
    """Mamba-2 SSD over ``x[B, T, I]``; state S ``[B, NH, N, P]`` (P = H / NH, N = state_size).

    Initialisation: projections ~ N(0, 1/I); A ~ U(1, 16), Δ = softplus(b_Δ) log-uniform in
    [1e-3, 1e-1] and D = 1, as in Mamba-2.
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, state_size: int = 16) -> None:
        super().__init__(input_size, hidden_size)
        self.num_heads, self.state_size = num_heads, state_size
        build_cell(input_size, hidden_size, num_heads=num_heads, state_size=state_size)  # checks the sizes
        for p, rows in (("x", hidden_size), ("z", hidden_size), ("B", state_size), ("C", state_size),
                        ("dt", num_heads)):
            maybe_param(self, f"weight_{p}", (rows, input_size))
        for p in ("bias_dt", "A_log", "D"):
            maybe_param(self, p, (num_heads,))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("weight_"):
                    p.normal_(0.0, 1 / math.sqrt(input_size))
            init_decay(self.A_log, self.bias_dt)
            self.D.fill_(1.0)

    def hparams(self) -> dict[str, Any]:
        return {"num_heads": self.num_heads, "state_size": self.state_size}
