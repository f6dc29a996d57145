"""``ElmanLayer``: one Elman RNN layer with torch.nn.RNN's parameter names (``weight_ih`` …)."""

from __future__ import annotations

from typing import Any

from rnnc.errors import UnsupportedError
from rnnc.kernels.elman.cell import build_cell
from rnnc.kernels.elman.reference import reference
from rnnc.kernels.layer import RnncLayer, maybe_param, torch_rnn_init


class ElmanLayer(RnncLayer):
    """Single-layer, unidirectional Elman RNN (tanh or relu); ``forward(x, (h,)) -> (y, (h,))``."""

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        if nonlinearity not in ("tanh", "relu"):
            raise UnsupportedError(f"Elman nonlinearity {nonlinearity!r} is not supported; use 'tanh' or 'relu'")
        self.nonlinearity, self.bias = nonlinearity, bias
        maybe_param(self, "weight_ih", (hidden_size, input_size))
        maybe_param(self, "weight_hh", (hidden_size, hidden_size))
        maybe_param(self, "bias_ih", (hidden_size,) if bias else None)
        maybe_param(self, "bias_hh", (hidden_size,) if bias else None)
        torch_rnn_init(self, hidden_size)

    def hparams(self) -> dict[str, Any]:
        return {"nonlinearity": self.nonlinearity, "bias": self.bias}
