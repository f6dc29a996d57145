"""TorchScript models traced without their optional inputs (Silero's state defaults to zeros)."""

from __future__ import annotations

import torch

import rnnc
from rnnc.frontend.silero import load_inner_model
from rnnc.tolerances import assert_close


def test_silero_without_state_input_uses_its_zero_default():
    inner = load_inner_model()
    program = rnnc.trace(inner, (torch.zeros(1, 576),))
    assert program.graph.input_names == ("x",)
    x = torch.randn(3, 576) * 0.1
    with torch.no_grad():
        ref = inner(x)
    for got, want in zip(program.run(x), ref, strict=True):
        assert_close(got, want)
