"""Weight-only int8 GRU/LSTM/RNN layers export as ONNX's native op on int8-stored weights widened
when onnxruntime loads the model (``native.render_native_int8``): small file, native kernel speed,
and the quantized IR's numbers (its weight-only product is ``x @ (q * scale).T``)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import rnnc
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS
from rnnc.tolerances import assert_close

_NATIVE = {"lstm": "LSTM", "gru": "GRU", "elman": "RNN"}


def _program(name: str, bidirectional: bool, layers: int, lengths: bool):
    torch.manual_seed(0)
    cells, weights = [], []
    for k in range(layers):
        row = []
        for _ in range(2 if bidirectional else 1):
            cell, w = CELLS[name].load_module_class()(8 if k == 0 else (32 if bidirectional else 16), 16).rnnc_layer()
            row.append(w)
        cells.append(cell)
        weights.append(row)
    return rnn_program(cells, weights, bidirectional=bidirectional, with_lengths=lengths)


@pytest.mark.parametrize("name", sorted(_NATIVE))
@pytest.mark.parametrize(("bidirectional", "layers", "lengths"), [(False, 1, False), (True, 2, True)])
def test_weight_only_layer_is_the_native_op_on_int8_weights(name, bidirectional, layers, lengths):
    program = _program(name, bidirectional, layers, lengths)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, 8, generator=gen)
    lens = torch.tensor([7, 2, 5])
    calib = [(torch.randn(4, 7, 8, generator=gen), torch.tensor([7, 7, 3, 5]))] if lengths else [x]
    q = rnnc.quantize(program, calib, "w8", progress=False)
    proto = q.export_onnx()
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count(_NATIVE[name]) == layers and "Scan" not in ops
    int8_bytes = sum(np.prod(i.dims) for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8)
    float_matrices = [i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and
                      len(i.dims) == 3 and i.dims[-1] > 1]  # W/R would be [D, gates*H, in]
    assert int8_bytes > 0 and not float_matrices  # weights stored as int8 codes; biases/scales are vectors
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    args = (x, lens) if lengths else (x,)
    feeds = {}
    for i, meta in enumerate(sess.get_inputs()):
        feeds[meta.name] = args[i].numpy() if i < len(args) else np.zeros(
            [3 if isinstance(d, str) else d for d in meta.shape], np.float32)
    for got, want in zip(sess.run(None, feeds), q.run(*args), strict=True):
        assert_close(torch.from_numpy(got), want, "int8", "onnxruntime")


def test_group_wise_or_int8_activations_keep_their_forms():
    program = _program("gru", False, 1, False)
    x = torch.randn(4, 7, 8)
    for scheme, options, want in (("w4", {"group": 16}, "Scan"), ("w8a8", {}, "Scan")):
        q = rnnc.quantize(program, [x], scheme, progress=False, **options)
        ops = {n.op_type for n in q.export_onnx().graph.node}
        assert want in ops and "GRU" not in ops, scheme
