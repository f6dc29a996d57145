"""The ``rnn`` op: a stack of layers, each rendered natively (LSTM/GRU/RNN) or as a Scan.

Layout work happens once per rnn node: ``x`` is made time-major (``[T, B, I]``, what both
ONNX's recurrent ops and Scan iterate over), each layer reads its slice ``[k*D:(k+1)*D]`` of
the initial states, layers chain through their ``[T, B, D*H]`` outputs, and the final states
are concatenated back to ``[L*D, B, ...]`` like torch.  Nothing depends on the sequence length
or the batch size, so both stay dynamic.
"""

from __future__ import annotations

from onnx import TensorProto

from rnnc.backends.onnx.emit import OnnxGraph
from rnnc.backends.onnx.linattn import render_layer as render_linear_attention
from rnnc.backends.onnx.linattn import usable as linear_attention
from rnnc.backends.onnx.native import dequantized, native_kind, render_native, render_native_int8
from rnnc.backends.onnx.ops import Ins, Types, renders
from rnnc.backends.onnx.qlstm import is_dq_lstm, render_dq_lstm
from rnnc.backends.onnx.scan import render_scan
from rnnc.ir import Cell, Node
from rnnc.ir.rnn import rnn_layout

_DQ_LSTM = "DynamicQuantizeLSTM"
_INT8 = "/int8"  # suffix: the native op with int8-stored weights (native.render_native_int8)


def _zeros_state(g: OnnxGraph, xt: str, lay: int, shape: tuple, dtype: str) -> str:
    """``zeros [L*D, B, *shape]`` for an omitted initial state (the exporter normally exposes them)."""
    batch = g.op("Slice", g.op("Shape", xt), g.const([1]), g.const([2]))
    dims = g.op("Concat", g.const([lay]), batch, g.const(list(shape)), axis=0)
    zero = g.emitter.const([0.0], dtype) if dtype.startswith("float") else g.emitter.const([0], dtype)
    return g.op("Expand", zero, dims)


def _step_mask(g: OnnxGraph, xt: str, lengths: str) -> str:
    """``mask [T, B]``: step t of sample b is real (``t < lengths[b]``)."""
    steps = g.op("Gather", g.op("Shape", xt), g.const(0), axis=0)
    t = g.op("Range", g.const(0), steps, g.const(1))
    return g.op("Less", g.op("Unsqueeze", t, g.const([1])), g.op("Unsqueeze", lengths, g.const([0])),
                hint="step_mask")


def _native(g: OnnxGraph, cell: Cell, weights: list[str | None], one_step: bool, lengths: bool) -> str | None:
    """The one ONNX (or onnxruntime) op for a layer of ``cell``, if its weights are all Program
    weights: ONNX's LSTM/GRU/RNN, or ``DynamicQuantizeLSTM`` for a quantized LSTM without lengths
    whose input is quantized per sequence (``xquant``) or that runs one step (where the kernel's
    whole-sequence input scale is the IR's per-step one).  With lengths the kernel keeps updating
    a finished sequence's working ``h`` from the padding, and that ``h`` still sets the step's
    quantization range (the IR freezes it), so a layer with lengths stays a Scan.  A weight-only
    int8 cell that is the native op on its dequantized weights gets that op with int8-stored
    weights widened at load (``<op>/int8``)."""
    if g.emitter.unroll or not all(w in g.emitter.weights for w in weights):
        return None  # unrolled (a provider without recurrent ops), or weights computed in the graph
    if not lengths and (one_step or cell.attr("xquant") == "sequence") and is_dq_lstm(cell):
        return _DQ_LSTM
    kind = native_kind(cell)
    if kind is None and cell.attr("xquant") is None:
        wide = dequantized(cell)  # weight-only int8: the native op on weights widened at load
        wide_kind = native_kind(wide) if wide is not None else None
        kind = wide_kind + _INT8 if wide_kind else None
    return kind


def _swap_batch_time(g: OnnxGraph, x: str, batch_first: bool, steps: object, features: object, hint: str,
                     to_time_major: bool) -> str:
    """Swap the batch and time axes when the model is batch-first.  A one-step chunk
    (streaming) needs only a free Reshape instead of a Transpose copy."""
    if not batch_first:
        return x
    if steps == 1 and isinstance(features, int):
        shape = [1, -1, features] if to_time_major else [-1, 1, features]
        return g.op("Reshape", x, g.const(shape), hint=hint)
    return g.op("Transpose", x, perm=[1, 0, 2], hint=hint)


@renders("rnn")
def _rnn(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    attrs = node.attr_dict
    cells, dirs, _ = rnn_layout(attrs)
    first = cells[0]
    n_states = len(first.states)
    x, lengths = ins[0], ins[1]
    assert x is not None
    batch_first = attrs["batch_first"]
    hint = node.outputs[0]
    x_type = types[0]
    assert x_type is not None
    steps = g.emitter.dim(x_type.shape[1] if batch_first else x_type.shape[0])
    weights = ins[2 + n_states:]
    one_step = steps == 1
    if one_step and not lengths and all(ins[2:2 + n_states]) and not _native(g, cells[0], weights, True, False):
        xt = x  # an inlined one-step layer flattens [B, 1, I] and [1, B, I] alike (same data)
    else:
        xt = _swap_batch_time(g, x, batch_first, steps, x_type.shape[2], f"{hint}.x_tm", to_time_major=True)
    lay = len(cells) * dirs
    inits = [ins[2 + i] or _zeros_state(g, xt, lay, s.shape, s.dtype) for i, s in enumerate(first.states)]
    seq_lens = mask = None
    finals: list[list[str]] = [[] for _ in range(n_states)]
    at = 0
    for k, cell in enumerate(cells):
        n_p = len(cell.param_names)
        per_dir = [dict(zip(cell.param_names, weights[at + d * n_p: at + (d + 1) * n_p], strict=True))
                   for d in range(dirs)]
        at += dirs * n_p
        layer_inits = inits if len(cells) == 1 else [
            g.op("Slice", s, g.const([k * dirs]), g.const([(k + 1) * dirs]), g.const([0])) for s in inits]
        op_type = _native(g, cell, [n for w in per_dir for n in w.values()], one_step, bool(lengths))
        if op_type and lengths and seq_lens is None:
            seq_lens = g.op("Cast", lengths, to=TensorProto.INT32)
        if op_type == _DQ_LSTM:
            xt, fin = render_dq_lstm(g, cell, xt, layer_inits, per_dir, seq_lens, f"{hint}.l{k}")
        elif op_type and op_type.endswith(_INT8):
            xt, fin = render_native_int8(g, op_type.removesuffix(_INT8), cell, xt, layer_inits, per_dir, seq_lens,
                                         f"{hint}.l{k}")
        elif op_type:
            xt, fin = render_native(g, op_type, cell, xt, layer_inits, per_dir, seq_lens, f"{hint}.l{k}")
        else:
            if cell.attr("xquant") == "sequence":  # not the fused kernel: quantize the sequence here
                codes = g.node("DynamicQuantizeLinear", [xt], f"{hint}.l{k}.xq", 3)
                xt = g.op("DequantizeLinear", *codes, hint=f"{hint}.l{k}.xcodes")
                g.emitter.seq_codes[xt] = (codes[0], codes[1], codes[2])  # hoisted projections read the codes
            if lengths and mask is None:
                mask = _step_mask(g, xt, lengths)
            if steps != 1 and linear_attention(g, cell):
                xt, fin = render_linear_attention(g, cell, xt, layer_inits, per_dir, mask, f"{hint}.l{k}")
            else:
                xt, fin = render_scan(g, cell, xt, layer_inits, per_dir, mask, steps=steps,
                                      hint=f"{hint}.l{k}")
        for i, f in enumerate(fin):
            finals[i].append(f)
    y = _swap_batch_time(g, xt, batch_first, steps, dirs * cells[-1].output_size, hint, to_time_major=False)
    states = [f[0] if len(f) == 1 else g.op("Concat", *f, axis=0, hint=out)
              for f, out in zip(finals, node.outputs[1:], strict=True)]
    return [y, *states]

