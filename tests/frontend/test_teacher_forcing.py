"""Teacher-forced decoders and sizes cast with ``int()``: a decoder stepping over ``cat([go_frame,
targets])`` reads T of its T + 1 frames (NVIDIA Tacotron 2's ``while len(mel_outputs) <
decoder_inputs.size(0) - 1``), and ``int(x.size(1) / n)`` computes a length in Python.  Both used
to fix the length at the example's; now batch and length stay symbolic, checked against torch
eager at other sizes in the interpreter and onnxruntime (``loops.py``, ``scan_match.find_loops``,
``symdims.prefix_stop``, ``fx_patches._Int``)."""

from __future__ import annotations

import sys

import pytest
import torch
from program_checks import matches_torch, trace_quietly  # tests/program_checks.py
from torch import nn

import rnnc


class TeacherForced(nn.Module):
    """``kind``: "cell" collects the cell's h (merged as a cell loop), "proj" a projection of it
    (rolled from the IR), "while" is Tacotron 2's spelling; the stacked frames are viewed back
    with ``-1`` (``parse_decoder_outputs``)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.cell = nn.LSTMCell(4, 8)
        self.proj = nn.Linear(8, 4)

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # y [T, B, 4], time-major targets
        go = y.new_zeros(1, y.size(1), 4)
        frames = torch.cat([go, y], 0)  # [T + 1, B, 4]: the decoder reads frames 0 .. T - 1
        h = y.new_zeros(y.size(1), 8)
        c = y.new_zeros(y.size(1), 8)
        outs = []
        if self.kind == "while":
            while len(outs) < frames.size(0) - 1:
                h, c = self.cell(frames[len(outs)], (h, c))
                outs.append(self.proj(h))
        else:
            for t in range(y.size(0)):
                h, c = self.cell(frames[t], (h, c))
                outs.append(h if self.kind == "cell" else self.proj(h))
        out = torch.stack(outs).transpose(0, 1).contiguous()
        return out.view(out.size(0), -1, 4 if self.kind != "cell" else 8)


@pytest.mark.parametrize("kind", ["cell", "proj", "while"])
def test_a_decoder_reading_t_of_t_plus_one_frames_keeps_its_length(kind: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = TeacherForced(kind).eval()
    program = trace_quietly(model, (torch.randn(12, 2, 4),))
    assert program.graph.inputs[0][1].shape == ("T", "B", 4)
    assert len(program.rnn_nodes()) == 1
    for t, b in ((17, 3), (2, 1)):
        matches_torch(program, model, (torch.randn(t, b, 4),), tmp_path, f"tf_{kind}")


class Prefix(nn.Module):
    """A cell loop over the first ``steps(T)`` frames of its input."""

    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.fixed = fixed
        self.cell = nn.GRUCell(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 3]
        h = x.new_zeros(x.size(0), 5)
        outs = []
        for t in range(4 if self.fixed else x.size(1) - 1):
            h = self.cell(x[:, t], h)
            outs.append(h)
        return torch.stack(outs, 1)


def test_a_fixed_count_loop_over_a_prefix_runs_that_many_steps_at_any_length(tmp_path) -> None:
    """The merged layer runs over ``x[:, :4]``, not over what is left of the sequence."""
    torch.manual_seed(0)
    model = Prefix(fixed=True).eval()
    program = trace_quietly(model, (torch.randn(2, 9, 3),))
    assert program.graph.inputs[0][1].shape == ("B", "T", 3)
    for b, t in ((3, 17), (1, 4)):
        matches_torch(program, model, (torch.randn(b, t, 3),), tmp_path, "prefix")


def test_a_loop_stopping_before_the_last_frame_of_its_own_input_is_said_and_right_at_the_example() -> None:
    """``range(T - 1)`` over ``x`` itself: T - 1 steps is no size of an input (at T = 1 it would
    be none), so the trace keeps the example's count, is exact there, and says it fixed T."""
    torch.manual_seed(0)
    model = Prefix(fixed=False).eval()
    x = torch.randn(2, 9, 3)
    with pytest.warns(UserWarning, match="rnnc.trace"):
        program = rnnc.trace(model, (x,))
    matches_torch(program, model, (x,))


class IntCast(nn.Module):
    """``int(x.size(1) / n)`` (Tacotron 2's ``parse_decoder_inputs``) and ``int(x.size(0))``."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(6, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, T]: T frames of 3, paired
        x = x.transpose(1, 2)
        b, frames = int(x.size(0)), int(x.size(1) / 2)
        assert isinstance(frames, int) and isinstance(True, int) and not isinstance(0.5, int)
        return self.rnn(x.reshape(b, frames, -1))[0]


def test_int_of_a_size_and_of_a_size_ratio_stay_symbolic(tmp_path) -> None:
    torch.manual_seed(0)
    model = IntCast().eval()
    program = trace_quietly(model, (torch.randn(2, 3, 12),))
    assert program.graph.inputs[0][1].shape == ("B", 3, "T")
    for b, t in ((3, 20), (1, 2)):
        matches_torch(program, model, (torch.randn(b, 3, t),), tmp_path, "int_cast")
    assert not {"int", "range"} & set(vars(sys.modules[__name__]))  # the model's module is as it was
    assert int("12") == 12 and int(7.9) == 7


class FixedCount(nn.Module):
    """A cell loop of 6 steps -- a constant -- over ``cat([go, y])``, traced where T is 6."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 6)

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # [B, T, 4]
        frames = torch.cat([y.new_zeros(y.size(0), 1, 4), y], 1)
        h = y.new_zeros(y.size(0), 6)
        for t in range(6):
            h = self.cell(frames[:, t], h)
        return h


def test_a_fixed_count_that_equals_the_example_length_stays_a_count() -> None:
    """The guess that the loop stops one short of the end fails the check at another length; the
    retry without guesses runs the 6 steps at any length."""
    torch.manual_seed(0)
    model = FixedCount().eval()
    program = trace_quietly(model, (torch.randn(2, 6, 4),))
    assert program.graph.inputs[0][1].shape == ("B", "T", 4)
    for b, t in ((3, 9), (2, 13)):
        matches_torch(program, model, (torch.randn(b, t, 4),))


class IntAsType(nn.Module):
    """``int`` used as a type, not a cast: the trace's stand-in for it must not change the model."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.k, self.code = kind, 2, "2"
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rnn(x)[0]
        if self.kind == "is":
            return y * self.k if type(self.k) is int else y
        if self.kind == "dtype":
            return y + torch.ones(4, dtype=int)
        if self.kind == "base":
            return y * int(self.code, base=16)
        return y * int.from_bytes(b"\x02", "little")


@pytest.mark.parametrize("kind", ["is", "dtype", "base", "from_bytes"])
def test_a_model_using_int_as_a_type_traces_as_before(kind: str) -> None:
    torch.manual_seed(0)
    model = IntAsType(kind).eval()
    program = trace_quietly(model, (torch.randn(2, 5, 3),))
    assert program.graph.inputs[0][1].shape == ("B", "T", 3)
    matches_torch(program, model, (torch.randn(3, 9, 3),))
    assert not {"int", "range"} & set(vars(sys.modules[__name__]))
