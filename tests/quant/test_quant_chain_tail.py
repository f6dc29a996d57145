"""A static int8 conv chain that ends in a recurrent cell (Silero's encoder.3 -> LSTM): the last
conv writes the cell projection's codes (QLinearConv) and the ReLU becomes one uint8 Clip of them.

References: the quantized IR in the interpreter (what the ONNX must compute, to one code of the
requantisation) and the fp32 torch model.
"""

from __future__ import annotations

import pytest
import torch
from quant_helpers import op_types, ort_run

import rnnc
from rnnc.tolerances import assert_close


class ConvLstm(torch.nn.Module):
    """conv -> relu -> conv (to one frame) -> relu -> squeeze/unsqueeze -> LSTM -> head."""

    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv1d(6, 16, 3, padding=1)
        self.c2 = torch.nn.Conv1d(16, 24, 8)
        self.lstm = torch.nn.LSTM(24, 16, batch_first=True, bidirectional=bidirectional)
        self.head = torch.nn.Linear(16 * (2 if bidirectional else 1), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.c2(torch.relu(self.c1(x)))).squeeze(2).unsqueeze(1)
        return self.head(self.lstm(z)[0][:, 0])


def _data(seed: int) -> torch.Tensor:
    return torch.randn(5, 6, 8, generator=torch.Generator().manual_seed(seed))


def test_conv_chain_tail_feeds_the_cell_as_codes():
    model = ConvLstm().eval()
    program = rnnc.trace(model, (_data(0),))
    q = rnnc.quantize(program, [_data(0)], "w8a8", "none", progress=False, static=True)
    onnx_model = q.export_onnx()
    ops = [n.op_type for n in onnx_model.graph.node]
    assert ops.count("QLinearConv") == 2 and "ConvInteger" not in ops
    # the tail's ReLU codes (zero point 0) reach the projection's integer matmul as codes: the export's
    # DequantizeLinear -> QuantizeLinear (zero point 128) round trip became one uint8 Clip (peephole.py)
    assert "DequantizeLinear" not in ops and ops.count("Clip") == 1
    assert "Relu" not in ops
    x = _data(1)
    got = torch.from_numpy(ort_run(onnx_model, x)[0])
    assert_close(got, q.run(x), dtype="int8chain", backend="onnxruntime")
    with torch.no_grad():
        ref = model(x)
    assert float((got - ref).norm() / ref.norm()) < 0.05


def test_no_tail_for_two_directions_or_dynamic_cells():
    """Both directions read x (two scales): the chain ends in float as before; so does a dynamic cell."""
    for model, options in ((ConvLstm(bidirectional=True).eval(), {"static": True}), (ConvLstm().eval(), {})):
        program = rnnc.trace(model, (_data(0),))
        q = rnnc.quantize(program, [_data(0)], "w8a8", "none", progress=False, **options)
        onnx_model = q.export_onnx()
        assert "DequantizeLinear" not in op_types(onnx_model.graph)
        x = _data(2)
        assert_close(torch.from_numpy(ort_run(onnx_model, x)[0]), q.run(x), dtype="int8chain", backend="onnxruntime")


class Crnn(torch.nn.Module):
    """A CRNN front end: [B, T, F] -> conv -> relu -> conv -> relu -> [B, T, C] (transposes) -> GRU/LSTM."""

    def __init__(self, cell: type) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv1d(6, 16, 3, padding=1)
        self.c2 = torch.nn.Conv1d(16, 24, 3, padding=1)
        self.rnn = cell(24, 16, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.c2(torch.relu(self.c1(x.transpose(1, 2)))))
        return self.rnn(z.transpose(1, 2))[0]


@pytest.mark.parametrize("cell", [torch.nn.GRU, torch.nn.LSTM])
def test_chain_tail_through_transposes_moves_the_codes(cell):
    """[B, C, T] -> [B, T, C] (and time-major) transposes only move values: the codes move through
    them (uint8 Transposes) and reach the projection through one Clip, over all steps at once."""
    model = Crnn(cell).eval()
    x0 = torch.randn(4, 9, 6, generator=torch.Generator().manual_seed(0))
    program = rnnc.trace(model, (x0,))
    q = rnnc.quantize(program, [x0], "w8a8", "none", progress=False, static=True)
    onnx_model = q.export_onnx()
    ops = [n.op_type for n in onnx_model.graph.node]
    assert ops.count("QLinearConv") == 2 and "ConvInteger" not in ops
    assert "DequantizeLinear" not in ops and ops.count("Clip") == 1
    x = torch.randn(3, 9, 6, generator=torch.Generator().manual_seed(1))
    got = torch.from_numpy(ort_run(onnx_model, x)[0])
    assert_close(got, q.run(x), dtype="int8chain", backend="onnxruntime")
    with torch.no_grad():
        ref = model(x)
    assert float((got - ref).norm() / ref.norm()) < 0.05
