"""``MinLSTMLayer``: minLSTM (Feng et al. 2024) as a layer users can train and rnnc can compile."""

from __future__ import annotations

from typing import Any

from rnnc.kernels.layer import RnncLayer, maybe_param, torch_rnn_init
from rnnc.kernels.minlstm.cell import build_cell
from rnnc.kernels.minlstm.reference import reference


class MinLSTMLayer(RnncLayer):
    """minLSTM over ``x[B, T, I]``; state h ``[B, H]``. ``weight [3H, I]`` holds (f, i, h̃) rows.

    Initialisation: nn.Linear's U(-1/√I, 1/√I) for weight and bias.
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        self.has_bias = bias
        maybe_param(self, "weight", (3 * hidden_size, input_size))
        maybe_param(self, "bias", (3 * hidden_size,) if bias else None)
        torch_rnn_init(self, input_size)

    def hparams(self) -> dict[str, Any]:
        return {"bias": self.has_bias}
