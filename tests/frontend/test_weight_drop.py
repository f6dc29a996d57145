"""AWD-LSTM's weight drop: a wrapper sets the LSTM's ``weight_hh_l0`` from a raw parameter in
``forward`` (salesforce's ``WeightDrop`` calls ``module.forward``; fastai's ``WeightDropout``
clones the raw weight at eval and calls the module).  Traced, the layer converts with the weight
it holds at inference; the user's model is left exactly as it was; a weight set from the inputs
is refused by name.  Against torch eager at another batch and length."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UnsupportedError


class SalesforceWeightDrop(nn.Module):
    def __init__(self, module: nn.LSTM) -> None:
        super().__init__()
        self.module = module
        w = module.weight_hh_l0
        del module._parameters["weight_hh_l0"]
        module.register_parameter("weight_hh_l0_raw", nn.Parameter(w.data))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.module.weight_hh_l0_raw
        self.module.weight_hh_l0 = F.dropout(raw, p=0.5, training=self.training)
        return self.module.forward(x)[0]


class FastaiWeightDropout(nn.Module):
    def __init__(self, module: nn.LSTM) -> None:
        super().__init__()
        self.module = module
        w = module.weight_hh_l0
        delattr(module, "weight_hh_l0")
        self.register_parameter("weight_hh_l0_raw", nn.Parameter(w.data))
        module.weight_hh_l0 = w.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.weight_hh_l0_raw
        self.module.weight_hh_l0 = F.dropout(raw, p=0.5) if self.training else raw.clone()
        return self.module(x)[0]


class FromInputs(FastaiWeightDropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.module.weight_hh_l0 = self.weight_hh_l0_raw * x.mean()
        return self.module(x)[0]


def _state(model: nn.Module) -> dict[str, object]:
    """The layer's weights: kinds and values (each eager call of the fastai wrapper sets a fresh
    clone, so identities change with every run of the model, rnnc's or the user's)."""
    lstm = model.module
    held = {**lstm._parameters, "attr": lstm.__dict__.get("weight_hh_l0")}
    return {k: (type(v).__name__, None if v is None else v.detach().clone().tolist()) for k, v in held.items()}


@pytest.mark.parametrize("cls", [SalesforceWeightDrop, FastaiWeightDropout])
def test_a_weight_set_in_forward_from_a_raw_weight_traces(cls: type, tmp_path) -> None:
    torch.manual_seed(0)
    model = cls(nn.LSTM(4, 8, batch_first=True)).eval()
    model(torch.randn(2, 5, 4))  # eager first, as users do (salesforce's registers the weight then)
    before = _state(model)
    program = rnnc.trace(model, (torch.randn(2, 6, 4),))
    assert _state(model) == before  # the model is left as it was
    assert program.graph.inputs[0][1].shape == ("B", "T", 4)
    matches_torch(program, model, (torch.randn(3, 11, 4),), tmp_path, cls.__name__)


def test_a_weight_set_from_the_inputs_is_refused_and_no_proxy_is_left() -> None:
    model = FromInputs(nn.LSTM(4, 8, batch_first=True)).eval()
    with pytest.raises(UnsupportedError, match="weight_hh_l0 is set from the model's inputs"):
        rnnc.trace(model, (torch.randn(2, 6, 4),))
    # (what the model's own eager runs set stays: that is the model's doing, not the trace's)
    assert type(model.module.__dict__["weight_hh_l0"]) is torch.Tensor
