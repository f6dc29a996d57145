"""Which dims ``trace`` keeps symbolic by itself, how it checks them, and what it leaves alone."""

from __future__ import annotations

import warnings

import pytest
import torch
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UserInputError
from rnnc.tolerances import assert_close


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.lstm = nn.LSTM(4, 8)  # seq-first: [T, B, F]
        self.bn = nn.BatchNorm1d(8)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y, _ = self.lstm(self.drop(x))
        return {"y": self.bn(y.permute(1, 2, 0)), "last": y[-1]}


def test_seq_first_batch_is_found_and_the_model_is_left_as_it_was() -> None:
    model = Tagger().train()
    running = model.bn.running_mean.clone()
    program = rnnc.trace(model, torch.randn(5, 2, 4))
    assert program.graph.inputs[0][1].shape == ("T", "B", 4)  # B by separability, not position
    assert [n for n, _ in program.graph.outputs] == ["output_y", "output_last"]
    assert model.training and model.drop.training and torch.equal(model.bn.running_mean, running)
    x = torch.randn(9, 3, 4)
    model.eval()
    with torch.no_grad():
        want = model(x)
    got = program.run(x)
    assert_close(got[0], want["y"])
    assert_close(got[1], want["last"])


class InlineScan(nn.Module):
    """A linear recurrence written with tensor ops in a Python loop (no step module)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.rand(6) * 0.9)
        self.proj = nn.Linear(3, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.proj(x)
        h = torch.zeros_like(u[:, 0])
        ys = []
        for t in range(x.size(1)):
            h = self.a * h + u[:, t]
            ys.append(h)
        return torch.stack(ys, dim=1)


def test_an_inline_scan_keeps_the_length_symbolic() -> None:
    model = InlineScan()
    program = rnnc.trace(model, torch.randn(2, 6, 3))
    assert program.graph.inputs[0][1].shape == ("B", "T", 3)
    x = torch.randn(4, 11, 3)
    with torch.no_grad():
        assert_close(program.run(x), model(x))


class PairwiseScan(InlineScan):
    """A loop over T - 1 steps reading steps t and t + 1: not one step repeated over T."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.proj(x)
        h = torch.zeros_like(u[:, 0])
        for t in range(x.size(1) - 1):
            h = self.a * h + u[:, t] * u[:, t + 1]
        return h


def test_a_loop_that_fixes_the_length_is_caught_and_said() -> None:
    model = PairwiseScan()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(model, torch.randn(2, 6, 3))
    said = " ".join(str(w.message) for w in caught)
    assert "kept fewer dims symbolic" in said and ("Python loop" in said or "loop over time stayed unrolled" in said)
    assert program.graph.inputs[0][1].shape == ("B", 6, 3)  # the batch stays free
    x = torch.randn(4, 6, 3)
    with torch.no_grad():
        assert_close(program.run(x), model(x))


class GatedCell(nn.Module):
    def __init__(self, n_in: int, n_hidden: int) -> None:
        super().__init__()
        self.gates = nn.Linear(n_in + n_hidden, 2 * n_hidden)
        self.norm = nn.LayerNorm(n_hidden)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        z, f = self.gates(torch.cat([x, h], dim=-1)).chunk(2, dim=-1)
        c = torch.sigmoid(f) * c + (1 - torch.sigmoid(f)) * torch.tanh(z)
        h = self.norm(c)
        return h, (h, c)


class CellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = GatedCell(5, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.size(0)
        state = (x.new_zeros(b, 7), x.new_zeros(b, 7))
        outs = []
        for t in range(x.size(1)):
            y, state = self.cell(x[:, t], state)
            outs.append(y)
        return torch.stack(outs, dim=1) + state[1].unsqueeze(1)


def test_a_user_cell_stepped_in_a_loop_is_one_rnn_node() -> None:
    model = CellLoop()
    program = trace_quietly(model, torch.randn(2, 6, 5))
    assert len(program.rnn_nodes()) == 1 and program.graph.inputs[0][1].shape == ("B", "T", 5)
    x = torch.randn(3, 11, 5)
    with torch.no_grad():
        assert_close(program.run(x), model(x))


class LayeredState(nn.Module):
    """An RL core's recurrent state passed in: ``h0, c0`` of ``[layers, B, H]`` with 2 layers."""

    def __init__(self) -> None:
        super().__init__()
        self.core = nn.LSTM(5, 8, num_layers=2)

    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y, (h, c) = self.core(x, (h0, c0))
        return y, h, c


def test_an_example_batch_equal_to_the_layer_count_keeps_the_batch() -> None:
    """Traced at batch 2 -- as many as the state's layers -- the layer dim is told apart from the
    batch dims of the same size, so the batch stays symbolic (it was silently fixed)."""
    torch.manual_seed(0)
    model = LayeredState().eval()
    program = trace_quietly(model, (torch.randn(6, 2, 5), torch.randn(2, 2, 8), torch.randn(2, 2, 8)))
    assert [t.shape for _, t in program.graph.inputs] == [("T", "B", 5), (2, "B", 8), (2, "B", 8)]
    inputs = (torch.randn(9, 5, 5), torch.randn(2, 5, 8), torch.randn(2, 5, 8))
    with torch.no_grad():
        want = model(*inputs)
    for g, w in zip(program.run(*inputs), want, strict=True):
        assert_close(g, w, backend="interp")


class Upsampled(nn.Module):
    """WaveRNN's conditioning: a cell stepped over samples ``x [B, 4F]`` reading frames ``c [B, F,
    3]`` repeated 4 times -- x's length runs only at 4x c's."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 8)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = c.repeat_interleave(4, dim=1)
        h = x.new_zeros(x.size(0), 8)
        ys = []
        for t in range(x.size(1)):
            h = self.cell(torch.cat([x[:, t:t + 1], c[:, t]], dim=1), h)
            ys.append(h)
        return torch.stack(ys, 1)


def test_a_length_tied_to_another_by_a_factor_is_named_as_its_multiple(tmp_path) -> None:
    torch.manual_seed(0)
    model = Upsampled().eval()
    program = trace_quietly(model, (torch.randn(2, 24), torch.randn(2, 6, 3)))
    assert [t.shape for _, t in program.graph.inputs] == [("B", "4*T"), ("B", "T", 3)]
    for b, t in ((3, 10), (1, 3)):
        matches_torch(program, model, (torch.randn(b, 4 * t), torch.randn(b, t, 3)), tmp_path, "tied")
    with pytest.raises(UserInputError, match=r"input x has 4\*T = 41, but 40 at the sizes of the other"):
        program.run(torch.randn(3, 41), torch.randn(3, 10, 3))


class Context(nn.Module):
    """Frames with one frame of context either side, cropped after upsampling and joined to the
    samples (fatchord's WaveRNN): samples = 4 x (frames - 2), exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = c.repeat_interleave(4, dim=1)[:, 4:-4]
        return self.rnn(torch.cat([x.unsqueeze(2), c], dim=2))[0]


def test_a_length_tied_with_an_offset_is_named_as_its_multiple_plus_a_constant(tmp_path) -> None:
    torch.manual_seed(0)
    model = Context().eval()
    program = trace_quietly(model, (torch.randn(2, 24), torch.randn(2, 8, 3)))
    assert [t.shape for _, t in program.graph.inputs] == [("B", "4*T-8"), ("B", "T", 3)]
    for b, t in ((3, 13), (1, 3)):
        matches_torch(program, model, (torch.randn(b, 4 * t - 8), torch.randn(b, t, 3)), tmp_path, "offset")


class Paired(nn.Module):
    """Audio and its frame features, each required by the other: the audio pooled by 4 is added
    to the frames -- neither length runs alone at another size."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(5, 6, batch_first=True)

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:  # [B, T, 5], [B, 4T]
        pooled = audio.view(audio.size(0), -1, 4).mean(2)
        return self.rnn(frames + pooled.unsqueeze(2))[0]


def test_two_lengths_required_together_are_one_symbol_and_its_multiple(tmp_path) -> None:
    torch.manual_seed(0)
    model = Paired().eval()
    program = trace_quietly(model, (torch.randn(2, 7, 5), torch.randn(2, 28)))
    assert [t.shape for _, t in program.graph.inputs] == [("B", "T", 5), ("B", "4*T")]
    for b, t in ((3, 11), (1, 2)):
        matches_torch(program, model, (torch.randn(b, t, 5), torch.randn(b, 4 * t)), tmp_path, "paired")


class Prompted(nn.Module):
    """A prompt ``q [B, K, 4]`` added to the first K frames of ``x [B, T, 4]``: K runs at any size
    up to T -- bounded by the length, tied to nothing (and never to the batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 6, batch_first=True)

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        k = q.size(1)
        return self.rnn(torch.cat([x[:, :k] + q, x[:, k:]], 1))[0]


def test_a_dim_bounded_by_a_length_is_not_tied_to_the_batch() -> None:
    torch.manual_seed(0)
    model = Prompted().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = rnnc.trace(model, (torch.randn(2, 5, 4), torch.randn(2, 3, 4)))
    assert [t.shape for _, t in program.graph.inputs] == [("B", "T", 4), ("B", 3, 4)]
    for b, t in ((3, 5), (1, 9)):
        matches_torch(program, model, (torch.randn(b, t, 4), torch.randn(b, 3, 4)))
