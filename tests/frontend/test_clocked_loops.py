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
from rnnc.tolerances import assert_close


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


class Refine(nn.Module):
    """A fixed count of refinement steps after an encoder: no loop over time, though traced where
    the count is T, T + 1 or 2T (a clock's guess)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.enc, self.cell = nn.GRU(4, 8, batch_first=True), nn.GRUCell(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, h = self.enc(x)
        h, z = h[0], y.mean(1)
        for _ in range(self.steps):
            h = self.cell(z, h)
        return y * h[:, None]


@pytest.mark.parametrize("steps", [3, 4, 6])
def test_a_fixed_count_loop_with_the_dims_given_is_built_again_without_rolling(steps: int) -> None:
    """With ``dynamic=`` given, a wrong clock guess is built again without rolling (as the
    default dims are), not returned with a warning: wrong by 0.03 at T = 9 before (and at a
    count of T, before this session's clocks too)."""
    torch.manual_seed(0)
    model = Refine(steps).eval()
    program = trace_quietly(model, (torch.randn(2, 3, 4),), dynamic=[{0: "B", 1: "T"}])
    matches_torch(program, model, (torch.randn(3, 9, 4),))


class TwoLengths(nn.Module):
    """A decoder clocked by its second input's length T1 = 2T at the example."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.enc2 = nn.GRU(4, 8, batch_first=True), nn.GRU(4, 8, batch_first=True)
        self.cell, self.out = nn.GRUCell(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)[1][0] + self.enc2(y)[1][0]
        z = torch.zeros_like(h)
        outs = []
        for _ in range(y.size(1)):
            h = self.cell(z, h)
            z = torch.tanh(self.out(h))
            outs.append(z)
        return torch.stack(outs, 1)


def test_an_inputs_own_length_wins_over_a_multiple_of_another() -> None:
    """T1 = 6 = 2 * T at the example: the loop runs T1 (an input's own length), not 2T; a tie
    of the two dropped the clock and fixed T1."""
    torch.manual_seed(0)
    model = TwoLengths().eval()
    program = trace_quietly(model, (torch.randn(2, 3, 4), torch.randn(2, 6, 4)))
    assert program.graph.inputs[1][1].shape[1] == "T1"
    matches_torch(program, model, (torch.randn(3, 5, 4), torch.randn(3, 7, 4)))


def test_a_loop_one_step_shorter_than_the_length_is_right_at_length_one() -> None:
    """``range(T - 1)`` would run no step at T = 1, which no rnn backend takes: it is no clock
    (it rolled as one, and was wrong by 0.6 at T = 1, silently)."""
    torch.manual_seed(0)
    model = GreedyScaled(1, -1).eval()
    program = rnnc.trace(model, (torch.randint(0, 12, (2, 7)),))
    for b, n in ((3, 11), (2, 1)):
        x = torch.randint(0, 12, (b, n))
        try:
            got = program.run(x)
        except UserInputError:
            continue  # the length stayed the example's, and the Program says so
        with torch.no_grad():
            assert_close(got, model(x), backend="interp")
