"""The exporter's exact main-graph clean-ups (``rnnc.backends.onnx.peephole``).

Reference: onnxruntime running the same graph without the pass; the outputs must be identical
(the passes are exact) and the node types what the pass promises.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

import rnnc
from rnnc.backends.onnx.peephole import clean
from rnnc.tolerances import assert_close

U8 = TensorProto.UINT8


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], out_type: int = U8,
           out_shape: tuple[int, ...] = (2, 12)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("q", U8, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", out_type, list(out_shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _run(model: onnx.ModelProto, q: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"q": q})[0]


def _cleaned(model: onnx.ModelProto) -> onnx.ModelProto:
    out = copy.deepcopy(model)
    nodes = list(out.graph.node)
    out.graph.initializer.extend(clean(nodes, {o.name for o in out.graph.output}, list(out.graph.initializer)))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    onnx.checker.check_model(out, full_check=True)
    return out


def _inits(zp_out: int = 3) -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
            numpy_helper.from_array(np.array(3, np.uint8), "z"),
            numpy_helper.from_array(np.array(zp_out, np.uint8), "z2"),
            numpy_helper.from_array(np.array([1], np.int64), "ax"),
            numpy_helper.from_array(np.array([2, 12], np.int64), "shape"),
            numpy_helper.from_array(np.array([0, 12], np.int64), "shape0")]


def _requant_graph(zp: str, shape: str = "shape") -> list[onnx.NodeProto]:
    return [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["f"]),
            helper.make_node("Unsqueeze", ["f", "ax"], ["f1"]),
            helper.make_node("Squeeze", ["f1", "ax"], ["f2"]),
            helper.make_node("Reshape", ["f2", shape], ["f3"]),
            helper.make_node("QuantizeLinear", ["f3", "s", zp], ["y"]),
            helper.make_node("Unsqueeze", ["q", "ax"], ["unused"])]


def test_requantize_at_one_scale_moves_shape_ops_onto_codes():
    q = np.random.default_rng(0).integers(0, 256, (2, 3, 4), dtype=np.uint8)
    model = _model(_requant_graph("z"), _inits(zp_out=3))
    zp_copy = _model(_requant_graph("z2"), _inits(zp_out=3))  # equal zero point under another name
    for m in (model, zp_copy):
        cleaned = _cleaned(m)
        assert [n.op_type for n in cleaned.graph.node] == ["Reshape"]
        np.testing.assert_array_equal(_run(cleaned, q), _run(m, q))


def test_requantize_at_another_zero_point_is_kept():
    q = np.random.default_rng(1).integers(0, 256, (2, 3, 4), dtype=np.uint8)
    model = _model(_requant_graph("z2"), _inits(zp_out=128))  # a re-centering, not the identity
    cleaned = _cleaned(model)
    assert [n.op_type for n in cleaned.graph.node] == ["DequantizeLinear", "Reshape", "QuantizeLinear"]
    np.testing.assert_array_equal(_run(cleaned, q), _run(model, q))


def test_reshape_with_a_zero_dim_keeps_its_producers():
    q = np.random.default_rng(2).integers(0, 256, (2, 3, 4), dtype=np.uint8)
    model = _model(_requant_graph("z", shape="shape0"), _inits())
    cleaned = _cleaned(model)  # 0 copies a dim of the Squeeze's output: the chain must stay
    assert [n.op_type for n in cleaned.graph.node] == ["Unsqueeze", "Squeeze", "Reshape"]
    np.testing.assert_array_equal(_run(cleaned, q), _run(model, q))


def test_graph_outputs_are_never_bypassed_or_dropped():
    nodes = [helper.make_node("Unsqueeze", ["q", "ax"], ["mid"]),
             helper.make_node("Reshape", ["mid", "shape"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("q", U8, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", U8, [2, 12]),
                               helper.make_tensor_value_info("mid", U8, [2, 1, 3, 4])], _inits())
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    cleaned = _cleaned(model)
    assert [n.op_type for n in cleaned.graph.node] == ["Unsqueeze", "Reshape"]
    assert cleaned.graph.node[1].input[0] == "mid"


class _Step(torch.nn.Module):
    """A one-step LSTM streaming model whose exported state handling leaves shape ops to fold."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = torch.nn.LSTM(8, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, (h, c) = self.lstm(x, (state[0:1], state[1:2]))
        return torch.sigmoid(self.head(y[:, -1])), torch.cat([h, c])


def test_exported_step_has_no_dead_nodes_and_matches_torch():
    model = _Step().eval()
    x, state = torch.randn(1, 1, 8), torch.randn(2, 1, 16)
    onnx_model = rnnc.export_onnx(model, (x, state), streaming=True)
    nodes = onnx_model.graph.node
    read = {i for n in nodes for i in n.input} | {o.name for o in onnx_model.graph.output}
    assert all(any(o in read for o in n.output) for n in nodes)
    sess = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = dict(zip([i.name for i in sess.get_inputs()], [x.numpy(), state.numpy()], strict=True))
    got = sess.run(None, feeds)
    with torch.no_grad():
        want = model(x, state)
    for g, w in zip(got, want, strict=False):
        assert_close(torch.from_numpy(g), w, "float32", "onnxruntime", "peephole-cleaned export")


def _recenter_model(z0: int, z1: int, op: str = "MatMulInteger") -> onnx.ModelProto:
    # 7-bit codes: exact on every CPU (int8dot.py), so the two models agree wherever this runs
    w = np.random.default_rng(3).integers(-63, 64, (12, 5), dtype=np.int8)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(z0, np.uint8), "z0"),
             numpy_helper.from_array(np.array(z1, np.uint8), "z1"),
             numpy_helper.from_array(np.array([2, 12], np.int64), "shape"),
             numpy_helper.from_array(w, "w")]
    nodes = [helper.make_node("DequantizeLinear", ["q", "s", "z0"], ["f"]),
             helper.make_node("Reshape", ["f", "shape"], ["f2"]),
             helper.make_node("QuantizeLinear", ["f2", "s", "z1"], ["c"]),
             helper.make_node(op, ["c", "w", "z1"], ["y"])]
    return _model(nodes, inits, out_type=TensorProto.INT32, out_shape=(2, 5))


def test_recentered_codes_feed_the_integer_matmul_directly():
    q = np.random.default_rng(4).integers(0, 256, (2, 3, 4), dtype=np.uint8)
    for z0, z1 in ((0, 128), (128, 0), (7, 7)):  # ReLU codes into symmetric ones, the reverse, the identity
        model = _recenter_model(z0, z1)
        cleaned = _cleaned(model)
        want = ["Reshape", "MatMulInteger"] if z0 == z1 else ["Reshape", "Clip", "MatMulInteger"]
        assert [n.op_type for n in cleaned.graph.node] == want
        np.testing.assert_array_equal(_run(cleaned, q), _run(model, q))


def test_duplicate_nodes_merge_unless_they_write_a_graph_output():
    nodes = [helper.make_node("Unsqueeze", ["q", "ax"], ["a"]),
             helper.make_node("Unsqueeze", ["q", "ax"], ["b"]),  # the same as a: its reader reads a
             helper.make_node("Unsqueeze", ["q", "ax"], ["y2"]),  # the same, but a graph output: kept
             helper.make_node("Concat", ["a", "b"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("q", U8, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", U8, [2, 2, 3, 4]),
                               helper.make_tensor_value_info("y2", U8, [2, 1, 3, 4])], _inits())
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    cleaned = _cleaned(model)
    assert [n.op_type for n in cleaned.graph.node] == ["Unsqueeze", "Unsqueeze", "Concat"]
    assert list(cleaned.graph.node[-1].input) == ["a", "a"]
    q = np.random.default_rng(5).integers(0, 256, (2, 3, 4), dtype=np.uint8)
    sess = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (model, cleaned)]
    for got, want in zip(sess[1].run(None, {"q": q}), sess[0].run(None, {"q": q}), strict=True):
        np.testing.assert_array_equal(got, want)


def test_float16_exact_constants_are_stored_half_and_nothing_else_is():
    """``store_half_exact``: a model whose weights were rounded to float16 values exports them as
    float16 plus a Cast (about half the file) and computes exactly what torch does with the same
    weights; a model with ordinary float32 weights keeps them as they are."""
    torch.manual_seed(0)
    model = torch.nn.LSTM(32, 64, batch_first=True).eval()
    x = torch.randn(1, 9, 32)
    plain = rnnc.export_onnx(model, (x,)).SerializeToString()
    assert not any(t.data_type == TensorProto.FLOAT16 for t in onnx.load_from_string(plain).graph.initializer)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    halved = rnnc.export_onnx(model, (x,))
    stored = {t.name for t in halved.graph.initializer if t.data_type == TensorProto.FLOAT16}
    assert stored and {n.input[0] for n in halved.graph.node if n.op_type == "Cast"} >= stored
    assert len(halved.SerializeToString()) < 0.6 * len(plain)
    sess = ort.InferenceSession(halved.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: (x.numpy() if k == 0 else np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32))
             for k, i in enumerate(sess.get_inputs())}
    with torch.no_grad():
        ref = model(x)[0]
    assert_close(torch.from_numpy(sess.run(None, feeds)[0]), ref, dtype="float32", backend="onnxruntime")
