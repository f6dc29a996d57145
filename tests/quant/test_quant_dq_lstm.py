"""A one-step dynamically quantized LSTM exports as onnxruntime's fused ``DynamicQuantizeLSTM``.

The reference is the quantized IR in the interpreter (``act="dynamic"``: x and h quantized per
step like ``DynamicQuantizeLinear``); the kernel must reproduce it, and every layer that is not
exactly that kernel (several steps, static or kept-channel projections, int4) must not take it.
"""

from __future__ import annotations

from dataclasses import replace

import onnxruntime as ort
import pytest
import torch
from quant_helpers import op_types

import rnnc
from rnnc.backends.onnx.qlstm import is_dq_lstm
from rnnc.errors import UserInputError
from rnnc.ir.graph import freeze_attrs
from rnnc.ir.rnn import rnn_layout
from rnnc.tolerances import assert_close


class Streamer(torch.nn.Module):
    """conv front end -> LSTM over one step per call (a streaming chunk), state in and out."""

    def __init__(self, bidirectional: bool = False, layers: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(4, 16, 3)
        self.rnn = torch.nn.LSTM(16, 24, num_layers=layers, bidirectional=bidirectional, batch_first=True)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        feats = torch.relu(self.conv(x)).mean(dim=2, keepdim=True).transpose(1, 2)  # [B, 1, 16]
        y, (h, c) = self.rnn(feats, (h, c))
        return y, h, c


def _setup(bidirectional: bool, layers: int, steps_dynamic: bool = False, **options):
    d = (2 if bidirectional else 1) * layers
    model = Streamer(bidirectional, layers).eval()
    examples = (torch.randn(1, 4, 10), torch.zeros(d, 1, 24), torch.zeros(d, 1, 24))
    program = rnnc.trace(model, examples, dynamic={"x": {0: "B"}, "h": {1: "B"}, "c": {1: "B"}})
    gen = torch.Generator().manual_seed(1)
    calib = [(torch.randn(8, 4, 10, generator=gen), 0.5 * torch.randn(d, 8, 24, generator=gen),
              torch.randn(d, 8, 24, generator=gen)) for _ in range(3)]
    return rnnc.quantize(program, calib, progress=False, **options), d


def _feeds(batch: int, d: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(batch, 4, 10, generator=gen), 0.5 * torch.randn(d, batch, 24, generator=gen),
            torch.randn(d, batch, 24, generator=gen))


def _compare(q, d: int, batch: int, threads: int, tol: str) -> None:
    proto = q.export_onnx()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    for seed in range(4):
        xs = _feeds(batch, d, seed)
        want = q.run(*xs)
        got = sess.run(None, {i.name: v.numpy() for i, v in zip(sess.get_inputs(), xs, strict=True)})
        for a, b in zip(got, want, strict=True):
            assert_close(torch.from_numpy(a), b, tol, "onnxruntime")


@pytest.mark.parametrize(("bidirectional", "layers"), [(False, 1), (True, 1), (False, 2), (True, 2)])
def test_one_step_lstm_is_one_fused_node_per_layer(bidirectional, layers):
    q, d = _setup(bidirectional, layers, scheme="w8a8")
    ops = [n.op_type for n in q.export_onnx().graph.node]
    assert ops.count("DynamicQuantizeLSTM") == layers
    assert "MatMulIntegerToFloat" not in ops and "Scan" not in ops
    _compare(q, d, batch=1, threads=2, tol="int8")  # batch 1: the same scales as the IR, any thread count
    _compare(q, d, batch=3, threads=1, tol="int8")  # one thread: h quantized over the whole batch, as the IR


def test_batched_multithreaded_stays_within_the_documented_tolerance():
    q, d = _setup(False, 1, scheme="w8a8")
    _compare(q, d, batch=6, threads=2, tol="int8lstm")


def test_layers_that_are_not_the_kernel_keep_their_own_form():
    # several steps: the kernel's whole-sequence x scale is not the IR's per-step one
    model = torch.nn.LSTM(8, 16, batch_first=True)
    program = rnnc.trace(model, (torch.randn(2, 5, 8),))
    q = rnnc.quantize(program, [(torch.randn(4, 5, 8),)], "w8a8", "none", progress=False)
    assert "DynamicQuantizeLSTM" not in op_types(q.export_onnx().graph)
    cell = rnn_layout(next(n for n in q.program.graph.nodes if n.op == "rnn").attr_dict)[0][0]
    assert is_dq_lstm(cell)  # the cell itself is the kernel's; only the length rules it out
    assert not is_dq_lstm(rnn_layout(next(n for n in program.graph.nodes if n.op == "rnn").attr_dict)[0][0])
    for options in ({"scheme": "w8a8", "static": True}, {"scheme": "w4a8", "group": 16}, {"scheme": "w8"}):
        qo, _ = _setup(False, 1, **options)
        assert "DynamicQuantizeLSTM" not in op_types(qo.export_onnx().graph), options


def test_kept_outlier_channels_rule_the_kernel_out():
    q, d = _setup(False, 1, scheme="w8a8", outliers="keep", threshold=1.5, max_fraction=0.2)
    kept = [s for s in q.report.sites if s.kept and "rnn" in s.weight]
    assert kept, "the low threshold should keep some LSTM input channel"
    assert "DynamicQuantizeLSTM" not in op_types(q.export_onnx().graph)
    _compare(q, d, batch=2, threads=2, tol="int8")


def test_static_recipe_with_a_dynamic_lstm():
    q, d = _setup(False, 1, scheme="w8a8", static=True, dynamic=("rnn",))
    acts = {s.weight: s.act for s in q.report.sites}
    assert acts["conv.weight"] == "static"
    assert {a for w, a in acts.items() if w.startswith("rnn.")} == {"dynamic"}
    assert "DynamicQuantizeLSTM" in op_types(q.export_onnx().graph)
    _compare(q, d, batch=1, threads=2, tol="int8")
    with pytest.raises(UserInputError, match="dynamic activation scales need an a8 scheme"):
        rnnc.quantize(torch.nn.Linear(4, 4), [torch.randn(2, 4)], "w8", dynamic=("weight",), progress=False,
                      example_inputs=(torch.randn(2, 4),))


def test_dq_lstm_probe_rejects_other_arithmetic():
    q, _ = _setup(False, 1, scheme="w8a8")
    cell = rnn_layout(next(n for n in q.program.graph.nodes if n.op == "rnn").attr_dict)[0][0]
    assert is_dq_lstm(cell)
    # the same params, but act="none" (float activations): same structure, other numbers
    nodes = tuple(replace(n, attrs=freeze_attrs({**n.attr_dict, "act": "none"})) if n.op == "qlinear" else n
                  for n in cell.step.nodes)
    assert not is_dq_lstm(replace(cell, step=replace(cell.step, nodes=nodes)))
