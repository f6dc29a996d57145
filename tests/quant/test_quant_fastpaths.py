"""The quantized ONNX fast paths: static int8 conv chains (QLinearConv), hoisted quantized input
projections, mixed int4/int8 weights, group-wise int8, and SmoothQuant folded into the producer.

References: the quantized IR in the interpreter (what each path must compute) and the fp32 torch
model; hoisted and in-loop ONNX renderings of the same Program must agree with each other.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from quant_helpers import host_int8_bits, inputs, op_types, ort_run, traced

import rnnc
from rnnc.errors import UserInputError
from rnnc.quant.outliers import smoothing_factors
from rnnc.quant.weights import mse_group_scales, quantize_groupwise
from rnnc.tolerances import assert_close


class ConvNet(torch.nn.Module):
    """conv -> relu -> conv -> relu -> conv, one hot input channel (Silero's encoder in small)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv1d(6, 16, 3, padding=1)
        self.c2 = torch.nn.Conv1d(16, 16, 3, padding=1, stride=2)
        self.c3 = torch.nn.Conv1d(16, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3(torch.relu(self.c2(torch.relu(self.c1(x)))))


def _conv_data() -> tuple[ConvNet, rnnc.Program, torch.Tensor]:
    x = torch.randn(4, 6, 20, generator=torch.Generator().manual_seed(2))
    x[:, 1] *= 20
    model = ConvNet().eval()
    return model, rnnc.trace(model, (x,)), x


def test_static_conv_chain_is_qlinearconv_and_matches_ir():
    model, program, x = _conv_data()
    q = rnnc.quantize(program, [x], "w8a8", "none", progress=False, static=True)
    onnx_model = q.export_onnx()
    ops = [n.op_type for n in onnx_model.graph.node]
    assert ops.count("QLinearConv") == 2 and "Relu" not in ops  # c1, c2 write uint8 codes; c3 ends the chain
    assert "DynamicQuantizeLinear" not in ops
    got = torch.from_numpy(ort_run(onnx_model, x)[0])
    assert_close(got, q.run(x), dtype="int8chain", backend="onnxruntime")
    with torch.no_grad():
        ref = model(x)
    assert float((got - ref).norm() / ref.norm()) < 0.02  # and still the fp32 function


def test_clipped_scales_never_chain():
    """A percentile scale saturates on purpose; uint8 chain codes would not, so no chain."""
    _, program, x = _conv_data()
    q = rnnc.quantize(program, [x], "w8a8", "clip", progress=False)
    model = q.export_onnx()
    assert "QLinearConv" not in op_types(model.graph)
    assert_close(torch.from_numpy(ort_run(model, x)[0]), q.run(x), dtype="int8", backend="onnxruntime")


def test_smoothing_folds_into_producer():
    model, program, x = _conv_data()
    kept = rnnc.quantize(program, [x], "w8a8", "smooth", progress=False, fold=False)
    folded = rnnc.quantize(program, [x], "w8a8", "smooth", stats=kept.stats, progress=False)
    assert sum(n.op == "mul" for n in kept.program.graph.nodes) == 3
    assert sum(n.op == "mul" for n in folded.program.graph.nodes) == 1  # c2, c3 fold; c1 reads the input
    assert sum("folded" in s.note for s in folded.report.sites) == 2
    site = next(s.site for s in folded.report.sites if s.weight == "c2.weight")  # its input is relu(c1)
    s2 = smoothing_factors(kept.stats[site].absmax, model.c2.weight, 0.5)
    assert_close(folded.program.weights["c1.bias"], (model.c1.bias / s2).detach(), "float32", "reference",
                 "folded smoothing bias")
    with torch.no_grad():
        ref = model(x)
    for q in (kept, folded):
        assert float((q.run(x) - ref).norm() / ref.norm()) < 0.02
    onnx_model = folded.export_onnx()
    assert_close(torch.from_numpy(ort_run(onnx_model, x)[0]), folded.run(x), dtype="int8", backend="onnxruntime")


def _export(q: rnnc.quant.QuantizedModel, hoist: bool | str):
    return q.export_onnx(hoist=hoist)


def _integer_ops(graph) -> list[str]:
    return [n.op_type for n in graph.node if n.op_type in ("MatMulInteger", "MatMulIntegerToFloat", "MatMulNBits")]


# (weight-only int8 GRUs are ONNX's native GRU on widened weights: test_quant_native_int8.py)
@pytest.mark.parametrize("scheme,options", [("w8a8", {}), ("w8a8", {"static": True}),
                                            ("w4", {}), ("w4a8", {"recurrent_bits": 8})])
def test_hoisted_quantized_projection(scheme, options):
    _, program = traced(30.0)
    q = rnnc.quantize(program, [inputs()], scheme, "keep" if scheme.endswith("a8") else "none", progress=False,
                      **options)
    hoisted, looped = _export(q, "all"), _export(q, False)
    scan_of = {id(m): next(n for n in m.graph.node if n.op_type == "Scan") for m in (hoisted, looped)}
    body = {k: v.attribute[0].g for k, v in scan_of.items()}
    # in the loop: W_ih x and W_hh h; hoisted: only W_hh h stays, W_ih x runs once over all steps
    int_top = _integer_ops(hoisted.graph)
    assert len(_integer_ops(body[id(looped)])) == 2 and len(_integer_ops(body[id(hoisted)])) == 1
    assert int_top  # in_proj, the hoisted W_ih and the head
    x = inputs(batch=3, steps=9, seed=7)
    a, b = ort_run(hoisted, x)[0], ort_run(looped, x)[0]
    kind = "int4a8" if scheme == "w4a8" else "int8"
    assert_close(torch.from_numpy(a), torch.from_numpy(b), dtype="int8", backend="onnxruntime")
    assert_close(torch.from_numpy(a), q.run(x), dtype=kind, backend="onnxruntime")


def test_mixed_int4_keeps_recurrent_weights_int8():
    _, program = traced(1.0)
    q = rnnc.quantize(program, [inputs()], "w4a8", "none", progress=False, recurrent_bits=8)
    bits = {s.weight: s.bits for s in q.report.sites}
    assert bits["gru.l0.fwd.weight_hh"] == host_int8_bits() and bits["gru.l0.fwd.weight_ih"] == 4
    plain = rnnc.quantize(program, [inputs()], "w4a8", "none", stats=q.stats, progress=False)
    assert plain.report.q_bytes < q.report.q_bytes < q.report.fp_bytes / 3.5


def test_group_int8_runs_as_matmulnbits():
    _, program = traced(1.0)
    q = rnnc.quantize(program, [inputs()], "w8", "none", progress=False, group8=16)
    assert {s.group for s in q.report.sites if s.shape[1] > 16} == {16}
    model = q.export_onnx()
    assert "MatMulNBits" in op_types(model.graph)
    x = inputs(seed=3)
    assert_close(torch.from_numpy(ort_run(model, x)[0]), q.run(x), dtype="int8", backend="onnxruntime")


def test_weight_only_sites_and_min_weight():
    _, program = traced(1.0)
    q = rnnc.quantize(program, [inputs()], "w8a8", "none", progress=False, weight_only=("in_proj.weight",),
                      min_weight=200)
    acts = {s.weight: s.act for s in q.report.sites}
    assert acts["in_proj.weight"] == "none" and acts["gru.l0.fwd.weight_ih"] == "dynamic"
    assert "head.weight" not in acts  # 4 x 32 = 128 weights < 200: left in float
    model = q.export_onnx()
    x = inputs(seed=3)
    assert_close(torch.from_numpy(ort_run(model, x)[0]), q.run(x), dtype="int8", backend="onnxruntime")


def test_mse_scales_never_worse_than_absmax():
    w = torch.randn(24, 64, generator=torch.Generator().manual_seed(0))
    w[3, 5] = 9.0  # one big weight in a group: absmax wastes levels
    imp = torch.rand(64, generator=torch.Generator().manual_seed(1))
    base, mse = quantize_groupwise(w, 4, 16), mse_group_scales(w, 4, 16, importance=imp)

    def err(qw) -> torch.Tensor:
        return ((qw.dequantize() - w) ** 2 * imp).reshape(24, 4, 16).sum(-1)

    assert bool((err(mse) <= err(base) + 1e-6).all()) and float(err(mse).sum()) < float(err(base).sum())
    assert int(mse.q.abs().max()) <= 7


@pytest.mark.parametrize("options,needle", [({"static": True}, "a8 scheme"), ({"recurrent_bits": 5}, "recurrent"),
                                            ({"group8": 24}, "int8 group")])
def test_bad_fastpath_options(options, needle):
    _, program = traced(1.0)
    with pytest.raises(UserInputError, match=needle):
        rnnc.quantize(program, [inputs()], "w8", "none", progress=False, **options)


def test_hoisted_dynamic_quantizes_per_step():
    """Steps of very different magnitude: one scale for the whole sequence would crush the quiet
    steps; the hoisted rendering keeps one per step (what the in-loop op does)."""
    _, program = traced(1.0)
    q = rnnc.quantize(program, [inputs()], "w8a8", "none", progress=False)
    x = inputs(batch=2, steps=6, seed=4)
    x[:, 2] *= 100.0
    model = _export(q, "all")
    scan_body = next(n for n in model.graph.node if n.op_type == "Scan").attribute[0].g
    assert len(_integer_ops(scan_body)) == 1  # W_ih x left the loop; W_hh h stays
    got = ort_run(model, x)[0]
    assert_close(torch.from_numpy(got), q.run(x), dtype="int8", backend="onnxruntime")
    assert np.isfinite(got).all()


def test_default_export_keeps_dynamic_projections_in_the_loop():
    """By default only the row-wise quantized forms leave the loop (see hoist.split_step); a
    per-sequence input scale (``sequence_scale="all"``; a GRU's default is per step) makes the
    input projection one of them: an integer GEMM over all steps on the sequence's codes."""
    _, program = traced(1.0)
    top = {}
    for options, in_body in (({}, 2), ({"sequence_scale": "all"}, 1), ({"static": True}, 1)):
        q = rnnc.quantize(program, [inputs()], "w8a8", "none", progress=False, **options)
        proto = q.export_onnx()
        scan_body = next(n for n in proto.graph.node if n.op_type == "Scan").attribute[0].g
        assert len(_integer_ops(scan_body)) == in_body, options
        top[str(options)] = [n for n in proto.graph.node if n.op_type == "MatMulIntegerToFloat"]
        if options == {"sequence_scale": "all"}:
            assert_close(torch.from_numpy(ort_run(proto, inputs(seed=4))[0]), q.run(inputs(seed=4)), "int8",
                         "onnxruntime")
    # in_proj and head outside the loop either way; the sequence-scaled input projection joins them
    assert len(top[str({"sequence_scale": "all"})]) == len(top["{}"]) + 1
    with pytest.raises(UserInputError, match="hoist"):
        q.export_onnx(hoist="some")
