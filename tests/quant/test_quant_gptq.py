"""GPTQ weight rounding: the calibrated Hessians, the error-compensating rounding itself, and the
quantized models it produces.

References: torch (``X^T X`` and the GRU's own hidden states for the Hessians), round-to-nearest
on the same weight (GPTQ must lower the layer's output error ``||X W^T - X Q^T||``), the quantized
IR in the interpreter (what the ONNX export must compute) and the fp32 model.
"""

from __future__ import annotations

import pytest
import torch
from quant_helpers import inputs, ort_run, traced

import rnnc
from rnnc.errors import UserInputError
from rnnc.quant import calibrate, calibration_batches
from rnnc.quant.gptq import gptq_quantize
from rnnc.quant.weights import quantize_weight
from rnnc.tolerances import assert_close


def _correlated(n: int = 1500, width: int = 64, seed: int = 0) -> torch.Tensor:
    """Inputs living mostly in an 8-dimensional subspace, plus a little noise and one loud channel."""
    mix = torch.randn(8, width, generator=torch.Generator().manual_seed(100))  # the subspace: same for every seed
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g) @ mix + 0.1 * torch.randn(n, width, generator=g)
    x[:, 5] *= 4.0
    return x


def _out_err(x: torch.Tensor, w: torch.Tensor, deq: torch.Tensor) -> float:
    return float((x @ w.T - x @ deq.T).norm())


@pytest.mark.parametrize("bits,group,act_order", [(4, 32, False), (4, 16, False), (4, 16, True), (8, 32, False)])
def test_gptq_lowers_output_error_vs_round_to_nearest(bits, group, act_order):
    x = _correlated()
    w = torch.randn(40, 64, generator=torch.Generator().manual_seed(1))
    h = x.double().T @ x.double()
    rtn = quantize_weight(w, bits, group)
    q = gptq_quantize(w, h, bits, group, act_order=act_order)
    assert (q.bits, q.group, q.scale.shape) == (rtn.bits, rtn.group, rtn.scale.shape)  # the same format
    assert int(q.q.abs().max()) <= (7 if bits == 4 else 127)
    assert _out_err(x, w, q.dequantize()) < 0.8 * _out_err(x, w, rtn.dequantize())
    held = _correlated(seed=5)  # fresh inputs from the same subspace: not fitted to the sample
    assert _out_err(held, w, q.dequantize()) < _out_err(held, w, rtn.dequantize())


def test_gptq_leaves_dead_and_kept_inputs_alone():
    """Inputs that never fire, and kept (float) channels whose weight column is zero, take none of
    the other columns' error: their codes stay what they were rounded to."""
    x = _correlated()
    x[:, 7] = 0.0  # never active
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(2))
    w[:, 3] = 0.0  # a kept channel: zeros reach the integer product
    q = gptq_quantize(w, x.double().T @ x.double(), 4, 32, dead=torch.tensor([3]))
    assert bool((q.q[:, 3] == 0).all())
    rtn = quantize_weight(w, 4, 32)
    assert _out_err(x, w, q.dequantize()) < _out_err(x, w, rtn.dequantize())


def test_calibrated_hessians_match_torch():
    """Top level: H = X^T X of the input projection's input; inside the GRU cell: the sum over every
    step of h_{t-1} h_{t-1}^T, from torch's own hidden states.  Off by default."""
    model, program = traced(1.0)
    x = inputs()
    batches = calibration_batches(program, [x])
    stats = calibrate(program, batches, progress=False, hessian=True)
    xs = x.reshape(-1, 8).double()
    in_site = next(s for s in stats if "/" not in s and stats[s].absmax.numel() == 8)
    assert_close(stats[in_site].hessian, xs.T @ xs, "float64", "reference", "input Hessian")
    with torch.no_grad():
        hs = model.gru(model.in_proj(x))[0]  # [B, T, H]: h_1 .. h_T
    prev = torch.cat([torch.zeros_like(hs[:, :1]), hs[:, :-1]], dim=1).reshape(-1, 32).double()
    rec = [s for s in stats if s.endswith("l0.fwd/t1")]
    assert len(rec) == 1
    # the interpreter's fp32 hidden states against torch's, summed in float64
    assert_close(stats[rec[0]].hessian.float(), (prev.T @ prev).float(), "float32", "interp", "recurrent Hessian")
    assert all(s.hessian is None for s in calibrate(program, batches, progress=False).values())


@pytest.mark.parametrize("scheme,outliers,options", [
    ("w4", "none", {}),
    ("w4", "rotate", {}),
    ("w4a8", "keep", {"recurrent_bits": 8, "gptq_act_order": True}),
    ("w4a8", "smooth", {"group": 16}),
    ("w8a8", "none", {"int8_weights": ()}),
])
def test_gptq_models_run_in_ort_and_track_fp32(scheme, outliers, options):
    model, program = traced(30.0)
    calib = [inputs()]
    rtn = rnnc.quantize(program, calib, scheme, outliers, progress=False, **options)
    q = rnnc.quantize(program, calib, scheme, outliers, progress=False, gptq=True, **options)
    assert all("gptq" in s.note for s in q.report.sites)
    assert [s.bits for s in q.report.sites] == [s.bits for s in rtn.report.sites]
    x = inputs(seed=3)
    kind = "int4a8" if scheme == "w4a8" else "int8"
    assert_close(torch.from_numpy(ort_run(q.export_onnx(), x)[0]), q.run(x), dtype=kind, backend="onnxruntime")
    with torch.no_grad():
        ref = model(x)
    assert float((q.run(x) - ref).norm() / ref.norm()) < 0.15


def test_gptq_lowers_each_sites_calibrated_error():
    """Per site, from its own calibrated Hessian: GPTQ's ``tr(dW H dW^T)`` beats round-to-nearest."""
    _, program = traced(1.0)
    q = rnnc.quantize(program, [inputs()], "w4", "none", progress=False, gptq=True)
    rtn = rnnc.quantize(program, [inputs()], "w4", "none", progress=False, stats=q.stats)
    weights = dict(program.weights)

    def err(qm: rnnc.quant.QuantizedModel, site: str, name: str) -> float:
        scale = next(v for k, v in qm.program.weights.items() if k.startswith(name) and k.endswith(".scale"))
        codes = next(v for k, v in qm.program.weights.items() if k.startswith(name) and k.endswith(".q"))
        from rnnc.ir.ops_quant import dequantize_weight

        d = (weights[name] - dequantize_weight(codes, scale)).double()
        return float(torch.einsum("oi,ij,oj->", d, q.stats[site].hessian, d))

    checked = 0
    for s in q.report.sites:
        if s.weight in weights and s.bits == 4:
            assert err(q, s.site, s.weight) < err(rtn, s.site, s.weight)
            checked += 1
    assert checked >= 2


def test_int8_weights_by_name_and_stats_without_hessians():
    _, program = traced(1.0)
    plain = rnnc.quantize(program, [inputs()], "w4", "none", progress=False)
    assert all(s.hessian is None for s in plain.stats.values())
    q = rnnc.quantize(program, [inputs()], "w4", "none", progress=False, stats=plain.stats, gptq=True,
                      int8_weights=("in_proj.weight",))
    assert any(s.hessian is not None for s in q.stats.values())  # recalibrated: the given stats had none
    bits = {s.weight: s.bits for s in q.report.sites}
    assert bits["in_proj.weight"] == 8 and bits["gru.l0.fwd.weight_ih"] == 4


def test_int4_weights_by_name_in_an_int8_scheme():
    """``int4_weights`` (what scheme auto's ``int4`` level sets): the named weights group-wise int4
    with float activations, the rest as the scheme says; the export computes what the IR does."""
    _, program = traced(1.0)
    q = rnnc.quantize(program, [inputs()], "w8a8", "none", progress=False,
                      int4_weights=("gru.l0.fwd.weight_hh", "head"))
    sites = {s.weight: s for s in q.report.sites}
    assert (sites["gru.l0.fwd.weight_hh"].bits, sites["gru.l0.fwd.weight_hh"].act) == (4, "none")
    assert sites["head.weight"].bits == 4 and sites["gru.l0.fwd.weight_ih"].bits in (7, 8)
    assert sites["gru.l0.fwd.weight_ih"].act != "none"
    x = inputs(seed=3)
    assert_close(torch.from_numpy(ort_run(q.export_onnx(), x)[0]), q.run(x), dtype="int8", backend="onnxruntime")
    smoothed = rnnc.quantize(program, [inputs()], "w8a8", "smooth", progress=False, int4_weights=("head",))
    sites = {s.weight: s for s in smoothed.report.sites}  # an int4 site has no activation to smooth
    assert sites["head.weight"].bits == 4 and not sites["head.weight"].smoothed
    assert_close(torch.from_numpy(ort_run(smoothed.export_onnx(), x)[0]), smoothed.run(x), dtype="int8",
                 backend="onnxruntime")
    with pytest.raises(UserInputError, match="both int4 and int8"):
        rnnc.quantize(program, [inputs()], "w4", "none", progress=False, int4_weights=("head",),
                      int8_weights=("head",))


@pytest.mark.parametrize("options,needle", [({"per_tensor": True}, "per_tensor"), ({"gptq_damp": 0.0}, "damping")])
def test_bad_gptq_options(options, needle):
    _, program = traced(1.0)
    with pytest.raises(UserInputError, match=needle):
        rnnc.quantize(program, [inputs()], "w8", "none", progress=False, gptq=True, **options)


def test_cli_gptq(tmp_path, capsys):
    import json

    import numpy as np

    from rnnc.cli import main

    (tmp_path / "net.py").write_text("import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n"
                                     "        super().__init__()\n        torch.manual_seed(0)\n"
                                     "        self.gru = torch.nn.GRU(32, 32, batch_first=True)\n"
                                     "        self.head = torch.nn.Linear(32, 4)\n\n    def forward(self, x):\n"
                                     "        return self.head(self.gru(x)[0])\n\nmodel = Net\n")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).standard_normal((4, 8, 32)).astype(np.float32))
    assert main(["quantize", str(tmp_path / "net.py"), "--calib", str(tmp_path / "calib.npz"), "--scheme", "w4",
                 "--gptq", "--gptq-act-order", "--int8-weight", "head.weight", "-o", str(tmp_path / "o.onnx"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all("gptq" in s["note"] for s in report["sites"])
    assert {s["weight"]: s["bits"] for s in report["sites"]}["head.weight"] == 8


def test_skip_names_cell_weights_by_program_name():
    """``skip`` takes the names the report prints: program-level cell weight names included."""
    model, program = traced(1.0)
    q = rnnc.quantize(program, [inputs()], "w8", "none", progress=False, skip=("gru.l0.fwd.weight_hh",))
    weights = {s.weight for s in q.report.sites}
    assert "gru.l0.fwd.weight_hh" not in weights and "gru.l0.fwd.weight_ih" in weights
    x = inputs(seed=3)
    with torch.no_grad():
        ref = model(x)
    assert_close(torch.from_numpy(ort_run(q.export_onnx(), x)[0]), q.run(x), dtype="int8", backend="onnxruntime")
    assert float((q.run(x) - ref).norm() / ref.norm()) < 0.05
