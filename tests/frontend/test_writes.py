"""Writes into preallocated tensors (``outputs[t] = h``, ``y[:, t] = h``, ``y[0, :, 1:3] = v``):
recorded as functional writes, so later reads see them.  A loop writing one step per iteration
becomes a stack of the written values (``writes.py``) and rolls over T like any collected
output; a box of constant indices and slices is the untouched parts around it, concatenated
(``handlers_write.py``), so it holds at any length.  Each model is checked against torch eager
at sizes other than the traced ones, in rnnc's interpreter and as ONNX in onnxruntime."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc
from rnnc.errors import UnsupportedError


class PreallocatedOutputs(nn.Module):  # the seq2seq tutorials' decoder loop
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, B, 4]
        outputs = torch.zeros(x.shape[0], x.shape[1], 8)
        h = torch.zeros(x.shape[1], 8)
        for t in range(1, x.shape[0]):
            h = self.cell(x[t], h)
            outputs[t] = h
        outputs[0, :, 1:3] = -1.0
        outputs[:, :, -2:] = outputs[:, :, -2:] * 0.5
        return outputs


def _symbolic(model: nn.Module, example: torch.Tensor) -> rnnc.ir.Program:
    """The trace, which must keep every dim symbolic and roll every loop (no warning)."""
    program = trace_quietly(model, (example,))
    assert not [n for n in program.graph.nodes if n.op == "rnn" and isinstance(
        program.graph.value_types()[n.inputs[0]].shape[0 if not n.attr("batch_first") else 1], int)]
    return program


def test_writes_into_a_preallocated_tensor(tmp_path) -> None:
    """The loop from step 1 writing ``outputs[t]`` (``outputs[0]`` stays zero) rolls; the box
    writes after it hold at any length."""
    torch.manual_seed(0)
    model = PreallocatedOutputs().eval()
    program = _symbolic(model, torch.randn(6, 2, 4))
    assert program.graph.inputs[0][1].shape == ("T", "B", 4)
    assert [n.op for n in program.graph.nodes].count("rnn") == 1
    matches_torch(program, model, (torch.randn(11, 5, 4),), tmp_path, "prealloc")
    matches_torch(program, model, (torch.randn(2, 1, 4),), tmp_path, "prealloc_short")


class GriffinScan(nn.Module):  # recurrentgemma's rnn_scan: y = zeros_like(x); y[:, t] = h_t
    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        y = torch.zeros_like(x)
        h = x[:, 0]
        y[:, 0] = h
        for t in range(1, x.shape[1]):
            h = a[:, t] * h + x[:, t]
            y[:, t] = h
        return y


class ReadBack(nn.Module):
    """Each step reads the buffer: at the position written last step, and at one not written yet."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 4]
        y = torch.ones(x.shape[0], x.shape[1] + 1, 4)
        for t in range(x.shape[1]):
            prev = y[:, t - 1] if t > 0 else y[:, -1]
            y[:, t] = torch.tanh(x[:, t] + 0.5 * prev)
        return y


class FixedCount(nn.Module):
    """Writes the first 3 steps of a length-T buffer, whatever T is (a fixed-count loop), cast
    to the buffer's dtype as torch does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros_like(x, dtype=torch.float64)
        for t in range(3):
            y[:, t] = x[:, t] * (t + 1)
        return y


class BackwardWrites(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros_like(x)
        h = torch.zeros_like(x[:, 0])
        for t in reversed(range(x.shape[1])):
            h = torch.tanh(x[:, t] + h)
            y[:, t:t + 1] = h.unsqueeze(1)  # the slice form keeps the axis
        return y


class TwoDirections(nn.Module):
    """SRU's bidirectional CPU loop: ``h[t, :, d, :] = c`` into ``new_zeros(T, B, 2, H)``, the
    forward direction then the backward one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 4] (batch first, as the test makes)
        u = x.transpose(0, 1)
        h = x.new_zeros(u.size(0), u.size(1), 2, 4)
        c = u.new_zeros(u.size(1), 4)
        for t in range(u.size(0)):
            c = 0.5 * c + u[t]
            h[t, :, 0, :] = c
        c = u.new_zeros(u.size(1), 4)
        for t in range(u.size(0) - 1, -1, -1):
            c = 0.7 * c + torch.tanh(u[t])
            h[t, :, 1, :] = c
        return h.transpose(0, 1)


class ChunkedTwoDirections(nn.Module):
    """SRU's loop as the package writes it (``elementwise_recurrence_naive``): each direction's
    steps read by ``u[:, :, d].chunk(T)`` are ``[1, B, H]``, the carry starts ``[B, H]``, and each
    step is written into a ``[B, H]`` slot (torch drops the leading one)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 4]: two directions of 2
        u = x.transpose(0, 1).contiguous().view(x.size(1), x.size(0), 2, 2)
        h = x.new_zeros(u.size(0), u.size(1), 2, 2)
        for d in range(2):
            steps = u[:, :, d, :].chunk(u.size(0))
            c = u.new_zeros(u.size(1), 2)
            for t in (range(u.size(0)) if d == 0 else range(u.size(0) - 1, -1, -1)):
                c = (0.5 + 0.2 * d) * c + torch.tanh(steps[t])
                h[t, :, d, :] = c
        return h.transpose(0, 1).reshape(x.size(0), x.size(1), 4)


@pytest.mark.parametrize("cls", [GriffinScan, ReadBack, FixedCount, BackwardWrites, TwoDirections,
                                 ChunkedTwoDirections])
def test_step_writes_hold_at_any_length(cls: type, tmp_path) -> None:
    torch.manual_seed(0)
    model = cls().eval()
    n_inputs = 2 if cls is GriffinScan else 1
    example = [torch.rand(2, 5, 4) for _ in range(n_inputs)]
    # (the feature dim is free in these bodies; the rnn a loop rolls into needs it fixed)
    program = rnnc.trace(model, tuple(example), dynamic=[{0: "B", 1: "T"}] * n_inputs)
    if cls is not FixedCount:  # (three steps, whatever T: nothing to roll over T)
        assert [n.op for n in program.graph.nodes].count("rnn") == (1 if "Two" not in cls.__name__ else 2)
    for b, t in ((3, 9), (1, 4)):
        matches_torch(program, model, tuple(torch.rand(b, t, 4) for _ in range(n_inputs)), tmp_path, cls.__name__)


class BoxWrites(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 6]
        y = x * 2
        y[:, 0] = -1.0  # a python scalar, broadcast
        y[:, -1, 2:4] = x[:, 0, :2]
        y[:, 1:-1, -2:] = y[:, 1:-1, -2:] * 0.5
        y[0] = 7.0  # the first batch row
        return y


def test_box_writes_keep_sizes_symbolic(tmp_path) -> None:
    model = BoxWrites().eval()
    program = trace_quietly(model, (torch.randn(2, 5, 6),))
    assert program.graph.inputs[0][1].shape == ("B", "T", "T1")
    assert not [n for n in program.graph.nodes if n.op == "aten"]  # not torch.export's masks
    matches_torch(program, model, (torch.randn(4, 9, 6),), tmp_path, "box")


class ViewThenWrite(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros(x.shape[0], x.shape[1], 4)
        first = y[:, 0]  # a view taken before the write: torch sees the write through it
        y[:, 0] = x[:, 0] * 2
        return y + first.unsqueeze(1)


class WriteThroughView(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros(x.shape[0], x.shape[1], 4)
        row = y[:, 0]
        row[:, 1:3] = 5.0  # reaches y through the view
        return y + x


class WriteThroughTo(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.zeros(x.shape[0], 4)
        b = a.to(torch.float32)  # the same tensor as a: torch writes into a too
        b[:, 0] = 1.0
        return x[:, 0] + a


@pytest.mark.parametrize("cls", [ViewThenWrite, WriteThroughView, WriteThroughTo])
def test_a_write_that_aliases_a_view_is_refused(cls: type) -> None:
    """The functional write would not reach a view (or the base of a view written through): the
    Program would be silently wrong, so the trace refuses, naming the write."""
    with pytest.raises(UnsupportedError, match="is read after a write into memory it shares"):
        rnnc.trace(cls().eval(), (torch.randn(2, 5, 4),))


class MaskedWrite(nn.Module):  # RetNet's decay mask: D[D != D] = 0 on a computed tensor
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gru(x)[0]
        d = torch.bmm(h, h.transpose(1, 2))
        d[d < 0] = 0.0
        return torch.bmm(d, h)


def test_a_masked_write_into_a_computed_tensor(tmp_path) -> None:
    torch.manual_seed(0)
    model = MaskedWrite().eval()
    program = rnnc.trace(model, (torch.randn(2, 6, 4),))
    assert program.graph.inputs[0][1].shape[:2] == ("B", "T")
    matches_torch(program, model, (torch.randn(3, 11, 4),), tmp_path, "masked")


class StatesAll(nn.Module):
    """xLSTM's sLSTM layer: ``states_all[:, 0] = init`` then ``states_all[:, t + 1] = states`` per
    step, and a multi-head norm that views the collected outputs by heads: the T + 1 collected
    values keep their length symbolic (T + 1), so ``view(B, S, 4, -1)`` knows its last size."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 16)
        self.r = nn.Parameter(torch.randn(8, 16) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 8]
        b, s, _ = x.shape
        xs = self.lin(x).transpose(0, 1)
        states = torch.zeros([2, b, 8])
        states_all = torch.zeros([2, s + 1, b, 8])
        states_all[:, 0] = states
        for i, x_t in enumerate(xs.unbind(dim=0)):
            a, f = (x_t + states[0] @ self.r).view(b, 2, -1).unbind(dim=1)
            states = torch.stack((torch.tanh(a + states[1]), torch.sigmoid(f) * states[1]), dim=0)
            states_all[:, i + 1] = states
        y = states_all[0, 1:].transpose(0, 1).view(b, s, 4, -1).transpose(1, 2)
        bq, nh, sq, dh = y.shape
        return F.group_norm(y.transpose(1, 2).reshape(bq * sq, nh * dh), num_groups=nh).view(bq, sq, -1)


def test_collected_states_after_a_start_value_keep_their_length(tmp_path) -> None:
    torch.manual_seed(0)
    model = StatesAll().eval()
    program = trace_quietly(model, (torch.randn(2, 6, 8),))
    assert program.graph.inputs[0][1].shape == ("B", "T", 8)
    matches_torch(program, model, (torch.randn(3, 11, 8),), tmp_path, "states_all")


class PrefixIntoBuffer(nn.Module):
    """A cell loop over all but the last step, written one step on (``hs[:, t + 1] = h``): the
    merged layer must not run the step the loop skips."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        hs = torch.zeros(b, t, 8)
        h = torch.zeros(b, 8)
        for k in range(t - 1):
            h = self.cell(x[:, k], h)
            hs[:, k + 1] = h
        return hs


def test_a_loop_over_part_of_the_sequence_into_a_buffer_is_exact(tmp_path) -> None:
    torch.manual_seed(0)
    model = PrefixIntoBuffer().eval()
    program = rnnc.trace(model, (torch.randn(2, 6, 4),))
    matches_torch(program, model, (torch.randn(3, 6, 4),), tmp_path, "prefix")


def test_an_empty_box_write_changes_nothing(tmp_path) -> None:
    class EmptyBox(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * 2
            y[:, 3:1] = 0.0  # empty in torch
            return y

    program = rnnc.trace(EmptyBox().eval(), (torch.randn(2, 7, 4),))
    matches_torch(program, EmptyBox().eval(), (torch.randn(3, 7, 4),), tmp_path, "empty_box")
