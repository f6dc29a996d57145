"""``nn.EmbeddingBag`` over fixed-size bags (multi-hot features per step, recommenders): the
rows gathered and reduced per bag, so it exports to ONNX and keeps batch and bag size symbolic;
ragged bags (offsets) run in the interpreter and ONNX export names the op.  Against torch eager."""

from __future__ import annotations

import pytest
import torch
from program_checks import matches_torch  # tests/program_checks.py
from torch import nn

import rnnc


class BagsPerStep(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(50, 6, mode=mode)
        self.gru = nn.GRU(6, 5, batch_first=True)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # [B, T, K] ids
        b, t, k = feats.shape
        e = self.bag(feats.reshape(b * t, k)).view(b, t, -1)
        return self.gru(e)[0]


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_fixed_size_bags_export_and_keep_sizes_symbolic(mode: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = BagsPerStep(mode).eval()
    program = rnnc.trace(model, (torch.randint(0, 50, (2, 6, 3)),))
    assert program.graph.inputs[0][1].shape[:2] == ("B", "T")
    matches_torch(program, model, (torch.randint(0, 50, (3, 9, 3)),), tmp_path, mode)


class RaggedBags(nn.Module):
    def __init__(self, mode: str, **kw: object) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(50, 6, mode=mode, **kw)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.bag(ids, offsets)


@pytest.mark.parametrize(("mode", "kw"), [("sum", {}), ("mean", {}), ("max", {}), ("mean", {"padding_idx": 3}),
                                          ("sum", {"include_last_offset": True})])
def test_ragged_bags_in_the_interpreter_and_onnxruntime(mode: str, kw: dict, tmp_path) -> None:
    """Bags of any sizes, an empty one among them (zeros, as in torch), ids and bags of other
    counts than traced."""
    torch.manual_seed(0)
    model = RaggedBags(mode, **kw).eval()
    program = rnnc.trace(model, (torch.randint(0, 50, (7,)), torch.tensor([0, 2, 3])),
                         dynamic=[{0: "N"}, {0: "B"}])
    ids = torch.randint(0, 50, (12,))
    ids[:3] = 3  # (the padding id, where there is one)
    for offsets in ([0, 3, 3, 8], [0, 5]):
        matches_torch(program, model, (ids, torch.tensor(offsets)), tmp_path, f"ragged_{mode}")
