"""Adaptive average pooling over sizes the export cannot know (a per-frame CNN over images of
any height and width): rendered bin by bin with run-time bounds, checked against torch at sizes
the output size does not divide."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnc
from rnnc.backends.onnx.runtime import StatefulSession
from rnnc.tolerances import assert_close


class FrameCNN(nn.Module):
    def __init__(self, out: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(out)
        self.lstm = nn.LSTM(4 * out[0] * out[1], 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 3, H, W]
        b, t, c, h, w = x.shape
        f = self.pool(torch.relu(self.conv(x.view(b * t, c, h, w)))).view(b, t, -1)
        return self.lstm(f)[0]


@pytest.mark.parametrize("out", [(2, 2), (3, 1), (1, 1)])
def test_adaptive_pool_over_symbolic_sizes(out: tuple[int, int], tmp_path) -> None:
    torch.manual_seed(0)
    model = FrameCNN(out).eval()
    g = torch.Generator().manual_seed(1)
    program = rnnc.trace(model, (torch.randn(2, 4, 3, 12, 12, generator=g),))
    assert all(isinstance(d, str) for d in program.graph.inputs[0][1].shape[3:])  # H and W stay symbolic
    path = tmp_path / "frames.onnx"
    rnnc.export_onnx(program, path=path)
    for h, w in ((13, 7), (9, 17)):
        x = torch.randn(3, 5, 3, h, w, generator=g)
        with torch.no_grad():
            want = model(x)
        (got,) = StatefulSession(str(path))(x)
        assert_close(torch.from_numpy(got), want, backend="onnxruntime")
