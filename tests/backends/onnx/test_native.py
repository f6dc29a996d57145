"""torch's nn.LSTM / nn.GRU / nn.RNN exported as the native ONNX ops (or Scan for projections),
checked against torch itself: layers, directions, packed lengths, dynamic length and batch."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from onnx_test_helpers import as_tuple, assert_all_close, random_states, run_ort, session, torch_rnn_program
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnc
from rnnc.backends.onnx.native import native_kind
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS

MODELS = {
    "lstm": lambda: torch.nn.LSTM(6, 8, batch_first=True),
    "lstm-2l-bidir": lambda: torch.nn.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True),
    "lstm-proj-bidir": lambda: torch.nn.LSTM(6, 8, num_layers=2, bidirectional=True, proj_size=3, batch_first=True),
    "lstm-nobias-timemajor": lambda: torch.nn.LSTM(6, 8, bias=False),
    "gru-2l-bidir": lambda: torch.nn.GRU(6, 8, num_layers=2, bidirectional=True, batch_first=True),
    "gru-nobias": lambda: torch.nn.GRU(6, 8, bias=False, batch_first=True),
    "rnn-tanh-3l": lambda: torch.nn.RNN(6, 8, num_layers=3, batch_first=True),
    "rnn-relu-bidir": lambda: torch.nn.RNN(6, 8, nonlinearity="relu", bidirectional=True, batch_first=True),
}


def _torch(module, x, states):
    h = states[0] if len(states) == 1 else tuple(states)
    with torch.no_grad():
        y, finals = module(x, h)
    return [y, *as_tuple(finals)]


@pytest.mark.parametrize("key", MODELS)
@pytest.mark.parametrize("batch, steps", [(1, 1), (5, 16), (5, 1000)])
def test_native_layer_matches_torch(key, batch, steps):
    torch.manual_seed(0)
    module = MODELS[key]().eval()
    program = torch_rnn_program(module)
    model = rnnc.export_onnx(program)
    ops = {n.op_type for n in model.graph.node}
    assert ("Scan" in ops) == (getattr(module, "proj_size", 0) > 0), ops  # projection -> Scan, else native
    shape = (batch, steps, 6) if module.batch_first else (steps, batch, 6)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(steps))
    states = random_states(program, batch)
    got = run_ort(model, x, *states)
    assert_all_close(got, _torch(module, x, states), "onnxruntime", f"{key} B={batch} T={steps} vs torch")
    if steps < 1000:
        assert_all_close(got, as_tuple(program.run(x, *states)), "onnxruntime", f"{key} vs interp")


@pytest.mark.parametrize("key", ["lstm-2l-bidir", "lstm-proj-bidir", "gru-2l-bidir", "rnn-relu-bidir"])
def test_packed_lengths_match_torch_packed_sequence(key):
    torch.manual_seed(1)
    module = MODELS[key]().eval()
    program = torch_rnn_program(module, with_lengths=True)
    sess = session(rnnc.export_onnx(program))
    lengths = torch.tensor([9, 4, 1, 7, 9])
    x = torch.randn(5, 9, 6)
    states = random_states(program, 5)
    got = run_ort(sess, x, lengths, *states)
    h = states[0] if len(states) == 1 else tuple(states)
    with torch.no_grad():
        packed, finals = module(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), h)
    y, _ = pad_packed_sequence(packed, batch_first=True, total_length=9)
    assert_all_close(got, [y, *as_tuple(finals)], "onnxruntime", f"{key} packed vs torch")
    assert_all_close(got, as_tuple(program.run(x, lengths, *states)), "onnxruntime", f"{key} packed vs interp")


def test_gate_order_is_checked_not_assumed():
    """A user cell that calls itself "lstm" but differs (here: gates in another order) is not
    given to the native op; it goes through Scan and keeps its own numbers."""
    real = CELLS["lstm"].build_cell(4, 5)
    split = next(n for n in real.step.nodes if n.op == "split")
    i, f, g, o = split.outputs
    swapped = replace(split, outputs=(f, i, g, o))  # i and f trade places
    step = replace(real.step, nodes=tuple(swapped if n is split else n for n in real.step.nodes))
    fake = replace(real, step=step)
    assert native_kind(real) == "LSTM"
    assert native_kind(fake) is None
    weights = [[{p: torch.randn(t.shape) for p, t in fake.step.params}]]
    program = rnn_program([fake], weights, with_states=True)
    model = rnnc.export_onnx(program)
    assert "Scan" in {n.op_type for n in model.graph.node}
    x = torch.randn(2, 6, 4)
    states = random_states(program, 2)
    assert_all_close(run_ort(model, x, *states), as_tuple(program.run(x, *states)), "onnxruntime", "fake lstm")
