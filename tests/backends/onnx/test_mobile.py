"""Exports for phone execution providers (``rnnc export --for``, ``rnnc.export_mobile``).

The verdicts come from onnxruntime's own mobile usability checker (run as a library by
``mobile.coverage``), the numbers from onnxruntime's CPU provider against torch (float) or the
quantized IR (int8), and the rewrites of ``legalize`` are checked against onnxruntime running
the original op.  Every check here is CPU-independent: the int8 QDQ models are run with
onnxruntime's QDQ fusion off (``session.disable_quant_qdq``), i.e. as the graph's own float
meaning, because the phone's kernels (Arm, exact int8 dot products) are not this host's.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx_test_helpers import layer_program

import rnnc
from rnnc.backends.onnx.legalize import legalize
from rnnc.backends.onnx.mobile import coverage, export_mobile
from rnnc.cli import main
from rnnc.errors import UnsupportedError, UserInputError
from rnnc.targets.providers import get_provider
from rnnc.tolerances import assert_close

ACCELERATORS = ("nnapi", "coreml")
RECURRENT_OPS = {"LSTM", "GRU", "RNN", "Scan", "Loop"}


def _session(path: str, qdq_fused: bool = True) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if not qdq_fused:
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _run(sess: ort.InferenceSession, *inputs: torch.Tensor) -> list[torch.Tensor]:
    names = [i.name for i in sess.get_inputs()]
    return [torch.from_numpy(np.asarray(o)) for o in
            sess.run(None, {n: v.numpy() for n, v in zip(names, inputs, strict=True)})]


def _all_fixed(model: onnx.ModelProto) -> bool:
    return all(d.HasField("dim_value") for v in (*model.graph.input, *model.graph.output)
               for d in v.type.tensor_type.shape.dim)


def _check_accelerated(report, model: onnx.ModelProto) -> None:
    c = report.coverage
    assert c.verdict == "YES" and c.partitions == 1 and c.fraction >= 0.95, c.text()
    assert not RECURRENT_OPS & {n.op_type for n in model.graph.node}
    assert _all_fixed(model) and report.problem == ""


# --------------------------------------------------------------------------- float layers
@pytest.mark.parametrize("provider", ACCELERATORS)
@pytest.mark.parametrize("layer", ["lstm2", "gru_bidir", "elman"])
def test_torch_layers_unrolled_match_torch(tmp_path, provider, layer):
    torch.manual_seed(0)
    module = {"lstm2": torch.nn.LSTM(6, 10, num_layers=2, batch_first=True),
              "gru_bidir": torch.nn.GRU(6, 10, bidirectional=True, batch_first=True),
              "elman": torch.nn.RNN(6, 10, batch_first=True)}[layer].eval()
    x = torch.randn(2, 5, 6)
    report = export_mobile(module, (x,), tmp_path / "m.onnx", provider=provider)
    model = onnx.load(report.path)
    _check_accelerated(report, model)
    dirs, layers = (2 if layer == "gru_bidir" else 1), (2 if layer == "lstm2" else 1)
    h0 = torch.randn(layers * dirs, 2, 10)
    c0 = torch.randn(layers * dirs, 2, 10)
    with torch.no_grad():
        ref = module(x, (h0, c0)) if layer == "lstm2" else module(x, h0)
    want = [ref[0], *(ref[1] if layer == "lstm2" else (ref[1],))]
    for path in (report.path, report.ort_path):  # the .ort file runs in the CPU provider too
        got = _run(_session(path), x, h0, *([c0] if layer == "lstm2" else []))
        for g, w in zip(got, want, strict=True):
            assert_close(g, w, "float32", "onnxruntime", msg=f"{layer} for {provider} ({path})")


@pytest.mark.parametrize("cell", ["mingru", "slstm"])
def test_rnnc_cells_unrolled_from_their_step_graphs(tmp_path, cell):
    module, program = layer_program(cell, input_size=6, hidden=8)
    x = torch.randn(1, 4, 6)
    states = [torch.randn(*(1 if d == "B" else d for d in t.shape)) for _, t in program.graph.inputs[1:]]
    report = export_mobile(program, (x, *states), tmp_path / "c.onnx", provider="nnapi", ort=False)
    _check_accelerated(report, onnx.load(report.path))
    got = _run(_session(report.path), x, *states)
    with torch.no_grad():
        want = program.run(x, *states)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, "float32", "onnxruntime", msg=cell)


# --------------------------------------------------------------------------- Silero VAD
@pytest.fixture(scope="module")
def silero():
    from rnnc.data import speech_sample
    from rnnc.frontend.silero import CHUNK, CONTEXT, chunk_inputs, load_inner_model, trace_silero

    audio, rate = speech_sample()
    program = trace_silero()
    calib = chunk_inputs(program.run, audio, 8, rate)  # the first 8 s, real states
    return {"inner": load_inner_model(), "program": program, "audio": audio, "calib": [calib],
            "example": (torch.zeros(1, CONTEXT + CHUNK), torch.zeros(2, 1, 128))}


def _silero_accuracy(path: str, audio: np.ndarray, qdq_fused: bool = True) -> float:
    from rnnc.data import speech_frame_labels
    from rnnc.frontend.silero import CHUNK, CONTEXT

    sess = _session(path, qdq_fused)
    st, cx, probs = np.zeros((2, 1, 128), np.float32), np.zeros((1, CONTEXT), np.float32), []
    for start in range(0, len(audio) - CHUNK + 1, CHUNK):
        chunk = audio[None, start:start + CHUNK]
        out = sess.run(None, {"x": np.concatenate([cx, chunk], 1), "state": st})
        probs.append(out[0][0, 0])
        st, cx = out[1], chunk[:, -64:]
    probs = np.array(probs)
    return float(((probs > 0.5) == speech_frame_labels(len(probs))).mean())


@pytest.mark.parametrize("provider", ACCELERATORS)
def test_silero_streaming_fp32_is_taken_whole_and_matches_the_shipped_model(tmp_path, silero, provider):
    report = export_mobile(silero["inner"], silero["example"], tmp_path / "s.onnx", provider=provider)
    _check_accelerated(report, onnx.load(report.path))
    assert any(r.startswith("Pad -> ") for r in report.rewrites)  # Silero's reflect pad is not NNAPI's/CoreML's
    x = torch.from_numpy(silero["audio"][None, 16000:16576].copy())
    state = silero["calib"][0][1][:, 20:21].contiguous()
    with torch.no_grad():
        want = silero["inner"](x, state)
    for path in (report.path, report.ort_path):
        got = _run(_session(path), x, state)
        for g, w in zip(got, want, strict=True):
            assert_close(g, w, "float32", "onnxruntime", msg=f"Silero for {provider}")


@pytest.mark.parametrize("provider", ACCELERATORS)
def test_silero_int8_for_provider_is_taken_whole_matches_the_quantized_ir_and_keeps_accuracy(
        tmp_path, silero, provider):
    q = rnnc.quantize(silero["program"], silero["calib"], provider=provider, progress=False)
    assert q.provider == f"ep/{provider}"
    report = q.export_mobile(tmp_path / "q.onnx", silero["example"])
    model = onnx.load(report.path)
    _check_accelerated(report, model)
    ops = {n.op_type for n in model.graph.node}
    if provider == "nnapi":  # static QDQ: no integer kernels NNAPI lacks, no dynamic quantization
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "MatMulIntegerToFloat"}
    x, state = silero["calib"][0][0][30:31], silero["calib"][0][1][:, 30:31].contiguous()
    with torch.no_grad():
        want = q.program.run(x, state)
    for path in (report.path, report.ort_path):
        got = _run(_session(path, qdq_fused=False), x, state)
        for g, w in zip(got, want, strict=True):
            assert_close(g, w, "int8qdq", "onnxruntime", msg=f"Silero int8 for {provider} ({path})")
    fp32 = export_mobile(silero["program"], silero["example"], tmp_path / "f.onnx", provider=provider, ort=False)
    acc_fp32 = _silero_accuracy(fp32.path, silero["audio"])
    acc_int8 = _silero_accuracy(report.path, silero["audio"], qdq_fused=False)
    assert acc_int8 >= acc_fp32 - 0.01, (acc_fp32, acc_int8)
    assert report.coverage.nodes > 0 and model.graph.initializer  # a real model, not an empty shell
    import os

    assert os.path.getsize(report.path) * 2 < os.path.getsize(fp32.path)  # one int8 copy of each weight


# --------------------------------------------------------------------------- a trained speech LSTM
@pytest.fixture(scope="module")
def vad():
    from speech_model import train_vad

    return train_vad("lstm")


@pytest.mark.parametrize("provider", ACCELERATORS)
def test_trained_speech_lstm_fp32_and_int8_keep_frame_accuracy(tmp_path, vad, provider):
    from speech_model import stream_speech

    chunk = vad.feats[:, :8]
    fp32 = export_mobile(vad.model, (chunk,), tmp_path / "f.onnx", provider=provider)
    q = rnnc.quantize(vad.model, [vad.train_windows()], provider=provider, example_inputs=(vad.feats,),
                      progress=False)
    int8 = q.export_mobile(tmp_path / "q.onnx", (chunk,))
    accuracy = {}
    for name, report in (("fp32", fp32), ("int8", int8)):
        _check_accelerated(report, onnx.load(report.path))
        sess = _session(report.ort_path or report.path, qdq_fused=False)
        names = [i.name for i in sess.get_inputs()]
        zeros = [np.zeros(i.shape, np.float32) for i in sess.get_inputs()[1:]]

        def step(x, *states, sess=sess, names=names):
            return sess.run(None, dict(zip(names, [x, *states], strict=True)))

        speech = stream_speech(step, vad.feats, 8, zeros)
        accuracy[name] = vad.accuracy(speech)
    with torch.no_grad():
        torch_acc = vad.accuracy((vad.model(vad.feats)[0, :, 0] > 0.5).long().numpy())
    assert torch_acc > 0.9  # the model learned the task (otherwise the comparison means nothing)
    assert abs(accuracy["fp32"] - torch_acc) < 0.005 and accuracy["int8"] >= accuracy["fp32"] - 0.01, accuracy


# --------------------------------------------------------------------------- legalize
def _model(node: onnx.NodeProto, x_shape: list[int], inits: list[onnx.TensorProto],
           y_shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = helper.find_min_ir_version_for(model.opset_import)  # what onnxruntime reads
    return model


def _same_after_legalize(model: onnx.ModelProto, provider: str, x: np.ndarray) -> list[str]:
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    done = legalize(changed, get_provider(provider))
    onnx.checker.check_model(changed, full_check=True)
    after = ort.InferenceSession(changed.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(after, before)  # exact rewrites: bit-identical
    return done


@pytest.mark.parametrize("mode,pads", [("reflect", [0, 3, 0, 2]), ("reflect", [0, 6, 0, 6]),
                                       ("constant", [1, 2, 0, 1])])
def test_pad_becomes_concat_exactly(mode, pads):  # [0, 6, 0, 6]: the widest reflection of 7 columns
    node = helper.make_node("Pad", ["x", "pads", "v"], ["y"], mode=mode)
    inits = [numpy_helper.from_array(np.array(pads, np.int64), "pads"),
             numpy_helper.from_array(np.array(0.5 if mode == "constant" else 0.0, np.float32), "v")]
    model = _model(node, [2, 7], inits, [2 + pads[0] + pads[2], 7 + pads[1] + pads[3]])
    x = np.random.default_rng(0).standard_normal((2, 7)).astype(np.float32)
    done = _same_after_legalize(model, "coreml", x)
    assert done and done[0].startswith("Pad -> ")


@pytest.mark.parametrize("index", [np.array(1), np.array([1, 2])])
def test_constant_gather_becomes_slice_exactly(index):
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=0)
    y_shape = [4, 5] if index.ndim == 0 else [2, 4, 5]
    model = _model(node, [3, 4, 5], [numpy_helper.from_array(index.astype(np.int64), "i")], y_shape)
    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    assert _same_after_legalize(model, "coreml", x)[0].startswith("Gather -> Slice")


def test_softplus_becomes_nnapis_ops_without_overflow():
    node = helper.make_node("Softplus", ["x"], ["y"])
    model = _model(node, [2, 6], [], [2, 6])
    x = np.array([[-100.0, -20.0, -1.0, 0.0, 1.0, 20.0], [50.0, 88.0, 100.0, 1e-3, -1e-3, 3.0]], np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    done = legalize(model, get_provider("nnapi"))
    assert done == ["Softplus -> Abs+Neg+Exp+Add+Log+Relu+Add"] and get_provider("nnapi").supports("Log")
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert np.isfinite(after).all()  # exp(100) would overflow float32; the rewrite never forms it
    assert_close(after, np.logaddexp(0.0, x.astype(np.float64)).astype(np.float32), "float32", "onnxruntime",
                 "softplus rewrite vs float64")
    assert_close(after, before, "float32", "onnxruntime", "softplus rewrite vs onnxruntime's own Softplus")


def test_conv1d_becomes_conv2d_where_the_provider_runs_2d_convs_only():
    w = np.random.default_rng(2).standard_normal((6, 2, 3)).astype(np.float32)  # groups=2, 4 in channels
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2], pads=[1, 2], dilations=[2], group=2)
    model = _model(node, [1, 4, 20], [numpy_helper.from_array(w, "w")], [1, 6, 10])
    x = np.random.default_rng(3).standard_normal((1, 4, 20)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    legalize(model, get_provider("nnapi"))
    assert [n.op_type for n in model.graph.node] == ["Unsqueeze", "Conv", "Squeeze"]
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert_close(after, before, "float32", "onnxruntime", "2-D conv vs 1-D conv")  # another kernel: summation order
    assert not legalize(_model(node, [1, 4, 20], [numpy_helper.from_array(w, "w")], [1, 6, 10]),
                        get_provider("coreml"))  # CoreML takes 1-D convs as they are


# --------------------------------------------------------------------------- errors and the CLI
def test_unknown_provider_and_missing_examples_are_one_sentence(tmp_path):
    lstm = torch.nn.LSTM(4, 8, batch_first=True)
    with pytest.raises(UserInputError, match="nnapi"):
        export_mobile(lstm, (torch.zeros(1, 2, 4),), tmp_path / "m.onnx", provider="nnap")
    with pytest.raises(UserInputError, match="example inputs"):
        export_mobile(lstm, None, tmp_path / "m.onnx", provider="nnapi")


def test_dynamic_int8_is_refused_for_an_accelerator(tmp_path):
    lstm = torch.nn.GRU(4, 8, batch_first=True).eval()
    q = rnnc.quantize(lstm, [torch.randn(2, 6, 4)], "w8a8", progress=False)  # dynamic activation scales
    with pytest.raises(UnsupportedError, match="dynamic"):
        q.export_mobile(tmp_path / "q.onnx", (torch.zeros(1, 3, 4),), provider="nnapi")
    with pytest.raises(UserInputError, match="w8"):
        rnnc.quantize(lstm, [torch.randn(2, 6, 4)], "w8a8", provider="coreml", progress=False)


class _Reciprocals(torch.nn.Module):
    """Mostly an op NNAPI lacks (Reciprocal): the export must say so, naming the op."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(x)
        for _ in range(40):
            y = torch.reciprocal(y)
        return y


def test_a_model_the_provider_cannot_take_gets_one_message_naming_the_ops(tmp_path):
    report = export_mobile(_Reciprocals().eval(), (torch.randn(1, 2, 4),), tmp_path / "m.onnx",
                           provider="nnapi", ort=False)
    assert report.coverage.fraction < 0.9 and "ai.onnx:Reciprocal" in report.problem
    assert coverage(report.path, "coreml").unsupported_ops == ()  # CoreML has Reciprocal


def test_cli_export_for_reports_onnxruntimes_verdict_and_exits_1_below_90_percent(tmp_path, capsys):
    good = tmp_path / "good.py"
    good.write_text("import torch\nmodel = torch.nn.LSTM(4, 8, batch_first=True)\n")
    out = tmp_path / "good.onnx"
    assert main(["export", str(good), "--input-shape", "1,6,4", "--for", "nnapi", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verdict"] == "YES" and summary["partitions"] == 1 and summary["provider"] == "ep/nnapi"
    assert summary["fixed_dims"] == {"B": 1, "T": 6}  # batch and chunk length, both from --input-shape
    assert (tmp_path / "good.with_runtime_opt.ort").is_file() and summary["config"].endswith(".config")
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom test_mobile_models import Reciprocals\nmodel = Reciprocals()\n")
    (tmp_path / "test_mobile_models.py").write_text(
        "import torch\nclass Reciprocals(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.gru = torch.nn.GRU(4, 4, batch_first=True)\n"
        "    def forward(self, x):\n        y, _ = self.gru(x)\n"
        "        for _ in range(40):\n            y = torch.reciprocal(y)\n        return y\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        code = main(["export", str(bad), "--input-shape", "1,2,4", "--for", "nnapi", "--no-ort",
                     "-o", str(tmp_path / "bad.onnx")])
    finally:
        sys.path.remove(str(tmp_path))
    captured = capsys.readouterr()
    assert code == 1 and "ai.onnx:Reciprocal" in captured.err and captured.err.count("\n") == 1


@pytest.mark.parametrize("provider,top", [("nnapi", "int8-static"), ("coreml", "weight-only")])
def test_budgeted_search_stays_within_the_providers_int8_forms(tmp_path, vad, provider, top):
    windows = vad.train_windows(32)
    batches = [windows[i:i + 8] for i in range(0, 32, 8)]
    q = rnnc.quantize(vad.model, batches, "auto", provider=provider, max_loss=0.02, example_inputs=(vad.feats,),
                      progress=False)
    assert q.auto.chosen.loss <= 0.02 and set(q.auto.chosen.plan.values()) <= {top, "weight-only", "float"}
    assert any(level != "float" for level in q.auto.chosen.plan.values())
    report = q.export_mobile(tmp_path / "auto.onnx", (vad.feats[:, :8],))
    _check_accelerated(report, onnx.load(report.path))


def test_cli_quantize_for_a_provider_writes_the_qdq_model_and_its_report(tmp_path, capsys):
    model_file = tmp_path / "m.py"
    model_file.write_text("import torch\ntorch.manual_seed(0)\nmodel = torch.nn.GRU(4, 8, batch_first=True)\n")
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((4, 12, 4)).astype(np.float32))
    out = tmp_path / "q.onnx"
    code = main(["quantize", str(model_file), "--calib", str(calib), "--input-shape", "1,6,4", "--for", "nnapi",
                 "-o", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["verdict"] == "YES" and report["provider"] == "ep/nnapi"
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "MatMul"} <= ops and not ops & RECURRENT_OPS
    assert float(report["distortion vs fp32 (quantized IR, calibration data)"]) < 0.05
    code = main(["quantize", str(model_file), "--calib", str(calib), "--input-shape", "1,6,4", "--for", "coreml",
                 "--scheme", "w4", "-o", str(out)])
    assert code == 2 and "w8" in capsys.readouterr().err  # CoreML takes weight-only int8, not int4


def test_onnxruntimes_own_checker_prints_yes_for_the_silero_exports(tmp_path, silero):
    """The literal verdict lines of ``python -m onnxruntime.tools.check_onnx_model_mobile_usability``
    (its ``analyze_model``), not only rnnc's reading of the same partitioning."""
    import logging
    import pathlib

    from onnxruntime.tools.mobile_helpers.usability_checker import analyze_model

    class Lines(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    q = rnnc.quantize(silero["program"], silero["calib"], provider="nnapi", progress=False)
    for name, export, ep in (("fp32", lambda p: export_mobile(silero["inner"], silero["example"], p,
                                                               provider="coreml", ort=False), "CoreML MLProgram"),
                             ("int8", lambda p: q.export_mobile(p, silero["example"], ort=False), "NNAPI")):
        path = tmp_path / f"{name}.onnx"
        export(path)
        logger = logging.getLogger(f"rnnc.test.checker.{name}")
        logger.setLevel(logging.INFO)
        handler = Lines()
        logger.addHandler(handler)
        analyze_model(pathlib.Path(path), skip_optimize=False, logger=logger)
        assert f"Model should perform well with {ep} as is: YES" in handler.lines, handler.lines


@pytest.mark.parametrize("provider", ["ort-mobile", "xnnpack"])
def test_cpu_providers_keep_recurrent_ops_and_int8_scan_bodies_read_their_weights(tmp_path, vad, provider):
    """Providers on the CPU run onnxruntime's recurrent kernels in place: nothing is written out
    step by step, and a QDQ weight read only inside a Scan body survives the rewrites."""
    chunk = vad.feats[:, :8]
    fp32 = export_mobile(vad.model, (chunk,), tmp_path / "f.onnx", provider=provider, ort=False)
    assert {n.op_type for n in onnx.load(fp32.path).graph.node} & {"LSTM", "Scan"}
    q = rnnc.quantize(vad.model, [vad.train_windows()], provider=provider, example_inputs=(vad.feats,),
                      progress=False)
    report = q.export_mobile(tmp_path / "q.onnx", (chunk,))
    model = onnx.load(report.path)
    assert "Scan" in {n.op_type for n in model.graph.node} and report.problem == ""
    zeros = [torch.zeros(1, 1, 48), torch.zeros(1, 1, 48)]
    with torch.no_grad():
        want = q.program.run(chunk)
    for path in (report.path, report.ort_path):
        got = _run(_session(path, qdq_fused=False), chunk, *zeros)
        assert_close(got[0], want if not isinstance(want, tuple) else want[0], "int8qdq", "onnxruntime",
                     msg=f"{provider} int8 ({path})")
