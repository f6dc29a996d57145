"""``MLSTMLayer``: the xLSTM mLSTM cell as a layer users can train and rnnc can compile."""

from __future__ import annotations

import math
from typing import Any

import torch

from rnnc.errors import UnsupportedError
from rnnc.kernels.layer import RnncLayer, maybe_param
from rnnc.kernels.mlstm.cell import build_cell
from rnnc.kernels.mlstm.reference import reference
from rnnc.kernels.slstm.cell import check_heads


class MLSTMLayer(RnncLayer):
    """mLSTM over ``x[B, T, I]``; states C ``[B, NH, DH, DH]``, n ``[B, NH, DH]``, m ``[B, NH]``.

    Initialisation: projections ~ N(0, 1/I) (unit-variance outputs), input-gate weights
    small with bias -10 as in xLSTM (new writes start faint), forget-gate bias spread over
    [3, 6] (long memory at start), output-gate bias zero.
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, num_heads: int = 1, forget_gate: str = "sigmoid",
                 bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        check_heads(hidden_size, num_heads, "mLSTM")
        if forget_gate not in ("sigmoid", "exp"):
            raise UnsupportedError(f"mLSTM forget_gate {forget_gate!r} is not supported; use 'sigmoid' or 'exp'")
        self.num_heads, self.forget_gate, self.has_bias = num_heads, forget_gate, bias
        for p in "qkv":
            maybe_param(self, f"weight_{p}", (hidden_size, input_size))
        maybe_param(self, "weight_i", (num_heads, input_size))
        maybe_param(self, "bias_i", (num_heads,) if bias else None)
        maybe_param(self, "weight_f", (num_heads, input_size))
        maybe_param(self, "bias_f", (num_heads,) if bias else None)
        maybe_param(self, "weight_o", (hidden_size, input_size))
        maybe_param(self, "bias_o", (hidden_size,) if bias else None)
        std = 1 / math.sqrt(input_size)
        with torch.no_grad():
            for p in ("weight_q", "weight_k", "weight_v", "weight_o"):
                getattr(self, p).normal_(0.0, std)
            self.weight_i.normal_(0.0, 0.1 * std)
            self.weight_f.normal_(0.0, 0.1 * std)
            if bias:
                self.bias_i.fill_(-10.0)
                self.bias_f.copy_(torch.linspace(3.0, 6.0, num_heads))
                self.bias_o.zero_()

    def hparams(self) -> dict[str, Any]:
        return {"num_heads": self.num_heads, "forget_gate": self.forget_gate, "bias": self.has_bias}
