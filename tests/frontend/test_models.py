"""Whole models: the non-recurrent ops around the recurrent layers."""

from __future__ import annotations

import torch
from torch import nn

from rnnc.frontend import trace
from rnnc.tolerances import assert_close


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.lstm = nn.LSTM(16, 32, num_layers=2, bidirectional=True, batch_first=True, dropout=0.1)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(64, 7)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.emb(tokens))
        return torch.log_softmax(self.out(self.drop(y)), dim=-1)


class ConvGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 12, kernel_size=3, padding=1)
        self.act = nn.GELU()
        self.gru = nn.GRU(12, 24, batch_first=True)
        self.norm = nn.LayerNorm(24)
        self.head = nn.Linear(24 + 12, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.act(self.conv(x.transpose(1, 2))).permute(0, 2, 1)
        y, h = self.gru(feats)
        z = torch.cat([self.norm(y), feats], dim=-1)
        return self.head(z) * 0.5 - 1.0, torch.stack([h.squeeze(0), torch.sigmoid(z[:, -1, :24])], dim=1).sum(1)


def _compare(model: nn.Module, example: torch.Tensor, inputs: torch.Tensor) -> None:
    model.eval()
    program = trace(model, example)
    got, want = program.run(inputs), model(inputs)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,),
                    strict=True):
        assert_close(g, w)


def test_embedding_lstm_linear() -> None:
    torch.manual_seed(0)
    _compare(Tagger(), torch.randint(0, 50, (2, 5)), torch.randint(0, 50, (3, 11)))


def test_conv_gru_layernorm_linear() -> None:
    torch.manual_seed(0)
    _compare(ConvGRU(), torch.randn(2, 6, 3), torch.randn(4, 13, 3))
