"""``SLSTMLayer``: the xLSTM sLSTM cell as a layer users can train and rnnc can compile."""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnc.errors import UnsupportedError
from rnnc.kernels.layer import RnncLayer, maybe_param
from rnnc.kernels.slstm.cell import build_cell, check_heads
from rnnc.kernels.slstm.reference import reference


class SLSTMLayer(RnncLayer):
    """sLSTM over ``x[B, T, I]``; states (h, c, n, m), each ``[B, H]``.

    Initialisation: input weights ~ U(-1/√I, 1/√I), recurrent blocks ~ U(-1/√DH, 1/√DH),
    forget-gate bias spread over [3, 6] (a long initial memory, as xLSTM's power-law init),
    other biases zero.
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 1, forget_gate: str = "sigmoid",
                 bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        dh = check_heads(hidden_size, num_heads)
        if forget_gate not in ("sigmoid", "exp"):
            raise UnsupportedError(f"sLSTM forget_gate {forget_gate!r} is not supported; use 'sigmoid' or 'exp'")
        self.num_heads, self.forget_gate, self.has_bias = num_heads, forget_gate, bias
        maybe_param(self, "weight_ih", (4 * hidden_size, input_size))
        maybe_param(self, "weight_hh", (4, num_heads, dh, dh))
        maybe_param(self, "bias", (4 * hidden_size,) if bias else None)
        with torch.no_grad():
            self.weight_ih.uniform_(-1 / math.sqrt(input_size), 1 / math.sqrt(input_size))
            self.weight_hh.uniform_(-1 / math.sqrt(dh), 1 / math.sqrt(dh))
            if bias:
                self.bias.zero_()
                self.bias[hidden_size:2 * hidden_size] = torch.linspace(3.0, 6.0, hidden_size)

    def hparams(self) -> dict[str, Any]:
        return {"num_heads": self.num_heads, "forget_gate": self.forget_gate, "bias": self.has_bias}
