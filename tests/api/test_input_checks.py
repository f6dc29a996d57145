"""Every runner refuses inputs the Program was not traced for, with one clear error.

Why: the native engine plans at the call's shapes; before it checked, a model traced with its
length fixed (a loop that stayed unrolled) ran on a longer input and returned the traced
length's output without a word."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnc
from rnnc.errors import UserInputError


class ConvGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.gru(torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2))[0] + y


@pytest.mark.parametrize("engine", ["default", "c", "interp"])
def test_a_fixed_length_is_enforced(engine: str) -> None:
    torch.manual_seed(0)
    model = ConvGRU().eval()
    example = (torch.randn(2, 12, 4), torch.randn(2, 12, 8))
    program = rnnc.trace(model, example, dynamic=[{0: "B"}, {0: "B"}])  # length fixed at 12
    run = {"default": lambda: rnnc.compile(program, example),  # the fastest engine: native here
           "c": lambda: rnnc.compile(program, example, backend="c"),
           "interp": lambda: program.run}[engine]()
    torch.testing.assert_close(run(*example), model(*example), rtol=1e-4, atol=1e-5)
    with pytest.raises(UserInputError, match=r"program expects f32\[B,12,4\]"):
        run(torch.randn(2, 20, 4), torch.randn(2, 20, 8))


def test_one_size_per_symbol_across_inputs() -> None:
    torch.manual_seed(0)
    model = ConvGRU().eval()
    program = rnnc.trace(model, (torch.randn(2, 12, 4), torch.randn(2, 12, 8)))
    with pytest.raises(UserInputError, match="has B = 3.*has B = 2"):
        program.run(torch.randn(2, 12, 4), torch.randn(3, 12, 8))
