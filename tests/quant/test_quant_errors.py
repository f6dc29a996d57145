"""Bad schemes, bad combinations and bad calibration data fail with one clear sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from quant_helpers import inputs, traced

import rnnc
from rnnc.errors import UserInputError


@pytest.fixture(scope="module")
def program():
    return traced()[1]


@pytest.mark.parametrize("scheme,outliers,match", [
    ("w16", "none", "unknown quantization scheme 'w16'"),
    ("w8a8", "magic", "unknown outlier treatment 'magic'"),
    ("w8", "clip", "scheme w8 keeps activations in float"),
    ("w4", "keep", "use w4a8 or --outliers none|rotate"),
])
def test_bad_recipe(program, scheme, outliers, match):
    with pytest.raises(UserInputError, match=match):
        rnnc.quantize(program, [inputs()], scheme, outliers, progress=False)


@pytest.mark.parametrize("options,match", [
    ({"alpha": 2.0}, "alpha must be in"), ({"percentile": 20.0}, "percentile must be in"),
    ({"group": 24}, "power of two"), ({"bogus": 1}, "unknown quantization options"),
])
def test_bad_knobs(program, options, match):
    with pytest.raises(UserInputError, match=match):
        rnnc.quantize(program, [inputs()], progress=False, **options)


@pytest.mark.parametrize("data,match", [
    ([], "calibration set is empty"),
    (None, "needs calibration data"),
    ([torch.zeros(0, 5, 8)], "every batch has zero elements"),
    ([torch.randn(2, 5, 7)], r"has shape \(2, 5, 7\), the program expects f32\[B,T,8\]"),
    ([torch.randn(2, 8)], "rank 3"),
    ([torch.full((2, 3, 8), float("nan"))], "NaN or infinite"),
    ([{"y": np.zeros((2, 3, 8), np.float32)}], r"names \['y'\], which are not inputs"),
    ([(torch.randn(2, 3, 8), torch.randn(2, 3, 8))], "has 2 inputs"),
    ([torch.randint(0, 3, (2, 3, 8))], "is torch.int64, the program expects float32"),
    (42, "not supported"),
])
def test_bad_calibration_data(program, data, match):
    with pytest.raises(UserInputError, match=match):
        rnnc.quantize(program, data, progress=False)


def test_bad_calibration_files(program, tmp_path):
    with pytest.raises(UserInputError, match="holds no .npz files"):
        rnnc.quantize(program, tmp_path, progress=False)
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(UserInputError, match="cannot read calibration file"):
        rnnc.quantize(program, bad, progress=False)
    with pytest.raises(UserInputError, match="not an .npz file"):
        rnnc.quantize(program, tmp_path / "missing.txt", progress=False)


def test_missing_inputs_default_to_zeros():
    model = torch.nn.GRU(4, 6, batch_first=True)
    program = rnnc.trace(model, (torch.randn(2, 3, 4), torch.zeros(1, 2, 6)))
    x = torch.randn(3, 5, 4)
    q = rnnc.quantize(program, [{program.graph.input_names[0]: x.numpy()}], progress=False)
    assert len(q.report.sites) == 2
    bad = {program.graph.input_names[0]: x, program.graph.input_names[1]: torch.zeros(1, 2, 6)}
    with pytest.raises(UserInputError, match="dim B is 2 here but 3 in another input"):
        rnnc.quantize(program, [bad], progress=False)


def test_quantize_takes_a_torch_model_traced_on_the_first_batch():
    model, _ = traced()
    q = rnnc.quantize(model, [inputs()], "w8a8", "smooth", progress=False)
    assert q.program.graph.name == "GruNet"
    smoothed = {s.weight: s.smoothed for s in q.report.sites}
    # every site but the state-fed one, whose calibrated h has no outlier channel (plan_site)
    assert smoothed.pop("gru.l0.fwd.weight_hh") is False and all(smoothed.values())
    with pytest.raises(UserInputError, match="needs example_inputs"):
        rnnc.quantize(model, [{"x": inputs()}], progress=False)
