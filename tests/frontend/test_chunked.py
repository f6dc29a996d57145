"""Streaming-style chunked processing: a recurrent layer run chunk after chunk with its state
carried is one layer over the whole sequence, so batch and length stay symbolic however many
chunks another length makes (``frontend/chunks.py``).  Checked against torch eager at lengths
that make a different number of chunks (and a short last one), in the interpreter and in
onnxruntime; chunk loops that are *not* one recurrence keep the length fixed and say so."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc


class Chunked(nn.Module):
    def __init__(self, kind: str, layer: str = "gru", chunk: int = 4) -> None:
        super().__init__()
        self.kind, self.chunk, self.lstm = kind, chunk, layer == "lstm"
        self.proj = nn.Linear(5, 8)
        rnn = nn.GRU if layer == "gru" else nn.LSTM
        self.rnn = rnn(8, 6, num_layers=2, batch_first=True)
        self.head = nn.Linear(6, 3)

    def pieces(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.kind == "split":
            return list(x.split(self.chunk, dim=1))
        if self.kind == "range":
            return [x[:, i:i + self.chunk] for i in range(0, x.shape[1], self.chunk)]
        return list(x.chunk(math.ceil(x.shape[1] / self.chunk), dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.tanh(self.proj(x))
        state = None
        outs = []
        for piece in self.pieces(x):
            out, state = self.rnn(piece, state)
            outs.append(out)
        h = state[0] if self.lstm else state
        return self.head(torch.cat(outs, dim=1)), h[-1]


@pytest.mark.parametrize("layer", ["gru", "lstm"])
@pytest.mark.parametrize("kind", ["split", "range", "chunk"])
def test_a_layer_run_chunk_by_chunk_is_one_layer_over_any_length(kind: str, layer: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = Chunked(kind, layer).eval()
    program = trace_quietly(model, (torch.randn(2, 10, 5),))
    assert program.graph.inputs[0][1].shape == ("B", "T", 5)
    assert len(program.rnn_nodes()) == 1
    for b, t in ((3, 17), (1, 3), (2, 8)):  # 5 chunks, one short one, exactly 2
        matches_torch(program, model, (torch.randn(b, t, 5),), tmp_path, f"{kind}_{layer}")


class ResetPerChunk(Chunked):
    """Each chunk starts from zero state: not one recurrence over the sequence."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.tanh(self.proj(x))
        return self.head(torch.cat([self.rnn(p)[0] for p in x.split(self.chunk, dim=1)], dim=1)), x[:, 0]


class BidirectionalChunks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(5, 6, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state, outs = None, []
        for piece in x.split(4, dim=1):
            out, state = self.rnn(piece, state)
            outs.append(out)
        return torch.cat(outs, dim=1)


@pytest.mark.parametrize("make", [lambda: ResetPerChunk("split"), BidirectionalChunks])
def test_chunk_loops_that_are_not_one_recurrence_keep_the_length_fixed_and_say_so(make, tmp_path) -> None:
    torch.manual_seed(0)
    model = make().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(model, (torch.randn(2, 10, 5),))
    assert [w for w in caught if "kept fewer dims symbolic" in str(w.message)]
    assert program.graph.inputs[0][1].shape[1] == 10
    assert len(program.rnn_nodes()) == 3  # one per chunk, as traced
    matches_torch(program, model, (torch.randn(4, 10, 5),), tmp_path, "not_merged")


class Halves(nn.Module):
    """A split whose size is computed from the length: two layers over the two halves."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.GRU(5, 6, batch_first=True), nn.GRU(5, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.split(x.size(1) // 2, dim=1)
        return torch.cat([self.a(first)[0], self.b(second)[0]], dim=1)


def test_a_split_by_a_size_computed_from_the_length_stays_symbolic(tmp_path) -> None:
    torch.manual_seed(0)
    model = Halves().eval()
    program = trace_quietly(model, (torch.randn(2, 10, 5),))
    assert program.graph.inputs[0][1].shape == ("B", "T", 5)
    matches_torch(program, model, (torch.randn(3, 16, 5),), tmp_path, "halves")


class ChunkIntoSteps(nn.Module):
    """SRU's CPU path: ``u.chunk(length)`` gives one piece per step, stepped by a Python loop."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(5, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 5]
        length = x.size(0)
        u, f = self.proj(x).chunk(2, dim=-1)
        us, fs = u.chunk(length), f.sigmoid().chunk(length)
        c, hs = torch.zeros_like(us[0]), []
        for t in range(length):
            c = us[t] + (c - us[t]) * fs[t]
            hs.append(c)
        return torch.cat(hs, 0)


def test_a_chunk_into_steps_rolls(tmp_path) -> None:
    torch.manual_seed(0)
    model = ChunkIntoSteps().eval()
    program = trace_quietly(model, (torch.randn(9, 2, 5),))
    assert program.graph.inputs[0][1].shape == ("T", "B", 5)
    matches_torch(program, model, (torch.randn(14, 3, 5),), tmp_path, "steps")
