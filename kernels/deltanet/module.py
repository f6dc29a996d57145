"""``DeltaNetLayer``: (Gated) DeltaNet as a recurrent layer users can train and rnnc can compile."""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnc.kernels.deltanet.cell import build_cell
from rnnc.kernels.deltanet.reference import reference
from rnnc.kernels.layer import RnncLayer, maybe_param
from rnnc.kernels.linattn import head_dims, init_decay


class DeltaNetLayer(RnncLayer):
    """DeltaNet over ``x[B, T, I]`` (``gated=True``: Gated DeltaNet); state S ``[B, NH, DK, DV]``.

    Initialisation: projections ~ N(0, 1/I), β bias 0 (β ≈ 0.5); gated: A ~ U(1, 16) as
    ``A_log = log A`` and the decay's bias so that softplus(b_a) ∈ [0.001, 0.1] (Mamba-2's
    initialisation of Δ), so α = exp(-A Δ) starts close to 1.
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 4, key_size: int | None = None,
                 gated: bool = False) -> None:
        super().__init__(input_size, hidden_size)
        dk, _ = head_dims(hidden_size, num_heads, key_size, "DeltaNet", hidden_size)
        self.num_heads, self.key_size, self.gated = num_heads, num_heads * dk, bool(gated)
        for p, rows in (("q", self.key_size), ("k", self.key_size), ("v", hidden_size), ("b", num_heads)):
            maybe_param(self, f"weight_{p}", (rows, input_size))
        maybe_param(self, "bias_b", (num_heads,))
        maybe_param(self, "A_log", (num_heads,) if gated else None)
        maybe_param(self, "weight_a", (num_heads, input_size) if gated else None)
        maybe_param(self, "bias_a", (num_heads,) if gated else None)
        maybe_param(self, "weight_g", (hidden_size, input_size) if gated else None)
        std = 1 / math.sqrt(input_size)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("weight_"):
                    p.normal_(0.0, std)
            self.bias_b.zero_()
            if gated:
                init_decay(self.A_log, self.bias_a)

    def hparams(self) -> dict[str, Any]:
        return {"num_heads": self.num_heads, "key_size": self.key_size, "gated": self.gated}

