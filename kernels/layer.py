"""The protocol every rnnc cell module follows, written once.

The frontend recognises an rnnc cell module by ``rnnc_layer() -> (Cell, weights)``; the
weights are the module's parameters, detached and keyed by the cell's IR param names (which
are the module's own parameter names, so a trained module maps onto the IR without copying
or renaming).  ``forward`` runs the cell's plain-torch reference, so the module users train
and the IR the compiler renders share one definition of the maths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rnnc.ir import Cell, dtype_of_torch


class RnncLayer(nn.Module):
    """Base of the rnnc layer modules: ``forward(x[B, T, I], state) -> (y, states)``."""

    #: the cell's reference function and IR builder; set by each subclass
    _reference: Callable[..., Any]
    _build_cell: Callable[..., Cell]

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    def hparams(self) -> dict[str, Any]:
        """Keyword arguments shared by the reference and ``build_cell`` (subclasses extend)."""
        return {}

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        params = dict(self.named_parameters())
        return self._reference(x, params, state, **self.hparams())

    def rnnc_layer(self) -> tuple[Cell, dict[str, torch.Tensor]]:
        """The cell IR and its detached weights keyed by IR param names."""
        params = dict(self.named_parameters())
        dtype = dtype_of_torch(next(iter(params.values())).dtype)
        cell = self._build_cell(self.input_size, self.hidden_size, dtype=dtype, **self.hparams())
        return cell, {name: params[name].detach() for name in cell.param_names}

    def extra_repr(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.hparams().items())
        return f"{self.input_size}, {self.hidden_size}{extra}"


def torch_rnn_init(module: nn.Module, hidden_size: int) -> None:
    """torch.nn.RNN's initialisation: every parameter ~ U(-1/√H, 1/√H)."""
    bound = hidden_size ** -0.5
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-bound, bound)


def maybe_param(module: nn.Module, name: str, shape: tuple[int, ...] | None) -> None:
    """Register ``name`` as an (uninitialised) parameter, or as absent when ``shape`` is None."""
    module.register_parameter(name, nn.Parameter(torch.empty(shape)) if shape is not None else None)
