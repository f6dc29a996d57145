"""One-channel strided conv1d with a kernel of whole strides exports as one MatMul over blocks
(``backends/onnx/framed.py``); checked against torch's conv1d, float and weight-only int8."""

from __future__ import annotations

import pytest
import torch
from onnx_test_helpers import run_ort

import rnnc
from rnnc.tolerances import assert_close


class Front(torch.nn.Module):
    """An STFT-like front end: reflect pad, one-channel strided conv, a magnitude."""

    def __init__(self, filters: int, kernel: int, stride: int, bias: bool, padding: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(1, filters, kernel, stride=stride, bias=bias, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(1)).abs()


def _ops(model) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize(("kernel", "stride", "length", "bias"),
                         [(256, 128, 640, False), (64, 16, 160, True), (32, 32, 96, True), (48, 12, 48, False)])
@pytest.mark.parametrize("batch", [1, 3])
def test_framed_conv_matches_torch(kernel, stride, length, bias, batch):
    model = Front(10, kernel, stride, bias).eval()
    x = torch.randn(batch, length, generator=torch.Generator().manual_seed(1))
    program = rnnc.trace(model, (x,), dynamic={"x": {0: "B"}})
    proto = rnnc.export_onnx(program)
    assert "Conv" not in _ops(proto) and "MatMul" in _ops(proto)
    with torch.no_grad():
        assert_close(run_ort(proto, x)[0], model(x), "float32", "onnxruntime")
    q = rnnc.quantize(program, [x], "w8", progress=False)  # weight-only int8: the same form on int8 codes
    qproto = q.export_onnx()
    assert "Conv" not in _ops(qproto)
    assert_close(run_ort(qproto, x)[0], q.run(x), "int8", "onnxruntime")


@pytest.mark.parametrize(("kernel", "stride", "length", "padding"),
                         [(30, 16, 160, 0), (64, 16, 150, 0), (64, 16, 160, 8), (64, 1, 160, 0)])
def test_convs_outside_the_form_stay_conv(kernel, stride, length, padding):
    # kernel not whole strides / ragged length / padding / stride 1: ONNX's Conv as before
    model = Front(6, kernel, stride, True, padding).eval()
    x = torch.randn(2, length, generator=torch.Generator().manual_seed(2))
    proto = rnnc.export_onnx(rnnc.trace(model, (x,), dynamic={"x": {0: "B"}}))
    assert "Conv" in _ops(proto)
    with torch.no_grad():
        assert_close(run_ort(proto, x)[0], model(x), "float32", "onnxruntime")
