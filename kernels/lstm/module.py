"""``LSTMLayer``: one LSTM layer with torch.nn.LSTM's parameter names (``weight_ih`` …)."""

from __future__ import annotations

from typing import Any

from rnnc.errors import UserInputError
from rnnc.kernels.layer import RnncLayer, maybe_param, torch_rnn_init
from rnnc.kernels.lstm.cell import build_cell
from rnnc.kernels.lstm.reference import reference


class LSTMLayer(RnncLayer):
    """Single-layer, unidirectional LSTM; ``forward(x[B, T, I], (h, c)) -> (y, (h, c))``.

    Its weights are laid out exactly like ``nn.LSTM``'s layer 0 (``weight_ih_l0`` ->
    ``weight_ih``), so one can be copied into the other.
    """

    _reference = staticmethod(reference)
    _build_cell = staticmethod(build_cell)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, proj_size: int = 0) -> None:
        super().__init__(input_size, hidden_size)
        if proj_size < 0 or proj_size >= hidden_size and proj_size != 0:
            raise UserInputError(f"LSTM proj_size must be 0 or between 1 and hidden_size-1 "
                                 f"({hidden_size - 1}), got {proj_size}")
        self.bias, self.proj_size = bias, proj_size
        out = proj_size or hidden_size
        maybe_param(self, "weight_ih", (4 * hidden_size, input_size))
        maybe_param(self, "weight_hh", (4 * hidden_size, out))
        maybe_param(self, "bias_ih", (4 * hidden_size,) if bias else None)
        maybe_param(self, "bias_hh", (4 * hidden_size,) if bias else None)
        maybe_param(self, "weight_hr", (proj_size, hidden_size) if proj_size else None)
        torch_rnn_init(self, hidden_size)

    def hparams(self) -> dict[str, Any]:
        return {"bias": self.bias, "proj_size": self.proj_size}
