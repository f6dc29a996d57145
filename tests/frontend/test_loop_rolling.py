"""Loops of tensor ops over time, rolled back into one rnn node (``compiler/frontend/scan.py``).

Each model below writes its recurrence as a Python loop over ``x.size(1)`` (or ``x.unbind``,
``x.split(1)``) the way repositories do; the Program traced at one length must hold one ``rnn``
node per loop, keep T symbolic, and match torch eager at lengths and batches it was not traced at
(the interpreter and onnxruntime on the export).  Loops that are not recurrences over the whole
sequence must not be rolled into something wrong: trace keeps the length fixed and says so.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import rnnc
from rnnc.tolerances import assert_close

torch.manual_seed(0)


class ElmanLoop(nn.Module):
    """h_t = tanh(x_t W + h_{t-1} U), outputs stacked over time (batch first)."""

    def __init__(self, i: int = 6, h: int = 5) -> None:
        super().__init__()
        self.w = nn.Linear(i, h)
        self.u = nn.Linear(h, h, bias=False)
        self.h = h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.new_zeros(x.size(0), self.h)
        ys = []
        for t in range(x.size(1)):
            h = torch.tanh(self.w(x[:, t]) + self.u(h))
            ys.append(h)
        return torch.stack(ys, dim=1), h


class ReverseGatedLoop(nn.Module):
    """A gated recurrence run backwards over time-major input, with a learned initial state."""

    def __init__(self, i: int = 4, h: int = 3) -> None:
        super().__init__()
        self.gate = nn.Linear(i, h)
        self.cand = nn.Linear(i, h)
        self.h0 = nn.Parameter(torch.randn(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, c = torch.sigmoid(self.gate(x)), torch.tanh(self.cand(x))
        h = self.h0.expand(x.size(1), -1)
        outs = []
        for t in range(x.size(0) - 1, -1, -1):
            h = g[t] * h + (1 - g[t]) * c[t]
            outs.append(h)
        return torch.stack(outs[::-1], dim=0)


class FirstStepApart(nn.Module):
    """``if prev is None`` on the first step (QRNN's ForgetMult shape), unbind reads, outputs
    concatenated as ``[B, 1, H]`` slices."""

    def __init__(self, i: int = 4) -> None:
        super().__init__()
        self.f = nn.Linear(i, i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.sigmoid(self.f(x))
        prev = None
        outs = []
        for f_t, x_t in zip(f.unbind(1), x.unbind(1), strict=True):
            h = f_t * x_t if prev is None else f_t * x_t + (1 - f_t) * prev
            outs.append(h.unsqueeze(1))
            prev = h
        return torch.cat(outs, dim=1)


class BackwardFirstApart(nn.Module):
    """A backward loop whose first iteration differs (its initial state ``zeros_like(x[:, 0])``
    joins it): that iteration, written apart, reads the *last* position at any length."""

    def __init__(self, i: int = 4) -> None:
        super().__init__()
        self.f = nn.Linear(i, i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(x[:, 0])
        outs = []
        for t in reversed(range(x.shape[1])):
            h = torch.tanh(self.f(x[:, t]) + 0.5 * h)
            outs.append(h)
        return torch.stack(outs[::-1], 1)


class ContextLoop(nn.Module):
    """Each step also reads a per-sample context computed from the whole input (an invariant
    with a batch dim), and only the final state is returned."""

    def __init__(self, i: int = 4, h: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(i, h)
        self.ctx = nn.Linear(i, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = torch.tanh(self.ctx(x.mean(dim=1)))
        h = torch.zeros_like(context)
        for t in range(x.size(1)):
            h = torch.tanh(self.inp(x[:, t]) + h * context)
        return h


class HandWrittenLSTM(nn.Module):
    """An LSTM written with matmuls and ``chunk``, outputs gathered time-major as ``[1, B, H]``
    slices and returned batch-major, with the final ``(h, c)``."""

    def __init__(self, i: int = 5, h: int = 6) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(i, 4 * h) * 0.3)
        self.u = nn.Parameter(torch.randn(h, 4 * h) * 0.3)
        self.b = nn.Parameter(torch.randn(4 * h) * 0.1)
        self.h = h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, _ = x.shape
        h = torch.zeros(b, self.h)
        c = torch.zeros(b, self.h)
        outs = []
        for k in range(t):
            i, f, g, o = (x[:, k, :] @ self.w + h @ self.u + self.b).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h.unsqueeze(0))
        return torch.cat(outs, 0).transpose(0, 1), (h, c)


class PerStepMap(nn.Module):
    """Not a recurrence: each step alone, stacked (a per-step map; rolled with no carry)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.relu(self.lin(x[:, t])) for t in range(x.size(1))], dim=1)


class ChunkedSteps(nn.Module):
    """asappresearch/sru's CPU recurrence: steps read by ``U.chunk(length)`` are ``[1, B, H]``, the
    carry starts ``[B, H]`` and is ``[1, B, H]`` after the first step (broadcasting)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 16) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 4]
        length, batch = x.size(0), x.size(1)
        u = x.contiguous().view(-1, 4).mm(self.w).view(length, batch, 8, 2)
        u0, u1 = u[:, :, :, 0].chunk(length), u[:, :, :, 1].chunk(length)
        c = x.new_zeros(batch, 8)
        hs = []
        for t in range(length):
            c = u0[t] + (c - u0[t]) * u1[t].sigmoid()
            hs.append(c)
        return torch.stack(hs)


class ShiftedRead(nn.Module):
    """Reads x[:, t + 1] with x[:, t]: a recurrence over T - 1 steps (not rolled; fixed T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(x[:, 0])
        for t in range(x.size(1) - 1):
            h = torch.tanh(h + x[:, t] * x[:, t + 1])
        return h


def _trace(model: nn.Module, example: torch.Tensor) -> tuple[rnnc.ir.Program, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = rnnc.trace(model.eval(), (example,))
    return program, [str(w.message) for w in caught if "rnnc.trace" in str(w.message)]


def _flat(out: object) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in _flat(o)]  # type: ignore[union-attr]


ROLLED = [
    (ElmanLoop, lambda b, t: torch.randn(b, t, 6), 1),
    (ReverseGatedLoop, lambda b, t: torch.randn(t, b, 4), 1),
    (FirstStepApart, lambda b, t: torch.randn(b, t, 4), 1),
    (BackwardFirstApart, lambda b, t: torch.randn(b, t, 4), 1),
    (ContextLoop, lambda b, t: torch.randn(b, t, 4), 1),
    (HandWrittenLSTM, lambda b, t: torch.randn(b, t, 5), 1),
    (PerStepMap, lambda b, t: torch.randn(b, t, 4), 1),
    (ChunkedSteps, lambda b, t: torch.randn(t, b, 4), 1),
]


@pytest.mark.parametrize(("cls", "make", "loops"), ROLLED, ids=[c.__name__ for c, _, _ in ROLLED])
def test_a_loop_over_time_becomes_one_rnn_node_with_t_symbolic(cls, make, loops, tmp_path) -> None:
    from rnnc.backends.onnx.runtime import StatefulSession

    model = cls()
    program, said = _trace(model, make(2, 9))
    assert not said, said
    assert len(program.rnn_nodes()) == loops
    assert all(isinstance(d, str) for d in program.graph.inputs[0][1].shape[:2]), program.graph.inputs
    path = tmp_path / "m.onnx"
    rnnc.export_onnx(program, path=path)
    for b, t in [(3, 17), (1, 4), (2, 1)]:
        x = make(b, t)
        with torch.no_grad():
            want = _flat(model(x))
        got = _flat(program.run(x))
        assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want]
        for g, w in zip(got, want, strict=True):
            assert_close(g, w, backend="interp")
        for g, w in zip(StatefulSession(str(path))(x), want, strict=True):
            assert_close(torch.from_numpy(g), w, backend="onnxruntime")


@pytest.mark.parametrize("cls", [ShiftedRead])
def test_a_loop_that_is_not_a_whole_sequence_recurrence_keeps_t_fixed_and_says_so(cls) -> None:
    model = cls()
    program, said = _trace(model, torch.randn(2, 7, 4))
    assert said and ("fixed" in said[0] or "stayed unrolled" in said[0]), said
    assert program.graph.inputs[0][1].shape[1] == 7
    x = torch.randn(3, 7, 4)  # the batch stays symbolic; the traced length still runs
    with torch.no_grad():
        assert_close(program.run(x), model(x), backend="interp")


def test_the_rolled_step_is_a_cell_the_kernel_backends_compile() -> None:
    model = ElmanLoop()
    compiled = rnnc.compile(model, (torch.randn(2, 9, 6),))
    x = torch.randn(4, 21, 6)
    with torch.no_grad():
        want = _flat(model(x))
    for g, w in zip(_flat(compiled(x)), want, strict=True):
        assert_close(g, w, backend="c")


class AttendOverInput(nn.Module):
    """Each step attends over the whole input: a value of length T read by every step, which the
    rolled cell takes as a state passed through unchanged (its size follows T)."""

    def __init__(self, h: int = 6) -> None:
        super().__init__()
        self.q = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        memory = torch.tanh(x)
        h = x.mean(1)
        outs = []
        for t in range(x.size(1)):
            a = torch.softmax((memory @ self.q(h).unsqueeze(-1)).squeeze(-1), dim=-1)
            h = torch.tanh(x[:, t] + (a.unsqueeze(-1) * memory).sum(1))
            outs.append(h)
        return torch.stack(outs, 1)


def test_a_loop_attending_over_the_whole_input_rolls() -> None:
    model = AttendOverInput()
    program, said = _trace(model, torch.randn(2, 7, 6))
    assert not said, said
    assert sum(1 for n in program.graph.nodes if n.op == "rnn") == 1
    for t in (1, 12):
        x = torch.randn(3, t, 6)
        with torch.no_grad():
            assert_close(program.run(x), model(x), backend="interp")


class SignsPerStep(nn.Module):
    """Each step also collects a comparison of its state (a bool per step, its inputs float): the
    rnn op's outputs have its input's dtype, so the loop is found but cannot roll."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), x.size(2))
        signs = []
        for t in range(x.size(1)):
            h = torch.tanh(0.5 * h + x[:, t])
            signs.append(h > 0)
        return torch.stack(signs, 1)


def test_a_loop_found_but_not_rolled_is_named_with_the_reason() -> None:
    model = SignsPerStep()
    program, said = _trace(model, torch.randn(2, 7, 6))
    assert said and "loop over time stayed unrolled: the 7-step loop" in said[0], said
    assert "a per-step output is b1" in said[0], said
    x = torch.randn(3, 7, 6)
    with torch.no_grad():
        assert torch.equal(program.run(x), model(x))


# ---------------------------------------------------------------- what must not roll (a review's cases)
class Warmup(nn.Module):
    """A recurrence over the first four steps only: rolling it over T would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), 4)
        for k in range(4):
            h = torch.tanh(self.lin(h) + x[:, k])
        return h + x.mean(1)


class PositionTable(nn.Module):
    """Each step also reads row t of a fixed table: the steps differ (no template)."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(12, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), 4)
        for t in range(x.size(1)):
            h = torch.tanh(0.5 * h + x[:, t] + self.pos[t])
        return h


class LastStepApart(nn.Module):
    """The last step's collected value is computed differently from the others'."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, outs, n = x.new_zeros(x.size(0), 4), [], x.size(1)
        for t in range(n):
            h = torch.tanh(self.lin(h) + x[:, t])
            outs.append(torch.sigmoid(h) if t == n - 1 else torch.relu(h))
        return torch.stack(outs, 1)


@pytest.mark.parametrize("cls", [Warmup, PositionTable, LastStepApart])
def test_a_loop_that_is_not_one_step_repeated_over_t_is_never_rolled_wrongly(cls) -> None:
    """With ``dynamic=`` given, trace does not check itself: the Program must be the unrolled
    one (right at the traced length) rather than a wrongly rolled one."""
    model = cls().eval()
    example = torch.randn(2, 9, 4)
    program = rnnc.trace(model, (example,), dynamic=[{0: "B", 1: "T"}])
    assert not program.rnn_nodes()
    x = torch.randn(3, 9, 4)
    with torch.no_grad():
        assert_close(program.run(x), model(x), backend="interp")


class EncoderDecoder(nn.Module):
    """Two loops over two lengths of the same example size; the decoder starts from the encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(4, 4)
        self.dec = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), 4)
        for t in range(x.size(1)):
            h = torch.tanh(h + self.enc(x[:, t]))
        outs = []
        for t in range(y.size(1)):
            h = torch.tanh(h + self.dec(y[:, t]))
            outs.append(h)
        return torch.stack(outs, 1)


def test_two_loops_over_two_lengths_keep_each_its_own() -> None:
    model = EncoderDecoder().eval()
    program = rnnc.trace(model, (torch.randn(2, 6, 4), torch.randn(2, 6, 4)),
                         dynamic=[{0: "B", 1: "T"}, {0: "B", 1: "L"}])
    assert len(program.rnn_nodes()) == 2
    for t, n in [(5, 8), (8, 5)]:
        x, y = torch.randn(3, t, 4), torch.randn(3, n, 4)
        with torch.no_grad():
            assert_close(program.run(x, y), model(x, y), backend="interp")


class DecayedSum(nn.Module):
    """An elementwise recurrence: no layer fixes the feature size, which the model leaves free."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(x[:, 0])
        outs = []
        for t in range(x.size(1)):
            h = 0.9 * h + x[:, t]
            outs.append(h)
        return torch.stack(outs, 1)


def test_an_elementwise_loop_keeps_batch_and_length_symbolic_and_its_features_fixed() -> None:
    model = DecayedSum()
    program, said = _trace(model, torch.randn(2, 9, 4))
    assert program.graph.inputs[0][1].shape == ("B", "T", 4)
    assert said and "x[B,T,T1]" in said[0], said  # the features could not stay symbolic: it says so
    assert len(program.rnn_nodes()) == 1
    x = torch.randn(3, 13, 4)
    with torch.no_grad():
        assert_close(program.run(x), model(x), backend="interp")


class TimeMajorForget(nn.Module):
    """QRNN's ForgetMult as written: time-major ``split(1)`` steps of ``[1, B, H]``, viewed back
    to ``[B, H]``."""

    def forward(self, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        prev, out = None, []
        for f_t, x_t in zip(f.split(1, dim=0), x.split(1, dim=0), strict=True):
            h = f_t * x_t if prev is None else f_t * x_t + (1 - f_t) * prev
            h = h.view(h.size()[1:])
            out.append(h)
            prev = h
        return torch.stack(out)


def test_a_time_major_body_becomes_batch_first_values_the_c_kernels_compile() -> None:
    model = TimeMajorForget()
    example = (torch.sigmoid(torch.randn(9, 2, 5)), torch.randn(9, 2, 5))
    with warnings.catch_warnings(record=True):  # the free feature size is fixed (it says so)
        warnings.simplefilter("always")
        program = rnnc.trace(model, example)
    assert [t.shape for _, t in program.graph.inputs] == [("T", "B", 5)] * 2
    (node,) = program.rnn_nodes()
    step = node.attr("cells")[0].step
    assert all(t.shape[0] == "B" for n in step.nodes for t in n.types if t.rank), step
    compiled = rnnc.compile(model, example, backend="c")
    for t in (1, 12):
        f, x = torch.sigmoid(torch.randn(t, 3, 5)), torch.randn(t, 3, 5)
        with torch.no_grad():
            assert_close(compiled(f, x), model(f, x), backend="c")


class RoundedSum(nn.Module):
    """A decayed sum rounded to integers every step: the cast makes it nonlinear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(x[:, 0])
        outs = []
        for t in range(x.size(1)):
            h = (0.9 * h + 3 * x[:, t]).long().float()
            outs.append(h)
        return torch.stack(outs, 1)


class SignMap(nn.Module):
    """A per-step map whose outputs are booleans, from float inputs (the rnn op's y has x's dtype)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, t] > 0 for t in range(x.size(1))], 1)


def test_a_map_to_another_dtype_stays_unrolled_and_right() -> None:
    model = SignMap()
    program = rnnc.trace(model, (torch.randn(2, 9, 4),), dynamic=[{0: "B", 1: "T"}])
    x = torch.randn(3, 9, 4)
    assert torch.equal(program.run(x), model(x))


@pytest.mark.parametrize(("cls", "make", "linear"), [
    (RoundedSum, lambda: (torch.randn(2, 9, 4),), False),
    (TimeMajorForget, lambda: (torch.sigmoid(torch.randn(9, 2, 5)), torch.randn(9, 2, 5)), True),
    (DecayedSum, lambda: (torch.randn(2, 9, 4),), True),
    (ElmanLoop, lambda: (torch.randn(2, 9, 6),), False),
    (HandWrittenLSTM, lambda: (torch.randn(2, 9, 5),), False),
])
def test_a_rolled_cell_says_whether_its_recurrence_is_linear(cls, make, linear) -> None:
    """Affine in its states (a parallel scan is legal) or not: found from the step graph
    (``rnnc.ir.scanform``), not declared."""
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        program = rnnc.trace(cls().eval(), make())
    (node,) = program.rnn_nodes()
    assert node.attr("cells")[0].recurrence == ("linear" if linear else "nonlinear")


class ProjectedForget(TimeMajorForget):
    """The forget gate from a projection (so only the batch is separable), time-major."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.sigmoid(self.lin(x)), x)


def test_a_time_major_loop_traced_at_batch_1_rolls_with_the_batch_found() -> None:
    """An example batch of 1 cannot show which dim is separable; the dim of size 1 is the batch."""
    model = ProjectedForget().eval()
    program, said = _trace(model, torch.randn(9, 1, 5))
    assert not said, said
    assert program.graph.inputs[0][1].shape == ("T", "B", 5)
    assert len(program.rnn_nodes()) == 1
    x = torch.randn(14, 3, 5)
    with torch.no_grad():
        assert_close(program.run(x), model(x), backend="interp")


class UpdateBeforeCell(nn.Module):
    """Skip RNN's cumulative update probability: a per-step value computed from the previous
    step's state ahead of the cell call, collected per step (two values before the rolled loop)."""

    def __init__(self, final: bool = False) -> None:
        super().__init__()
        self.cell = nn.RNNCell(4, 1)
        self.final = final

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # [B, T, 4]
        h, c = torch.zeros(x.size(0), 1), torch.zeros(x.size(0), 1)
        outs = []
        for t in range(x.size(1)):
            c = c + torch.min(h, 1.0 - c)
            h = self.cell(x[:, t], h)
            outs.append(c)
        seq = torch.stack(outs, 1)
        return (seq, seq.sum(1), c) if self.final else (seq, seq.sum(1))


@pytest.mark.parametrize("final", [False, True], ids=["collected", "final_read"])
def test_values_collected_ahead_of_the_cell_hold_at_every_length(final: bool, tmp_path: object) -> None:
    """At T = 1 the two values peeled before the loop are one too many: the collect is cut to the
    steps read (it was [B, 2, 1] with a wrong sum); where the last step's carried value is read
    too, the loop is not rolled (that value would be a step ahead) and the length stays fixed."""
    from program_checks import matches_torch  # tests/program_checks.py

    torch.manual_seed(0)
    model = UpdateBeforeCell(final).eval()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        program = rnnc.trace(model, (torch.randn(2, 12, 4),))
    symbolic = isinstance(program.graph.inputs[0][1].shape[1], str)
    assert symbolic != final
    assert final == any("rnnc.trace" in str(w.message) for w in said)
    for t in (1, 2, 3, 12, 20) if symbolic else (12,):
        matches_torch(program, model, (torch.randn(3, t, 4),), tmp_path, f"ahead_{t}")


class CRFScores(nn.Module):
    """A linear-chain CRF over emissions: the forward algorithm's log partition and the Viterbi
    best score, each ``score = start + e[:, 0]; for t in range(1, T): score = ...``."""

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        self.emit = nn.Linear(4, k)
        self.start = nn.Parameter(torch.randn(k))
        self.trans = nn.Parameter(torch.randn(k, k))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [B, T, 4]
        e = self.emit(x)
        alpha = self.start + e[:, 0]
        for t in range(1, e.size(1)):
            alpha = torch.logsumexp(alpha.unsqueeze(2) + self.trans + e[:, t].unsqueeze(1), dim=1)
        best = self.start + e[:, 0]
        for t in range(1, e.size(1)):
            best, _ = torch.max(best.unsqueeze(2) + self.trans + e[:, t].unsqueeze(1), dim=1)
        return torch.logsumexp(alpha, 1), best.max(1)[0]


def test_a_score_written_before_it_is_read_holds_at_length_one(tmp_path: object) -> None:
    """The rolled step starts at the read, so the score is only written there; at T = 1 the rnn
    runs no step and returned zeros for it (a wrong log partition, silently): its value before
    the loop is the peeled step's (``scan._before_loop``)."""
    from program_checks import matches_torch  # tests/program_checks.py

    torch.manual_seed(0)
    model = CRFScores().eval()
    program = rnnc.trace(model, (torch.randn(2, 9, 4),))
    assert isinstance(program.graph.inputs[0][1].shape[1], str)
    for t, b in ((1, 3), (1, 1), (2, 2), (13, 3)):
        matches_torch(program, model, (torch.randn(b, t, 4),), tmp_path, f"crf_{t}_{b}")


class MaskedCRF(nn.Module):
    """pytorch-crf's ``_compute_normalizer``, time-major: the score moves only where the mask is
    set, ``score = torch.where(mask[i].unsqueeze(1), next_score, score)``."""

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        self.start, self.end = nn.Parameter(torch.randn(k)), nn.Parameter(torch.randn(k))
        self.trans = nn.Parameter(torch.randn(k, k))

    def forward(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # [T, B, K], [T, B]
        score = self.start + emissions[0]
        for i in range(1, emissions.size(0)):
            nxt = torch.logsumexp(score.unsqueeze(2) + self.trans + emissions[i].unsqueeze(1), dim=1)
            if mask.dtype == torch.bool:
                score = torch.where(mask[i].unsqueeze(1), nxt, score)
            else:  # pytorch-crf 0.6's uint8 mask
                m = mask[i].unsqueeze(1)
                score = nxt * m + score * (1 - m)
        return torch.logsumexp(score + self.end, dim=1)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8])
def test_a_loop_reading_a_boolean_mask_per_step_rolls(dtype: torch.dtype, tmp_path: object) -> None:
    """Per-step reads of a float and a bool (or uint8) source: the mask travels in the rnn's
    float32 sequence, exact, and is cast back in the step (the loop stayed unrolled, T fixed,
    before)."""
    from program_checks import matches_torch  # tests/program_checks.py

    def inputs(t: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.randint(1, t + 1, (b,))
        lengths[0] = t
        return torch.randn(t, b, 5), (torch.arange(t)[:, None] < lengths[None]).to(dtype)

    torch.manual_seed(0)
    model = MaskedCRF().eval()
    program = rnnc.trace(model, inputs(9, 2))
    assert len(program.rnn_nodes()) == 1 and isinstance(program.graph.inputs[0][1].shape[0], str)
    for t, b in ((1, 3), (2, 2), (13, 3)):
        matches_torch(program, model, inputs(t, b), tmp_path, f"masked_crf_{t}_{b}")


class AllButLast(nn.Module):
    """A recurrence over every step but the last (Neural Hawkes' Monte-Carlo integral: ``for t in
    range(T - 1)``), its final state and its per-step outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # [B, T, 4]
        h = x.new_zeros(x.size(0), 6)
        outs = [h]
        for t in range(x.size(1) - 1):
            h = self.cell(x[:, t], h)
            outs.append(torch.tanh(h))
        return h, torch.stack(outs, 1)


def test_a_loop_over_all_but_the_last_step_rolls_and_holds_at_length_one(tmp_path: object) -> None:
    """``range(T - 1)`` over inputs of length T: the rnn runs the whole inputs with the last step
    masked off (lengths T - 1), so T = 1 runs no step and no backend sees an empty sequence (it
    stayed unrolled, T fixed, with a generic hint)."""
    from program_checks import matches_torch  # tests/program_checks.py

    torch.manual_seed(0)
    model = AllButLast().eval()
    program = rnnc.trace(model, (torch.randn(2, 9, 4),))
    assert len(program.rnn_nodes()) == 1 and isinstance(program.graph.inputs[0][1].shape[1], str)
    for t, b in ((1, 3), (2, 1), (13, 3)):
        matches_torch(program, model, (torch.randn(b, t, 4),), tmp_path, f"all_but_last_{t}_{b}")


class ViterbiDecode(CRFScores):
    """The BiLSTM-CRF tutorial's decode: the best score's history of argmax positions, walked
    back from the best last tag (``for hist in reversed(history)``), the path reversed."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        e = self.emit(x)
        score = self.start + e[:, 0]
        history = []
        for t in range(1, e.size(1)):
            score, indices = torch.max(score.unsqueeze(2) + self.trans + e[:, t].unsqueeze(1), dim=1)
            history.append(indices)
        best_score, best = torch.max(score, dim=1)
        path = [best]
        for hist in reversed(history):
            best = hist.gather(1, best.unsqueeze(1)).squeeze(1)
            path.append(best)
        path.reverse()
        return best_score, torch.stack(path, dim=1)


def test_a_history_walked_back_rolls_both_loops(tmp_path: object) -> None:
    """The walk reads the first loop's values one by one: read from their stack
    (``stacks.index_late_reads``), both loops roll and the length stays symbolic (it was fixed)."""
    from program_checks import matches_torch  # tests/program_checks.py

    torch.manual_seed(0)
    model = ViterbiDecode().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        program = rnnc.trace(model, (torch.randn(2, 9, 4),))
    assert sum(n.op == "rnn" for n in program.graph.nodes) == 2
    for t, b in ((2, 2), (14, 3)):
        matches_torch(program, model, (torch.randn(b, t, 4),), tmp_path, f"viterbi_{t}")
    matches_torch(program, model, (torch.randn(3, 1, 4),))  # (onnxruntime's Scan refuses 0 steps)
