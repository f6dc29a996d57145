"""int8 ONNX that is exact on the CPU it is built for, checked in onnxruntime on two kinds of CPU.

``cpu/host`` runs natively (whatever this machine is, its detected format must be exact here);
``cpu/x86-avx2`` runs under an emulated AVX2 CPU without VNNI (``emulated_avx2``), where a
full-range int8 weight is wrong.  Independent reference: the quantized IR in the interpreter,
whose integer sums are exact by construction (``rnnc.ir.ops_quant``).
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import rnnc
from rnnc.errors import UserInputError
from rnnc.tolerances import assert_close


class ConvGru(torch.nn.Module):
    """A small conv front end (ConvInteger, or QLinearConv with static scales) before a GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(12, 24, 3, padding=1)
        self.gru = torch.nn.GRU(24, 32, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2))[0]


def _model(kind: str) -> tuple[torch.nn.Module, int]:
    torch.manual_seed(0)
    if kind == "gru":
        return torch.nn.GRU(16, 32, batch_first=True).eval(), 16
    if kind == "lstm":
        return torch.nn.LSTM(16, 32, batch_first=True).eval(), 16
    return ConvGru().eval(), 12


def _data(features: int, seed: int) -> torch.Tensor:
    x = torch.randn(3, 20, features, generator=torch.Generator().manual_seed(seed)) * 2.0
    x[..., 1] *= 8.0  # a wide channel: large activation codes meet large weights
    return x


def _feeds(model, x: torch.Tensor) -> dict[str, np.ndarray]:
    feeds = {}
    for i, v in enumerate(model.graph.input):
        dims = [d.dim_value or x.shape[0] for d in v.type.tensor_type.shape.dim]
        feeds[v.name] = x.numpy() if i == 0 else np.zeros(dims, np.float32)
    return feeds


def _quantized(kind: str, target: str, static: bool = False):
    module, features = _model(kind)
    calib = [_data(features, s) for s in range(4)]
    q = rnnc.quantize(module, calib, "w8a8", example_inputs=(calib[0],), target=target, static=static,
                      progress=False)
    x = _data(features, 10)
    return q, x, q.run(x)


def _first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


def _int8_meta(model) -> dict:
    return json.loads({p.key: p.value for p in model.metadata_props}["rnnc.int8"])


CASES = [("gru", False), ("lstm", False), ("conv_gru", False), ("conv_gru", True)]


def _row(static: bool) -> str:
    """Static conv -> GRU is a QLinearConv chain tail writing the cell's codes: its own row."""
    return "int8chain" if static else "int8"


@pytest.mark.parametrize("kind,static", CASES)
def test_avx2_build_is_exact_on_an_avx2_cpu(emulated_avx2, kind, static):
    q, x, want = _quantized(kind, "cpu/x86-avx2", static)
    assert {s.bits for s in q.report.sites if s.act != "none"} == {7}
    model = q.export_onnx()
    meta = _int8_meta(model)
    assert meta["target"] == "cpu/x86-avx2" and set(meta["formats"]) == {"s7"} and not meta["converted_to_u8"]
    got = emulated_avx2.run(model, _feeds(model, x), threads=1)[0]
    assert_close(torch.from_numpy(got), _first(want), _row(static), "onnxruntime", msg=f"{kind} static={static}")


@pytest.mark.parametrize("kind,static", CASES)
def test_a_vnni_build_is_wrong_on_avx2_unless_exported_for_it(emulated_avx2, kind, static):
    """The bug this guards against: full-range weights, right on VNNI, wrong without it; exporting
    the same quantized program for cpu/x86-avx2 stores them as u8 and it is exact there too."""
    q, x, want = _quantized(kind, "cpu/x86-avx512", static)
    want = _first(want).numpy()
    assert {s.bits for s in q.report.sites if s.act != "none"} == {8}
    as_vnni = q.export_onnx()
    assert set(_int8_meta(as_vnni)["formats"]) == {"s8"}
    wrong = emulated_avx2.run(as_vnni, _feeds(as_vnni, x), threads=1)[0]
    assert np.abs(wrong - want).max() > 0.01 * np.ptp(want)  # saturated: off by more than 1 % of the range
    fixed = q.export_onnx(target="cpu/x86-avx2")
    meta = _int8_meta(fixed)
    assert meta["formats"] == {"u8": len(meta["converted_to_u8"])} and meta["converted_to_u8"]
    got = emulated_avx2.run(fixed, _feeds(fixed, x), threads=1)[0]
    assert_close(torch.from_numpy(got), torch.from_numpy(want), _row(static), "onnxruntime", msg=kind)


@pytest.mark.parametrize("kind,static", CASES)
def test_host_build_is_exact_on_this_cpu(kind, static):
    """Native onnxruntime, whatever CPU runs this: cpu/host's detected format must be exact here."""
    q, x, want = _quantized(kind, "cpu/host", static)
    model = q.export_onnx()
    assert _int8_meta(model)["target"] == "cpu/host"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, _feeds(model, x))[0]
    assert_close(torch.from_numpy(got), _first(want), _row(static), "onnxruntime", msg=kind)


def test_arm_build_keeps_8_bits_and_records_its_target():
    q, _, _ = _quantized("gru", "cpu/arm64-neon")
    assert {s.bits for s in q.report.sites} == {8}
    meta = _int8_meta(q.export_onnx())
    assert meta["target"] == "cpu/arm64-neon" and meta["semantics"] == "exact" and set(meta["formats"]) == {"s8"}


def test_int8_format_override():
    q, _, _ = _quantized("gru", "cpu/x86-avx512")
    module, _ = _model("gru")
    s7 = rnnc.quantize(module, [_data(16, 0)], "w8a8", example_inputs=(_data(16, 0),), target="cpu/x86-avx512",
                       int8_format="s7", progress=False, stats=q.stats)
    assert {s.bits for s in s7.report.sites} == {7} and "/s7" in s7.report.summary().splitlines()[0]
    w8 = rnnc.quantize(module, [_data(16, 0)], "w8", example_inputs=(_data(16, 0),), target="cpu/x86-avx2",
                       progress=False, stats=q.stats)
    assert {s.bits for s in w8.report.sites} == {8}  # weight-only: no integer product, no 7-bit codes


def test_quantize_refuses_a_gpu_target_before_calibrating(tmp_path):
    module, _ = _model("gru")
    with pytest.raises(UserInputError, match="is a GPU; rnnc's int8 models run on CPUs"):
        rnnc.quantize(module, [_data(16, 0)], "w8a8", example_inputs=(_data(16, 0),), target="nvidia/jetson-orin-nano",
                      progress=False)
    q, _, _ = _quantized("gru", "cpu/host")
    with pytest.raises(UserInputError, match="unknown target"):
        q.export_onnx(target="cpu/x86-avx1024")
