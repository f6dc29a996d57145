"""Quantized ONNX: onnxruntime runs it with integer kernels and agrees with the quantized IR."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from quant_helpers import inputs, op_types, ort_run, traced

import rnnc
from rnnc.errors import UnsupportedError
from rnnc.ir import Program
from rnnc.tolerances import assert_close


@pytest.fixture(scope="module")
def gru_program() -> Program:
    return traced(50.0)[1]


@pytest.mark.parametrize("scheme,outliers", [("w8a8", "none"), ("w8a8", "keep"), ("w8a8", "smooth"),
                                             ("w8a8", "rotate"), ("w8a8", "clip"), ("w8", "none"), ("w4", "none")])
def test_gru_onnx_matches_quantized_ir(gru_program, scheme, outliers):
    q = rnnc.quantize(gru_program, [inputs()], scheme, outliers, progress=False)
    model = q.export_onnx()
    onnx.checker.check_model(model, full_check=True)
    ops = op_types(model.graph)
    if scheme == "w8":  # weight-only int8: ONNX's own GRU on int8 codes widened at load
        assert "GRU" in ops and "Scan" not in ops
    else:  # the GRU is decomposed: integer matmuls + gate math
        assert "GRU" not in ops and "Scan" in ops
    if scheme == "w8a8":
        assert "MatMulIntegerToFloat" in ops  # integer product + rescale fused
        assert ("QuantizeLinear" if outliers == "clip" else "DynamicQuantizeLinear") in ops
    if scheme == "w4":
        assert "MatMulNBits" in ops
    x = inputs(seed=3)
    got = ort_run(model, x)[0]
    assert_close(torch.from_numpy(got), q.run(x), dtype="int8rotated" if outliers == "rotate" else "int8",
                 backend="onnxruntime", msg=f"{scheme}/{outliers}")


def test_w4a8_onnx_close_to_ir(gru_program):
    q = rnnc.quantize(gru_program, [inputs()], "w4a8", "keep", progress=False)
    model = q.export_onnx()
    assert {"MatMulNBits", "Gather"} <= op_types(model.graph)
    x = inputs(seed=3)
    assert_close(torch.from_numpy(ort_run(model, x)[0]), q.run(x), dtype="int4a8", backend="onnxruntime")


def test_integer_onnx_is_smaller_and_close_to_fp32(gru_program, tmp_path):
    model, _ = traced(50.0)
    x = inputs(seed=4)
    fp = rnnc.export_onnx(gru_program, None, tmp_path / "fp.onnx")
    q = rnnc.quantize(gru_program, [inputs()], "w8a8", "keep", progress=False)
    q.export_onnx(tmp_path / "q.onnx")
    assert q.report.fp_bytes > 3 * q.report.q_bytes  # 32-wide rows: a f32 scale per row costs 12%
    assert (tmp_path / "q.onnx").stat().st_size < (tmp_path / "fp.onnx").stat().st_size / 2  # graph overhead too
    with torch.no_grad():
        ref = model(x).numpy()
    # documented tolerance of w8a8/keep on this model: 2% of the output range
    assert np.abs(ort_run(fp, x)[0] - ref).max() < 1e-4
    assert np.abs(ort_run(q.export_onnx(), x)[0] - ref).max() < 0.02 * np.abs(ref).max()


def test_conv_becomes_conv_integer():
    conv = torch.nn.Sequential(torch.nn.Conv1d(6, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv1d(8, 4, 3))
    x = torch.randn(2, 6, 10)
    program = rnnc.trace(conv.eval(), (x,))
    x[:, 2] *= 40
    for outliers in ("none", "keep", "clip"):
        q = rnnc.quantize(program, [x], "w8a8", outliers, progress=False, threshold=4.0)
        model = q.export_onnx()
        assert "ConvInteger" in op_types(model.graph)
        assert_close(torch.from_numpy(ort_run(model, x)[0]), q.run(x), dtype="int8", backend="onnxruntime")
    assert q.report.sites[0].op == "conv1d"


def test_quantized_program_text_round_trips(gru_program):
    q = rnnc.quantize(gru_program, [inputs()], "w8a8", "keep", progress=False)
    again = Program.parse(q.program.text(), dict(q.program.weights))
    assert again.hash() == q.program.hash()
    x = inputs(seed=5)
    assert torch.equal(again.run(x), q.run(x))


def test_computed_weights_are_refused_clearly():
    from rnnc.ir import GraphBuilder, Weights

    b = GraphBuilder("g")
    x = b.input("x", ("B", 4))
    wf = b.input("w", (3, 4))
    q = b.cast(wf, dtype="int8")
    s = b.param("s", (3,))
    y = b.qlinear(x, q, s, act="dynamic")
    program = Program(b.build({"y": y}), Weights({"s": torch.ones(3)}))
    with pytest.raises(UnsupportedError, match="needs wq as a Program weight"):
        rnnc.export_onnx(program)
