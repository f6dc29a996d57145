"""Every registered rnnc cell module traces into one rnn node and the interpreter matches the module."""

from __future__ import annotations

import pytest
import torch

import rnnc
from rnnc.kernels import CELLS
from rnnc.tolerances import assert_close


@pytest.mark.parametrize("name", list(CELLS))
def test_rnnc_layer_traces_and_runs_other_lengths(name):
    torch.manual_seed(0)
    layer = CELLS[name].load_module_class()(6, 8).eval()
    program = rnnc.trace(layer, (torch.randn(2, 5, 6),))
    assert [n.op for n in program.graph.nodes].count("rnn") == 1
    assert program.rnn_nodes()[0].attr("cells")[0].kind == name
    x = torch.randn(3, 9, 6)  # other batch and length than traced
    with torch.no_grad():
        y_ref, states_ref = layer(x)
    out = program.run(x)
    assert_close(out[0], y_ref, msg=f"{name} y")
    for got, ref in zip(out[1:], states_ref, strict=True):
        assert_close(got, ref, msg=f"{name} state")


def test_rnnc_layer_inside_a_model():
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Linear(4, 6)
            self.rnn = CELLS["mingru"].load_module_class()(6, 8)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, x):
            y, _ = self.rnn(torch.relu(self.inp(x)))
            return self.head(y[:, -1])

    net = Net().eval()
    program = rnnc.trace(net, (torch.randn(2, 5, 4),))
    x = torch.randn(3, 11, 4)
    with torch.no_grad():
        assert_close(program.run(x), net(x))
