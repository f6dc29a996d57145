"""``GRULayer``: one GRU layer with torch.nn.GRU's parameter names (``weight_ih`` …)."""

from __future__ import annotations

from typing import Any

from rnnc.kernels.gru.cell import build_cell
from rnnc.kernels.gru.reference import reference
from rnnc.kernels.layer import RnncLayer, maybe_param, torch_rnn_init


class GRULayer(RnncLayer):
    """Single-layer, unidirectional GRU; ``forward(x[B, T, I], (h,)) -> (y, (h,))``.

    Weights are laid out exactly like ``nn.GRU``'s layer 0 (gate order r, z, n).
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        self.bias = bias
        maybe_param(self, "weight_ih", (3 * hidden_size, input_size))
        maybe_param(self, "weight_hh", (3 * hidden_size, hidden_size))
        maybe_param(self, "bias_ih", (3 * hidden_size,) if bias else None)
        maybe_param(self, "bias_hh", (3 * hidden_size,) if bias else None)
        torch_rnn_init(self, hidden_size)

    def hparams(self) -> dict[str, Any]:
        return {"bias": self.bias}
