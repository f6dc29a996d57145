"""Scatters export as ONNX ScatterElements: a pointer-generator adds its attention into the
vocabulary distribution with ``scatter_add``.  Checked against torch in onnxruntime at a batch and
length not traced at, duplicate indices included (the add must accumulate)."""

from __future__ import annotations

import torch
from torch import nn

import rnnc
from rnnc.backends.onnx.runtime import StatefulSession
from rnnc.tolerances import assert_close


class CopyDistribution(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru, self.out = nn.GRU(6, 6, batch_first=True), nn.Linear(6, 20)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x)
        att = torch.softmax(h.sum(-1), dim=1)
        vocab = torch.softmax(self.out(h[:, -1]), -1)
        copied = vocab.scatter_add(1, ids, att) + torch.zeros_like(vocab).scatter(1, ids[:, :1], 0.5 * att[:, :1])
        return copied + torch.zeros_like(vocab).scatter_reduce(1, ids, att, reduce="amax")


def test_scatters_match_torch_in_onnxruntime(tmp_path) -> None:
    torch.manual_seed(0)
    model = CopyDistribution().eval()
    g = torch.Generator().manual_seed(1)
    program = rnnc.trace(model, (torch.randn(2, 7, 6, generator=g), torch.randint(0, 20, (2, 7), generator=g)))
    path = tmp_path / "copy.onnx"
    rnnc.export_onnx(program, path=path)
    x, ids = torch.randn(3, 30, 6, generator=g), torch.randint(0, 20, (3, 30), generator=g)  # 30 ids in 20: repeats
    with torch.no_grad():
        want = model(x, ids)
    (got,) = StatefulSession(str(path))(x, ids)
    assert_close(torch.from_numpy(got), want, backend="onnxruntime")
