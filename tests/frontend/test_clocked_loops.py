"""Loops that read no step of their input -- a pointer network feeding back the position it
chose, a greedy decoder feeding back its token, for as many steps as the input is long -- roll
into one rnn node over the input's length (``scan_match.clocked``), so batch and length stay
symbolic.  Checked against torch eager at other sizes, in the interpreter and onnxruntime."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UserInputError


class Pointer(nn.Module):
    """Encode the points, then point at one per step (masking those taken), feeding back the
    chosen point's encoding; returns the scores and the chosen positions."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(2, 16)
        self.encoder = nn.GRU(16, 16, batch_first=True)
        self.decoder = nn.GRUCell(16, 16)
        self.query = nn.Linear(16, 16, bias=False)
        self.start = nn.Parameter(torch.randn(16))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = points.shape
        keys = self.embed(points)
        enc, h = self.encoder(keys)
        h = h[0]
        inp = self.start.unsqueeze(0).expand(b, -1)
        taken = torch.zeros(b, n)
        scores, chosen = [], []
        for _ in range(n):
            h = self.decoder(inp, h)
            s = torch.bmm(enc, self.query(h).unsqueeze(2)).squeeze(2) - 1e4 * taken
            idx = s.argmax(1)
            taken = taken + F.one_hot(idx, n).float()
            inp = keys.gather(1, idx.view(b, 1, 1).expand(-1, 1, keys.size(2))).squeeze(1)
            scores.append(F.log_softmax(s, 1))
            chosen.append(idx)
        return torch.stack(scores, 1), torch.stack(chosen, 1)


class Greedy(nn.Module):
    """A decoder that runs as many steps as its source is long, each fed its last argmax token."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(12, 8)
        self.enc = nn.LSTM(8, 10, batch_first=True)
        self.cell = nn.LSTMCell(8, 10)
        self.out = nn.Linear(10, 12)

    def forward(self, src: torch.Tensor) -> torch.Tensor:  # [B, T] token ids
        _, (h, c) = self.enc(self.emb(src))
        h, c = h[0], c[0]
        tok = torch.zeros(src.size(0), dtype=torch.long)
        logits = []
        for _ in range(src.size(1)):
            h, c = self.cell(self.emb(tok), (h, c))
            step = self.out(h)
            tok = step.argmax(-1)
            logits.append(step)
        return torch.stack(logits, 1)


def test_a_pointer_network_keeps_batch_and_length(tmp_path) -> None:
    torch.manual_seed(0)
    model = Pointer().eval()
    program = trace_quietly(model, (torch.rand(2, 9, 2),))
    assert program.graph.inputs[0][1].shape == ("B", "T", 2)
    assert len(program.rnn_nodes()) == 2  # the encoder and the rolled decoder loop
    for b, n in ((3, 14), (1, 3)):
        matches_torch(program, model, (torch.rand(b, n, 2),), tmp_path, "pointer")


class GreedyScaled(Greedy):
    """The greedy decoder of bentrevett's seq2seq tutorials at inference: ``max_len`` a multiple
    of the source length, or one step more."""

    def __init__(self, scale: int, extra: int) -> None:
        super().__init__()
        self.scale, self.extra = scale, extra

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        _, (h, c) = self.enc(self.emb(src))
        h, c = h[0], c[0]
        tok = torch.zeros(src.size(0), dtype=torch.long)
        logits = []
        for _ in range(src.size(1) * self.scale + self.extra):
            h, c = self.cell(self.emb(tok), (h, c))
            step = self.out(h)
            tok = step.argmax(-1)
            logits.append(step)
        return torch.stack(logits, 1)


@pytest.mark.parametrize("make", [Greedy, lambda: GreedyScaled(2, 0), lambda: GreedyScaled(1, 1)],
                         ids=["T", "2T", "T+1"])
def test_a_greedy_decoder_over_the_source_length_keeps_batch_and_length(make, tmp_path) -> None:
    """``range(src.size(1) * 2)`` stayed unrolled (T fixed, with a generic hint) before."""
    torch.manual_seed(0)
    model = make().eval()
    program = trace_quietly(model, (torch.randint(0, 12, (2, 7)),))
    assert program.graph.inputs[0][1].shape == ("B", "T")
    assert len(program.rnn_nodes()) == 2  # the encoder and the rolled decoder loop
    for b, n in ((3, 11), (2, 3), (1, 1)):
        matches_torch(program, model, (torch.randint(0, 12, (b, n)),), tmp_path, "greedy")


class SharedStack(nn.Module):
    """One layer applied 5 times -- no loop over time, though traced at a length of 5."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(6, 6, batch_first=True)
        self.layer = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rnn(x)[0]
        for _ in range(5):
            y = torch.tanh(self.layer(y))
        return y


def test_a_shared_layer_applied_as_often_as_the_example_is_long_is_no_loop_over_time() -> None:
    torch.manual_seed(0)
    model = SharedStack().eval()
    program = rnnc.trace(model, (torch.randn(2, 5, 6),))
    assert program.graph.inputs[0][1].shape == ("B", "T", 6)
    matches_torch(program, model, (torch.randn(3, 8, 6),))


class HalfSteps(nn.Module):
    """A decoder running ``(T + 1) // 2`` steps (a reduction factor of 2) that attends over a
    memory of its own free length S -- traced where S equals the step count, so the memory's
    length looks like the loop's clock."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(8, 8)
        self.inp = nn.Linear(3, 8)

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x.mean(1)))
        outs = []
        for _ in range((x.size(1) + 1) // 2):
            att = torch.softmax(torch.bmm(mem, h.unsqueeze(2)).squeeze(2), 1)
            h = self.cell(torch.bmm(att.unsqueeze(1), mem).squeeze(1), h)
            outs.append(h)
        return torch.stack(outs, 1)


def test_a_loop_clocked_by_another_length_is_never_silently_wrong() -> None:
    """The check grows each symbol alone where a loop rolled by its clock: the guess (the
    memory's length) is caught and the trace says what it kept fixed."""
    torch.manual_seed(0)
    model = HalfSteps().eval()
    with pytest.warns(UserWarning, match="rnnc.trace"):
        program = rnnc.trace(model, (torch.randn(2, 10, 3), torch.randn(2, 5, 8)))
    for b, t, s in ((2, 10, 5), (3, 10, 7), (4, 10, 11)):
        inputs = (torch.randn(b, t, 3), torch.randn(b, s, 8))
        matches_torch(program, model, inputs)
    with pytest.raises(UserInputError):  # the step count's length stayed the example's, and says so
        program.run(torch.randn(4, 20, 3), torch.randn(4, 10, 8))
