"""Loops that step a cell or a recurrent layer among other ops roll into one rnn node.

Why: ``h = cell(x[:, t], h)`` alone merges into a layer, but decoders and forecasters put work
around the call -- an input projection, a context concatenated to the input, an output head, or
``nn.LSTM`` itself called once per step (DeepAR).  Each such step carries the cell's state
``[layers, B, H]`` with its batch second; attention reads a value as long as another input
(a state passed through unchanged); target token ids travel as float32 (exact below 2**24);
attention weights (as wide as a symbolic memory) are collected one step behind the reads.  The
loop must still roll over a symbolic T.  Checked against torch eager at a batch and length not
traced at, in the interpreter and in onnxruntime."""

from __future__ import annotations

import warnings

import pytest
import torch
from program_checks import matches_torch  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.tolerances import assert_close


class ProjectedInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin, self.cell = nn.Linear(8, 8), nn.GRUCell(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.size(0), 16)
        outs = []
        for t in range(x.size(1)):
            h = self.cell(self.lin(x[:, t]), h)
            outs.append(h)
        return torch.stack(outs, dim=1)


class ContextInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell, self.head = nn.LSTMCell(8 + 4, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), 16)
        c = x.new_zeros(x.size(0), 16)
        outs = []
        for t in range(x.size(1)):
            h, c = self.cell(torch.cat([x[:, t], ctx], dim=1), (h, c))
            outs.append(self.head(h))
        return torch.stack(outs, dim=1)


class LayerPerStep(nn.Module):  # DeepAR's training loop: nn.LSTM called once per time step
    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.mu = nn.LSTM(5, 16, num_layers=2), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 5]
        b = x.shape[1]
        h = torch.zeros(2, b, 16)
        c = torch.zeros(2, b, 16)
        mus = []
        for t in range(x.shape[0]):
            _, (h, c) = self.lstm(x[t].unsqueeze(0), (h, c))
            mus.append(self.mu(h[-1]).squeeze(-1))
        return torch.stack(mus, dim=1)


class TeacherForcedAttention(nn.Module):  # seq2seq training forward: Bahdanau attention, target ids fed
    def __init__(self, vocab: int = 20, e: int = 8, h: int = 16) -> None:
        super().__init__()
        self.emb, self.enc = nn.Embedding(vocab, e), nn.GRU(e, h, batch_first=True)
        self.cell = nn.GRUCell(e + h, h)
        self.w, self.u, self.v = nn.Linear(h, h, bias=False), nn.Linear(h, h), nn.Linear(h, 1, bias=False)
        self.out = nn.Linear(2 * h, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        mem, h = self.enc(self.emb(src))
        h = h[0]
        keys = self.u(mem)
        outs = []
        for t in range(tgt.size(1)):
            a = torch.softmax(self.v(torch.tanh(keys + self.w(h).unsqueeze(1))).squeeze(2), dim=1)
            ctx = torch.bmm(a.unsqueeze(1), mem).squeeze(1)
            h = self.cell(torch.cat([self.emb(tgt[:, t]), ctx], 1), h)
            outs.append(self.out(torch.cat([h, ctx], 1)))
        return torch.stack(outs, 1)


class WeightsOneStepBehind(nn.Module):  # show-attend-tell: attention from the state before the step's call
    def __init__(self) -> None:
        super().__init__()
        self.cell, self.q = nn.LSTMCell(8, 16), nn.Linear(16, 12)

    def forward(self, mem: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = mem.new_zeros(x.size(0), 16)
        c = mem.new_zeros(x.size(0), 16)
        alphas = []
        for t in range(x.size(1)):
            alphas.append(torch.softmax(torch.bmm(mem, self.q(h).unsqueeze(2)).squeeze(2), dim=1))
            h, c = self.cell(x[:, t], (h, c))
        return torch.stack(alphas, dim=1)


class TrimmedMemory(WeightsOneStepBehind):
    def forward(self, mem: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return super().forward(mem[:, 1:], x)


class ImageAttention(nn.Module):  # show-attend-tell: a memory of H*W pixels, outputs and weights per step
    def __init__(self) -> None:
        super().__init__()
        self.cell, self.q, self.out = nn.LSTMCell(8, 12), nn.Linear(12, 6), nn.Linear(12 + 6, 5)

    def forward(self, enc: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem = enc.view(enc.size(0), -1, enc.size(3))  # [B, H*W, 6]
        h, c = y.new_zeros(y.size(0), 12), y.new_zeros(y.size(0), 12)
        preds, alphas = [], []
        for t in range(y.size(1)):
            a = torch.softmax(torch.bmm(mem, self.q(h).unsqueeze(2)).squeeze(2), dim=1)
            ctx = (mem * a.unsqueeze(2)).sum(1)
            h, c = self.cell(y[:, t], (h, c))
            preds.append(self.out(torch.cat([h, ctx], 1)))
            alphas.append(a)
        return torch.stack(preds, 1), torch.stack(alphas, 1)


class FromStepOne(nn.Module):  # a CRF-style score recursion started from step 0's emissions
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 6, batch_first=True)
        self.w = nn.Parameter(torch.randn(6, 6) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e, _ = self.rnn(x)
        score = e[:, 0]
        outs = []
        for t in range(1, e.size(1)):
            score = torch.tanh(score @ self.w + e[:, t])
            outs.append(score)
        return torch.stack(outs, dim=1)


class GrowingCat(nn.Module):  # outputs gathered by re-concatenating, and a ReLU written with zeros_like
    def __init__(self) -> None:
        super().__init__()
        self.cell, self.decay = nn.GRUCell(4, 8), nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.size(0), 8)
        outputs = None
        for t in range(x.size(1)):
            h = torch.exp(-torch.max(torch.zeros_like(h), self.decay(x[:, t]))) * h  # GRU-D's decay
            h = self.cell(x[:, t], h)
            outputs = h.unsqueeze(1) if outputs is None else torch.cat((outputs, h.unsqueeze(1)), 1)
        return outputs


class PyramidAttention(nn.Module):  # LAS: a pyramidal encoder halves T; the decoder returns its weights
    def __init__(self) -> None:
        super().__init__()
        self.enc, self.cell, self.q = nn.GRU(4, 6, batch_first=True), nn.GRUCell(8, 12), nn.Linear(12, 12)

    def forward(self, feats: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.enc(feats)
        b, t, d = h.shape
        mem = h[:, :t - t % 2].reshape(b, t // 2, 2 * d)
        s = y.new_zeros(b, 12)
        outs, weights = [], []
        for i in range(y.size(1)):
            a = torch.softmax(torch.bmm(mem, self.q(s).unsqueeze(2)).squeeze(2), dim=1)
            s = self.cell(y[:, i], s)
            outs.append(s + torch.bmm(a.unsqueeze(1), mem).squeeze(1).sum(-1, keepdim=True))
            weights.append(a)
        return torch.stack(outs, 1), torch.stack(weights, 1)


class FoldedCoverage(nn.Module):
    """See et al.'s coverage: each step first computes ``W_c(coverage.view(-1, 1))`` -- rows of
    ``[B*T, H]``, the batch folded in -- from the previous step's coverage, then its own
    attention; the coverage vector ``[B, T]`` (symbolic width) is what crosses the steps."""

    def __init__(self) -> None:
        super().__init__()
        self.cell, self.wc, self.v = nn.GRUCell(8, 12), nn.Linear(1, 12, bias=False), nn.Linear(12, 1)

    def forward(self, mem: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [B, T, 12], [B, U, 8]
        b, t, n = mem.shape
        h, coverage, outs = mem.new_zeros(b, 12), torch.zeros(b, t), []
        for u in range(y.size(1)):
            h = self.cell(y[:, u], h)
            feat = self.wc(coverage.view(-1, 1))
            e = self.v(torch.tanh((mem + h.unsqueeze(1)).view(-1, n) + feat)).view(b, t)
            a = torch.softmax(e, dim=-1)
            coverage = coverage + a
            outs.append(torch.bmm(a.unsqueeze(1), mem).squeeze(1))
        return torch.stack(outs, 1)


CASES = {
    "folded_coverage": (FoldedCoverage, lambda b, t: (torch.randn(b, 2 * t + 1, 12), torch.randn(b, t, 8))),
    "image_attention": (ImageAttention, lambda b, t: (torch.randn(b, t // 2 + 2, t // 3 + 1, 6),
                                                      torch.randn(b, t, 8))),
    "pyramid_attention_weights": (PyramidAttention, lambda b, t: (torch.randn(b, 2 * t + 1, 4),
                                                                  torch.randn(b, t, 8))),
    "growing_cat_and_zeros_like": (GrowingCat, lambda b, t: (torch.randn(b, t, 4),)),
    "teacher_forced_attention": (TeacherForcedAttention, lambda b, t: (
        torch.randint(0, 20, (b, t + 3)), torch.randint(0, 20, (b, t)))),
    # its weights per step are [B, T_mem]: a per-step output whose width follows the memory's
    # symbolic length (read at run time off the memory, a pass-through state)
    "weights_one_step_behind": (WeightsOneStepBehind, lambda b, t: (torch.randn(b, 2 * t + 1, 12),
                                                                    torch.randn(b, t, 8))),
    # a memory one step shorter than the input (``mem[:, 1:]``): the width T-1 solves for T
    "weights_over_trimmed_memory": (lambda: TrimmedMemory(), lambda b, t: (torch.randn(b, 2 * t + 2, 12),
                                                                         torch.randn(b, t, 8))),
    "weights_over_fixed_memory": (WeightsOneStepBehind, lambda b, t: (torch.randn(b, 49, 12), torch.randn(b, t, 8)),
                                  [{0: "B"}, {0: "B", 1: "T"}]),
    "from_step_one": (FromStepOne, lambda b, t: (torch.randn(b, t, 4),)),
    "projected_input": (ProjectedInput, lambda b, t: (torch.randn(b, t, 8),)),
    "context_input": (ContextInput, lambda b, t: (torch.randn(b, t, 8), torch.randn(b, 4))),
    "layer_per_step": (LayerPerStep, lambda b, t: (torch.randn(t, b, 5),)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loop_rolls_and_matches_torch(name: str, tmp_path) -> None:
    build, make, *dynamic = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(model, make(2, 9), dynamic=dynamic[0] if dynamic else None)
    assert not [w for w in caught if "rnnc.trace" in str(w.message)]
    types = program.graph.value_types()
    assert all(isinstance(d, str) for _, t in program.graph.inputs for d in t.shape[:2] if d in (2, 9))
    scanned = [n for n in program.graph.nodes if n.op == "rnn" and isinstance(types[n.inputs[0]].shape[1], str)]
    assert len(scanned) >= 1 and sum(1 for n in program.graph.nodes if n.op == "rnn") <= 2  # no unrolled step left
    matches_torch(program, model, make(3, 14), tmp_path, name)


def test_chosen_dims_that_do_not_hold_are_named() -> None:
    """With ``dynamic=`` the dims are the user's, but a Program right at the traced length only
    says so (it used to return the traced length's output at any length, silently)."""

    class Shifted(nn.Module):  # reads step t + 1: no loop over time rnnc rolls
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.zeros(x.size(0), 8)
            outs = []
            for t in range(x.size(1) - 1):
                h = self.cell(x[:, t] * x[:, t + 1], h)
                outs.append(h)
            return torch.stack(outs, dim=1)

    with pytest.warns(UserWarning, match="right at the example's sizes only"):
        rnnc.trace(Shifted().eval(), (torch.randn(2, 6, 8),), dynamic=[{0: "B", 1: "T"}])


class LoopAfterLoop(nn.Module):
    """Two inline loops in a row, the second emitting before it updates (RWKV's WKV order): rolling
    the first must not change how the second's steps look."""

    def __init__(self) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Parameter(torch.rand(8)), nn.Parameter(torch.rand(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.size(0), 8)
        mid = []
        for t in range(x.size(1)):
            h = self.w1 * h + x[:, t]
            mid.append(h)
        y = torch.stack(mid, dim=1)
        g = torch.zeros(x.size(0), 8)
        out = []
        for t in range(y.size(1)):
            out.append(g + y[:, t])
            g = self.w2 * g + y[:, t]
        return torch.stack(out, dim=1)


def test_a_loop_after_a_rolled_loop_rolls() -> None:
    model = LoopAfterLoop()
    program, = (rnnc.trace(model, (torch.randn(2, 9, 8),)),)
    assert program.graph.inputs[0][1].shape[:2] == ("B", "T")
    assert sum(1 for n in program.graph.nodes if n.op == "rnn") == 2
    x = torch.randn(3, 14, 8)
    assert_close(program.run(x), model(x), backend="interp")


class _Memory(nn.Module):
    """A memory the forward stores on a module shared by two heads (pytorch-ntm's NTMMemory)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bias", torch.randn(6, 4) * 0.1)

    def reset(self, batch: int) -> None:
        self.memory = self.bias.clone().repeat(batch, 1, 1)

    def address(self, k: torch.Tensor) -> torch.Tensor:
        return torch.softmax(torch.cosine_similarity(self.memory + 1e-16, k.unsqueeze(1) + 1e-16, dim=-1), dim=1)


class _ReadHead(nn.Module):
    def __init__(self, memory: _Memory) -> None:
        super().__init__()
        self.memory, self.key = memory, nn.Linear(8, 4)

    def forward(self, h: torch.Tensor, w_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = 0.5 * self.memory.address(self.key(h)) + 0.5 * w_prev
        return torch.matmul(w.unsqueeze(1), self.memory.memory).squeeze(1), w


class _WriteHead(nn.Module):
    def __init__(self, memory: _Memory) -> None:
        super().__init__()
        self.memory, self.key, self.add = memory, nn.Linear(8, 4), nn.Linear(8, 4)

    def forward(self, h: torch.Tensor, w_prev: torch.Tensor) -> torch.Tensor:
        w = 0.5 * self.memory.address(self.key(h)) + 0.5 * w_prev
        self.memory.memory = self.memory.memory + w.unsqueeze(-1) * torch.tanh(self.add(h)).unsqueeze(1)
        return w


class SharedMemoryHeads(nn.Module):
    """Heads called once per step that read and rebind memory stored on a shared module: kept
    whole as step cells, run on example values they would read the traced memory (the trace
    recursed until Python's limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = _Memory()
        self.cell = nn.LSTMCell(8, 8)
        self.read, self.write = _ReadHead(self.memory), _WriteHead(self.memory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 4]
        self.memory.reset(x.size(1))
        h = c = x.new_zeros(x.size(1), 8)
        r = x.new_zeros(x.size(1), 4)
        wr = ww = x.new_zeros(x.size(1), 6)
        ys = []
        for t in range(x.size(0)):
            h, c = self.cell(torch.cat([x[t], r], 1), (h, c))
            r, wr = self.read(h, wr)
            ww = self.write(h, ww)
            ys.append(torch.cat([h, r], 1))
        return torch.stack(ys)


def test_heads_on_shared_memory_trace(tmp_path: object) -> None:
    torch.manual_seed(0)
    model = SharedMemoryHeads().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        program = rnnc.trace(model, (torch.randn(9, 2, 4),))
    for t, b in ((9, 2), (13, 3)):
        matches_torch(program, model, (torch.randn(t, b, 4),), tmp_path, f"ntm_{t}")
