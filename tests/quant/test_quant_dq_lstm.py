"""A one-step dynamically quantized LSTM exports as onnxruntime's fused ``DynamicQuantizeLSTM``.

The reference is the quantized IR in the interpreter (``act="dynamic"``: x and h quantized per
step like ``DynamicQuantizeLinear``); the kernel must reproduce it, and every layer that is not
exactly that kernel (several steps, static or kept-channel projections, int4) must not take it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch
from quant_helpers import op_types

import rnnc
from rnnc.backends.onnx.qlstm import is_dq_lstm
from rnnc.errors import UserInputError
from rnnc.ir import rnn_program
from rnnc.ir.graph import freeze_attrs
from rnnc.ir.rnn import rnn_layout
from rnnc.kernels import CELLS
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


@pytest.mark.parametrize(("bidirectional", "layers", "fused"),
                         [(False, 1, True), (False, 1, False), (True, 1, False), (False, 2, True), (True, 2, False)])
def test_one_step_lstm_is_one_fused_node_per_layer(bidirectional, layers, fused):
    q, d = _setup(bidirectional, layers, scheme="w8a8", sequence_scale="lstm" if fused else "none")
    ops = [n.op_type for n in q.export_onnx().graph.node]
    assert ops.count("DynamicQuantizeLSTM") == layers
    assert "MatMulIntegerToFloat" not in ops and "Scan" not in ops
    _compare(q, d, batch=1, threads=2, tol="int8")  # batch 1: the same scales as the IR, any thread count
    _compare(q, d, batch=3, threads=1, tol="int8")  # one thread: h quantized over the whole batch, as the IR


def test_batched_multithreaded_stays_within_the_documented_tolerance():
    q, d = _setup(False, 1, scheme="w8a8")
    _compare(q, d, batch=6, threads=2, tol="int8lstm")


class Tagger(torch.nn.Module):
    """A sequence model: LSTM stack over T steps (lengths optional) and a linear head."""

    def __init__(self, bidirectional: bool = False, layers: int = 1, proj: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = torch.nn.LSTM(8, 32, num_layers=layers, bidirectional=bidirectional, batch_first=True,
                                 proj_size=proj)
        self.head = torch.nn.Linear((proj or 32) * (2 if bidirectional else 1), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


def _sequences(batch: int, steps: int, seed: int) -> torch.Tensor:
    x = torch.randn(batch, steps, 8, generator=torch.Generator().manual_seed(seed))
    x[:, steps // 2] *= 4  # one loud step: a per-sequence scale differs from per-step ones
    return x


def _feeds_for(sess: ort.InferenceSession, *xs: torch.Tensor) -> dict:
    """The given inputs, then zeros for the exposed initial states (what the IR assumes)."""
    feeds = {}
    for i, meta in enumerate(sess.get_inputs()):
        if i < len(xs):
            feeds[meta.name] = xs[i].numpy()
        else:
            shape = [xs[0].shape[0] if isinstance(d, str) or d is None else d for d in meta.shape]
            feeds[meta.name] = np.zeros(shape, np.float32)
    return feeds


def _check_sequence_model(q, batch: int, threads: int, tol: str) -> None:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(q.export_onnx().SerializeToString(), opts, providers=["CPUExecutionProvider"])
    for seed in range(3):
        x = _sequences(batch, 11, seed)
        assert_close(torch.from_numpy(sess.run(None, _feeds_for(sess, x))[0]), q.run(x), tol, "onnxruntime")


@pytest.mark.parametrize(("bidirectional", "layers"), [(False, 1), (True, 1), (False, 2), (True, 2)])
def test_multi_step_lstm_quantizes_its_input_per_sequence_and_fuses(bidirectional, layers):
    program = rnnc.trace(Tagger(bidirectional, layers).eval(), (_sequences(2, 11, 0),))
    q = rnnc.quantize(program, [(_sequences(16, 11, 9),)], "w8a8", "none", progress=False)
    cells = rnn_layout(next(n for n in q.program.graph.nodes if n.op == "rnn").attr_dict)[0]
    assert all(c.attr("xquant") == "sequence" and is_dq_lstm(c) for c in cells)
    ops = [n.op_type for n in q.export_onnx().graph.node]
    assert ops.count("DynamicQuantizeLSTM") == layers and "Scan" not in ops
    _check_sequence_model(q, batch=1, threads=2, tol="int8")
    _check_sequence_model(q, batch=4, threads=1, tol="int8")
    _check_sequence_model(q, batch=4, threads=2, tol="int8lstm")
    # the per-sequence scale is a quantization choice, not an approximation of one: vs fp32 it is
    # as close as the per-step form (sequence_scale="none", a Scan of per-step integer products)
    per_step = rnnc.quantize(program, [(_sequences(16, 11, 9),)], "w8a8", "none", progress=False,
                             stats=q.stats, sequence_scale="none")
    assert "Scan" in op_types(per_step.export_onnx().graph)
    x = _sequences(8, 11, 5)
    ref = program.run(x)
    err_seq, err_step = (float((m.run(x) - ref).abs().max()) for m in (q, per_step))
    assert err_seq < 0.05 and err_step < 0.05, (err_seq, err_step)


def test_lstm_with_lengths_stays_a_scan_on_the_sequence_codes():
    torch.manual_seed(0)
    m = CELLS["lstm"].load_module_class()(8, 16)
    cell, weights = m.rnnc_layer()
    program = rnn_program([cell], [[weights]], with_lengths=True)
    lengths = torch.tensor([11, 4, 7])
    q = rnnc.quantize(program, [(_sequences(3, 11, 9), lengths)], "w8a8", "none", progress=False)
    proto = q.export_onnx()
    # the kernel would keep updating a finished sequence's h from the padding, and that h would
    # set the step's quantization range: with lengths the layer is a Scan on the sequence's codes
    assert "DynamicQuantizeLSTM" not in op_types(proto.graph)
    assert {"DynamicQuantizeLinear", "Scan"} <= op_types(proto.graph)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    for seed in range(3):
        x = _sequences(3, 11, seed)
        x[1, 4:] = 50.0  # padding beyond a length: the kernel's sequence scale sees it, and so must the IR
        got = sess.run(None, _feeds_for(sess, x, lengths))
        for a, b in zip(got, q.run(x, lengths), strict=True):
            assert_close(torch.from_numpy(a), b, "int8", "onnxruntime")


def test_layers_that_are_not_the_kernel_keep_their_own_form():
    # the per-step form (sequence_scale="none") over several steps: whole-sequence x scale != per-step
    model = torch.nn.LSTM(8, 16, batch_first=True)
    program = rnnc.trace(model, (torch.randn(2, 5, 8),))
    q = rnnc.quantize(program, [(torch.randn(4, 5, 8),)], "w8a8", "none", progress=False, sequence_scale="none")
    assert "DynamicQuantizeLSTM" not in op_types(q.export_onnx().graph)
    cell = rnn_layout(next(n for n in q.program.graph.nodes if n.op == "rnn").attr_dict)[0][0]
    assert is_dq_lstm(cell)  # the cell itself is the kernel's; only the length rules it out
    assert not is_dq_lstm(rnn_layout(next(n for n in program.graph.nodes if n.op == "rnn").attr_dict)[0][0])
    for options in ({"scheme": "w8a8", "static": True}, {"scheme": "w4a8", "group": 16}, {"scheme": "w8"}):
        qo, _ = _setup(False, 1, **options)
        assert "DynamicQuantizeLSTM" not in op_types(qo.export_onnx().graph), options


def test_sequence_quantized_cell_that_is_not_the_kernel_gets_the_codes_in_the_graph():
    # LSTM with a projection: the input is still quantized per sequence, but the cell (W_hr) is no
    # DynamicQuantizeLSTM, so the export quantizes the sequence itself and runs a Scan
    program = rnnc.trace(Tagger(proj=8).eval(), (_sequences(2, 11, 0),))
    q = rnnc.quantize(program, [(_sequences(16, 11, 9),)], "w8a8", "none", progress=False)
    cell = rnn_layout(next(n for n in q.program.graph.nodes if n.op == "rnn").attr_dict)[0][0]
    assert cell.attr("xquant") == "sequence" and not is_dq_lstm(cell)
    ops = op_types(q.export_onnx().graph)
    assert "DynamicQuantizeLSTM" not in ops and {"DequantizeLinear", "Scan"} <= ops
    _check_sequence_model(q, batch=3, threads=2, tol="int8")
    with pytest.raises(rnnc.errors.UnsupportedError, match="int8 input activations"):
        from rnnc.lower.layer import lower_layer
        lower_layer(cell)


def test_kept_outlier_channels_rule_the_kernel_out():
    q, d = _setup(False, 1, scheme="w8a8", outliers="keep", threshold=1.5, max_fraction=0.2)
    kept = [s for s in q.report.sites if s.kept and "rnn" in s.weight]
    assert kept, "the low threshold should keep some LSTM input channel"
    assert "DynamicQuantizeLSTM" not in op_types(q.export_onnx().graph)
    _compare(q, d, batch=2, threads=2, tol="int8")


@pytest.mark.parametrize("fused", [True, False])
def test_static_recipe_with_a_dynamic_lstm(fused):
    q, d = _setup(False, 1, scheme="w8a8", static=True, dynamic=("rnn",), sequence_scale="lstm" if fused else "none")
    acts = {s.weight: s.act for s in q.report.sites}
    assert acts["conv.weight"] == "static"
    assert {a for w, a in acts.items() if w.startswith("rnn.")} == {"dynamic"}
    assert "DynamicQuantizeLSTM" in op_types(q.export_onnx().graph)
    _compare(q, d, batch=1, threads=2, tol="int8")
    with pytest.raises(UserInputError, match="dynamic activation scales need an a8 scheme"):
        rnnc.quantize(torch.nn.Linear(4, 4), [torch.randn(2, 4)], "w8", dynamic=("weight",), progress=False,
                      example_inputs=(torch.randn(2, 4),))


def test_dq_lstm_probe_rejects_other_arithmetic():
    q, _ = _setup(False, 1, scheme="w8a8", sequence_scale="none")
    cell = rnn_layout(next(n for n in q.program.graph.nodes if n.op == "rnn").attr_dict)[0][0]
    assert is_dq_lstm(cell)
    # the same params, but act="none" (float activations): same structure, other numbers
    nodes = tuple(replace(n, attrs=freeze_attrs({**n.attr_dict, "act": "none"})) if n.op == "qlinear" else n
                  for n in cell.step.nodes)
    assert not is_dq_lstm(replace(cell, step=replace(cell.step, nodes=nodes)))
