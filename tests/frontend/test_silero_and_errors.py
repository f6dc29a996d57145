"""Silero VAD on real audio (TorchScript converter) and every error path of the frontend."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnc.data import speech_frame_labels, speech_sample
from rnnc.errors import UnsupportedError, UserInputError
from rnnc.frontend import trace
from rnnc.frontend.silero import load_inner_model, stream, trace_silero


def test_silero_vad_matches_original_on_real_audio() -> None:
    audio, rate = speech_sample()
    assert rate == 16000
    audio = torch.from_numpy(audio)
    program = trace_silero()
    assert len(program.rnn_nodes()) == 1
    want = stream(load_inner_model(), audio)
    got = stream(program.run, audio)
    assert got.shape == want.shape and want.shape[1] > 900
    assert (got - want).abs().max().item() <= 1e-5
    # the probabilities are meaningful: they agree with the sample's speech labels
    labels = torch.from_numpy(speech_frame_labels(want.shape[1]))
    assert ((want[0] > 0.5).long() == labels).float().mean() > 0.9


class WithConv2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)


def test_layer_without_handler_is_captured_through_torch_export() -> None:
    """nn.Conv2d has no fx handler: it goes through torch.export (core ATen) and keeps its
    qualified weight names and the symbolic batch it was given."""
    model = WithConv2d().eval()
    program = trace(model, torch.randn(2, 1, 5, 5), dynamic=[{0: "B"}])
    assert [n.attr("target") for n in program.graph.nodes if n.op == "aten"] == ["conv2d.default"]
    assert "enc.0.weight" in program.weights
    x = torch.randn(3, 1, 5, 5)
    torch.testing.assert_close(program.run(x), model(x), rtol=1e-5, atol=1e-6)


def test_transformer_traces_through_torch_export() -> None:
    model = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                           dim_feedforward=8).eval()
    src, tgt = torch.randn(3, 1, 8), torch.randn(2, 1, 8)
    program = trace(model, (src, tgt))
    with torch.no_grad():
        torch.testing.assert_close(program.run(src, tgt), model(src, tgt), rtol=1e-4, atol=1e-5)


class Cumsum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, dim=1)


def test_function_without_handler_is_captured() -> None:
    x = torch.randn(2, 3)
    program = trace(Cumsum(), x)
    torch.testing.assert_close(program.run(x), torch.cumsum(x, dim=1))


class NonZero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(x)


def test_data_dependent_shape_is_refused_naming_the_aten_op_and_the_line() -> None:
    with pytest.raises(UnsupportedError, match=r"nonzero.* at test_silero_and_errors\.py:\d+"):
        trace(NonZero(), torch.randn(2, 3))


class DataBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x


def test_data_dependent_branch_is_refused() -> None:
    with pytest.raises(UnsupportedError, match=r"control flow on tensor data .* at test_silero_and_errors\.py:\d+"):
        trace(DataBranch(), torch.ones(2, 3))


#: latent_ode's ``assert(not torch.isnan(new_y).any())`` in a cell stepped in a loop; compiled here,
#: not in this file: pytest rewrites a test module's asserts, and a user's model is not rewritten
ASSERTS = """
import torch
from torch import nn


class Asserts(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(4, 5)
        self.batch_first = True

    def forward(self, x):
        self._validate(x > -1e9)
        h = x.new_zeros(x.size(0), 5)
        assert x.abs().max() < 1e6, "inputs out of range"
        for t in range(x.size(1)):
            h = self.cell(x[:, t], h)
            assert (not torch.isnan(h).any())
        if not (h == h).all():
            raise ValueError(f"the state of {x.shape} has NaNs")
        if torch.isinf(h).any():
            raise RuntimeError("diverged")
        return h

    def _validate(self, mask):  # pytorch-crf's: the raise is followed by the function's end
        if mask is not None:
            no_empty_seq = not self.batch_first and mask[0].all()
            no_empty_seq_bf = self.batch_first and mask[:, 0].all()
            if not no_empty_seq and not no_empty_seq_bf:
                raise ValueError("mask of the first timestep must all be on")
"""


def test_asserts_on_tensor_data_are_said_once_each_and_dropped() -> None:
    """An ``assert`` on tensor data (a NaN check), or an ``if`` that only raises (pytorch-crf's
    ``_validate``), held on the example -- the model ran there -- and is a check, not a branch:
    the Program does not check it, and the trace says so once per line (it was refused as
    control flow, naming no line).  A branch on data is still refused."""
    import warnings

    from program_checks import matches_torch  # tests/program_checks.py

    space: dict[str, object] = {}
    exec(compile(ASSERTS, "asserting_model.py", "exec"), space)  # noqa: S102 -- the model's source, above
    torch.manual_seed(0)
    model = space["Asserts"]().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = trace(model, torch.randn(2, 6, 4))
    said = [str(w.message) for w in caught if "the check at" in str(w.message)]
    assert sorted(m.split()[4] for m in said) == [f"asserting_model.py:{n}" for n in (15, 18, 19, 21, 29)], said
    assert program.graph.inputs[0][1].shape[:2] == ("B", "T")
    matches_torch(program, model, (torch.randn(3, 9, 4),))


def test_wrong_example_inputs() -> None:
    lstm = nn.LSTM(4, 8, batch_first=True)
    with pytest.raises(UserInputError, match="fails on the example inputs"):
        trace(lstm, torch.randn(2, 5, 3))
    with pytest.raises(UserInputError, match="example input #0 is a list"):
        trace(lstm, ([1.0, 2.0],))
    with pytest.raises(UserInputError, match="torch.nn.Module"):
        trace(lambda x: x, torch.randn(2))
    with pytest.raises(UserInputError, match="dynamic has 2 entries"):
        trace(lstm, torch.randn(2, 5, 4), dynamic=[{0: "B"}, {}])


def test_explicit_dynamic_dims() -> None:
    lstm = nn.GRU(4, 8, batch_first=True)
    program = trace(lstm, torch.randn(2, 5, 4), dynamic=[{0: "N"}])
    assert program.graph.inputs[0][1].shape == ("N", 5, 4)
    with pytest.raises(UserInputError):
        program.run(torch.randn(2, 6, 4))


CAUGHT = """
from torch import nn


class Caught(nn.Module):
    def forward(self, x):
        try:
            assert (x > 0).all()
            return x + 1
        except AssertionError:
            return x
"""


def test_an_assert_caught_by_the_model_is_control_flow_and_refused() -> None:
    """An assert inside ``try`` whose ``except`` takes another path is a branch on data: refused
    (taken for a check, the Program returned ``x + 1`` where torch returns ``x``)."""
    space: dict[str, object] = {}
    exec(compile(CAUGHT, "caught_model.py", "exec"), space)  # noqa: S102 -- the model's source, above
    with pytest.raises(UnsupportedError, match=r"control flow on tensor data .* at caught_model\.py:8"):
        trace(space["Caught"]().eval(), torch.rand(2, 3) + 0.1)
