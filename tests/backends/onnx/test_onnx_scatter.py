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


class OneHotScatters(nn.Module):
    """LAS's ``CreateOnehotVariable``: ``zeros(B, T, V).scatter_(-1, ids, 1)`` (a scalar value),
    and the legacy ``reduce=`` spellings of a scatter."""

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        onehot = torch.zeros(ids.size(0), ids.size(1), 6).scatter_(-1, ids.unsqueeze(2), 1)
        counts = torch.zeros(ids.size(0), 6, dtype=torch.long).scatter_(1, ids, 1, reduce="add")
        added = torch.ones_like(x).scatter(2, ids.unsqueeze(2), x[..., :1], reduce="add")
        scaled = torch.ones_like(x).scatter(2, ids.unsqueeze(2), 3.0, reduce="multiply")
        return x + onehot + added + scaled, counts


def test_scalar_and_reduce_scatters_match_torch_in_onnxruntime(tmp_path) -> None:
    """``aten.scatter.value`` had no ONNX rendering (export refused it)."""
    model = OneHotScatters().eval()
    g = torch.Generator().manual_seed(1)
    program = rnnc.trace(model, (torch.randn(2, 7, 6, generator=g), torch.randint(0, 6, (2, 7), generator=g)))
    path = tmp_path / "onehot.onnx"
    rnnc.export_onnx(program, path=path)
    x, ids = torch.randn(3, 11, 6, generator=g), torch.randint(0, 6, (3, 11), generator=g)
    with torch.no_grad():
        want = model(x, ids)
    got = StatefulSession(str(path))(x, ids)
    for g_, w in zip(got, want, strict=True):
        assert torch.from_numpy(g_).dtype == w.dtype
        assert_close(torch.from_numpy(g_), w, backend="onnxruntime")
