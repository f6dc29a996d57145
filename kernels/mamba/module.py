"""``MambaS6Layer``: Mamba's S6 selective scan as a layer users can train and rnnc can compile."""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnc.errors import UserInputError
from rnnc.kernels.layer import RnncLayer, maybe_param
from rnnc.kernels.mamba.cell import build_cell, default_dt_rank
from rnnc.kernels.mamba.reference import reference


class MambaS6Layer(RnncLayer):
    """S6 over ``x[B, T, D]`` with ``hidden_size`` = N states per channel; y is ``[B, T, D]``.

    Initialisation as in Mamba: A_log = log(1..N) per channel (S4D-real), Δ's bias the inverse
    softplus of Δ ~ logU[dt_min, dt_max] (so the initial step sizes span two decades),
    W_dt ~ U(±R^-½), W_x like nn.Linear, D = 1.
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int = 16, dt_rank: int | None = None,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, dt_floor: float = 1e-4) -> None:
        super().__init__(input_size, hidden_size)
        d, n = input_size, hidden_size
        rank = default_dt_rank(d) if dt_rank is None else dt_rank
        if rank < 1 or not 0 < dt_min <= dt_max:
            raise UserInputError(f"Mamba S6 needs dt_rank >= 1 and 0 < dt_min <= dt_max, got dt_rank={rank}, "
                                 f"dt_min={dt_min}, dt_max={dt_max}")
        self.dt_rank = rank
        maybe_param(self, "weight_x", (rank + 2 * n, d))
        maybe_param(self, "weight_dt", (d, rank))
        maybe_param(self, "bias_dt", (d,))
        maybe_param(self, "A_log", (d, n))
        maybe_param(self, "D", (d,))
        with torch.no_grad():
            bound = 1 / math.sqrt(d)
            self.weight_x.uniform_(-bound, bound)
            self.weight_dt.uniform_(-rank**-0.5, rank**-0.5)
            dt = torch.exp(torch.rand(d) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp_min(dt_floor)
            self.bias_dt.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
            self.A_log.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).expand(d, n))
            self.D.fill_(1.0)

    def hparams(self) -> dict[str, Any]:
        return {"dt_rank": self.dt_rank}
