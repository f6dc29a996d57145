"""The integer-format pass (``backends/onnx/intformat.py``) on hand-built graphs: which weights
it stores as u8 for a saturating CPU, and that a node's weights keep one type."""

from __future__ import annotations

import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from rnnc.backends.onnx.intformat import make_exact


def _lstm_like(w: np.ndarray, r: np.ndarray):
    """A DynamicQuantizeLSTM node reading int8 W and R with one shared zero point (as rnnc emits)."""
    zero = np.zeros((1, r.shape[2]), np.int8)
    node = helper.make_node("DynamicQuantizeLSTM", ["x", "W", "R", "", "", "", "", "", "ws", "zero", "rs", "zero"],
                            ["y"], domain="com.microsoft", hidden_size=r.shape[1])
    inits = [numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (zero, "zero"),
                                                         (np.ones((1, r.shape[2]), np.float32), "ws"),
                                                         (np.ones((1, r.shape[2]), np.float32), "rs"))]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph)


def _init(model, name):
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def test_one_saturating_weight_takes_its_node_partner_along():
    rng = np.random.default_rng(0)
    w7 = rng.integers(-63, 64, (1, 8, 16)).astype(np.int8)  # exact on any CPU by itself
    r8 = rng.integers(-127, 128, (1, 4, 16)).astype(np.int8)  # saturates without VNNI
    model = _lstm_like(w7, r8)
    report = make_exact(model, "cpu/x86-avx2")
    node = model.graph.node[0]
    assert sorted(report.converted) == ["R", "W"]  # W follows R: the op takes one weight type
    assert _init(model, node.input[1]).dtype == np.uint8 and _init(model, node.input[2]).dtype == np.uint8
    np.testing.assert_array_equal(_init(model, node.input[1]).astype(np.int16) - 128, w7)
    assert (_init(model, node.input[9]) == 128).all() and (_init(model, node.input[11]) == 128).all()
    assert "zero" not in {t.name for t in model.graph.initializer}  # the old zero point is gone
    meta = json.loads({p.key: p.value for p in model.metadata_props}["rnnc.int8"])
    assert meta["formats"] == {"u8": 2} and meta["semantics"] == "saturating_pairs"


def test_exact_targets_and_7bit_weights_are_left_alone():
    rng = np.random.default_rng(1)
    r8 = rng.integers(-127, 128, (1, 4, 16)).astype(np.int8)
    model = _lstm_like(r8.copy()[:, :4], r8)
    assert make_exact(model, "cpu/x86-avx512").converted == []  # VNNI adds into int32
    w7 = np.clip(r8, -63, 63)
    model = _lstm_like(w7[:, :4].copy(), w7)
    report = make_exact(model, "cpu/x86-avx2")
    assert report.converted == [] and report.formats == {"s7": 2}
