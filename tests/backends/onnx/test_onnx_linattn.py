"""Matrix-state layers exported as onnxruntime's ``com.microsoft.LinearAttention``: against the
module at other batch sizes and lengths with initial states, a two-layer bidirectional packed
Program against the interpreter, the same model as a Scan (``hoist=False``) agreeing, and the
exports that must not use the contrib op (mobile providers, quantized cells)."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx_test_helpers import run_ort

import rnnc
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS
from rnnc.tolerances import assert_close

VARIANTS = {"gla": {}, "retnet": {}, "hgrn2": {"lower_bound": 0.3}, "deltanet": {},
            "gated-deltanet": {"gated": True}, "mamba2": {"state_size": 5}}


def _module(variant: str, width: int = 6) -> torch.nn.Module:
    torch.manual_seed(5)
    return CELLS[variant.removeprefix("gated-")].load_module_class()(width, 16, num_heads=2,
                                                                      **VARIANTS[variant]).eval()


def _ops(model) -> set[str]:
    return {n.op_type for n in model.graph.node}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_linear_attention_matches_the_module(variant: str) -> None:
    module = _module(variant)
    cell = module.rnnc_layer()[0]
    model = rnnc.export_onnx(module, (torch.randn(2, 5, 6),))
    assert "LinearAttention" in _ops(model) and "Scan" not in _ops(model)
    assert any(o.domain == "com.microsoft" for o in model.opset_import)
    x = torch.randn(3, 37, 6, generator=torch.Generator().manual_seed(1))
    s0 = torch.randn(1, 3, *cell.states[0].shape, generator=torch.Generator().manual_seed(2)) * 0.5
    y, s_out, s_n = run_ort(model, x, s0)
    with torch.no_grad():
        want_y, (want_s,) = module(x, (s0[0],))
    assert_close(y, want_y, "float32", "onnxruntime", f"{variant} y")
    assert_close(s_out, want_s, "float32", "onnxruntime", f"{variant} S")
    assert_close(s_n[0], want_s, "float32", "onnxruntime", f"{variant} S_n")
    for scan in (rnnc.export_onnx(module, (torch.randn(2, 5, 6),), hoist=False),
                 rnnc.export_onnx(module, (torch.randn(2, 5, 6),), linear_attention=False)):
        assert "Scan" in _ops(scan) and "LinearAttention" not in _ops(scan)
        assert not any(o.domain == "com.microsoft" for o in scan.opset_import)
        assert_close(run_ort(scan, x, s0)[0], y, "float32", "onnxruntime", f"{variant} Scan vs LinearAttention")


@pytest.mark.parametrize("variant", ["gla", "gated-deltanet", "mamba2"])
def test_bidirectional_packed_two_layers(variant: str) -> None:
    rows = [[_module(variant) for _ in range(2)], [_module(variant, width=32) for _ in range(2)]]
    built = [[m.rnnc_layer() for m in row] for row in rows]
    prog = rnn_program([row[0][0] for row in built], [[w for _, w in row] for row in built], bidirectional=True,
                       batch_first=True, with_lengths=True)
    model = rnnc.export_onnx(prog)
    assert "LinearAttention" in _ops(model)
    x = torch.randn(3, 29, 6, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([29, 11, 17])
    s0 = torch.zeros(4, 3, *built[0][0][0].states[0].shape)  # the export exposes the initial states
    for got, want, what in zip(run_ort(model, x, lengths, s0), prog.run(x, lengths), ("y", "S"), strict=True):
        assert_close(got, want, "float32", "onnxruntime", f"{variant} {what}")


def test_quantized_and_mobile_exports_keep_the_scan(tmp_path) -> None:
    module = _module("retnet")
    prog = rnnc.trace(module, (torch.randn(2, 5, 6),))
    q = rnnc.quantize(prog, [torch.randn(2, 9, 6)], "w8a8", progress=False)
    assert "LinearAttention" not in _ops(q.export_onnx())
    from rnnc.backends.onnx.mobile import export_mobile

    export_mobile(prog, (torch.randn(1, 4, 6),), tmp_path / "m.onnx", provider="nnapi", ort=False)
    mobile = onnx.load(tmp_path / "m.onnx")
    assert "LinearAttention" not in _ops(mobile) and not any(o.domain == "com.microsoft"
                                                             for o in mobile.opset_import)
