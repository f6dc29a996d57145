"""IR op -> ONNX nodes, one small renderer per op, shared by the main graph and Scan bodies.

The meaning of each op is its torch semantics in ``rnnc.ir.ops``/``ops_shape``; each renderer
below restates it with standard ONNX ops (opset >= 14), choosing the form onnxruntime runs
fastest (``Gemm`` with ``transB`` for rank-2 ``linear``, so torch's ``[out, in]`` weights are
used in place, never copied transposed).  Ops register here; the ``rnn`` op registers from
``rnn.py``.  Anything without a renderer is reported by ``supports`` before rendering starts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rnnc.backends.onnx.emit import ONNX_DTYPES, OnnxGraph, to_numpy
from rnnc.backends.onnx.framed import framed_conv, frames_of, side_by_side
from rnnc.ir import Node, TensorType

Ins = list[str | None]
Types = list[TensorType | None]
Renderer = Callable[[OnnxGraph, Node, Ins, Types], list[str]]

RENDERERS: dict[str, Renderer] = {}
#: ops whose ONNX form needs a newer opset than the exporter's minimum
MIN_OPSET: dict[str, int] = {"layer_norm": 17}

_INT64_MIN = int(np.iinfo(np.int64).min)


def renders(*names: str) -> Callable[[Renderer], Renderer]:
    def deco(fn: Renderer) -> Renderer:
        for n in names:
            RENDERERS[n] = fn
        return fn

    return deco


def _simple(op_type: str) -> Renderer:
    def render(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
        return g.node(op_type, ins, node.outputs[0])

    return render


for _ir, _onnx in {
    "neg": "Neg", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp", "log": "Log", "softplus": "Softplus",
    "relu": "Relu", "abs": "Abs", "sqrt": "Sqrt", "reciprocal": "Reciprocal", "cos": "Cos", "sin": "Sin",
    "add": "Add", "sub": "Sub",
    "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "pow": "Pow", "gt": "Greater", "lt": "Less",
    "where": "Where", "matmul": "MatMul",
}.items():
    RENDERERS[_ir] = _simple(_onnx)


@renders("silu")
def _silu(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    return [g.op("Mul", ins[0], g.op("Sigmoid", ins[0]), hint=node.outputs[0])]


@renders("logsigmoid")
def _logsigmoid(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    # log σ(x) = -softplus(-x); onnxruntime's Softplus is the overflow-safe form
    return [g.op("Neg", g.op("Softplus", g.op("Neg", ins[0])), hint=node.outputs[0])]


@renders("gelu")
def _gelu(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    if g.opset >= 20:
        return [g.op("Gelu", ins[0], hint=node.outputs[0])]
    dt = types[0].dtype if types[0] else "float32"
    erf = g.op("Erf", g.op("Mul", ins[0], g.const(np.sqrt(0.5), dt)))
    half = g.op("Mul", ins[0], g.const(0.5, dt))
    return [g.op("Mul", half, g.op("Add", erf, g.const(1.0, dt)), hint=node.outputs[0])]


@renders("const")
def _const(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    return [g.const(node.attr("value"), node.attr("dtype"))]


@renders("cast")
def _cast(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    return g.node("Cast", ins, node.outputs[0], to=ONNX_DTYPES[node.attr("dtype")])


@renders("clamp")
def _clamp(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    dt = types[0].dtype if types[0] else "float32"
    lo, hi = node.attr("min"), node.attr("max")
    bounds = [g.const(v, dt) if v is not None else None for v in (lo, hi)]
    return g.node("Clip", [ins[0], *bounds], node.outputs[0])


@renders("linear")
def _linear(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    x_t = types[0]
    if x_t is not None and x_t.rank == 2:
        return g.node("Gemm", [x, w, b] if b else [x, w], node.outputs[0], transB=1)
    y = g.op("MatMul", x, g.op("Transpose", w, perm=[1, 0]))
    return [g.op("Add", y, b, hint=node.outputs[0])] if b else [y]


def _reduce(op_type: str) -> Renderer:
    def render(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
        axes = node.attr("axes")
        axes = [axes] if isinstance(axes, int) else list(axes)
        keep = int(bool(node.attr("keepdim", False)))
        if op_type == "ReduceSum" or g.opset >= 18:
            return g.node(op_type, [ins[0], g.const(axes)], node.outputs[0], keepdims=keep)
        return g.node(op_type, [ins[0]], node.outputs[0], axes=axes, keepdims=keep)

    return render


RENDERERS.update(sum=_reduce("ReduceSum"), mean=_reduce("ReduceMean"), amax=_reduce("ReduceMax"))


@renders("softmax")
def _softmax(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    return g.node("Softmax", ins, node.outputs[0], axis=node.attr("axis"))


@renders("reshape")
def _reshape(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    # the IR's reshape is defined with ONNX's rules (0 copies a dim, -1 infers)
    return g.node("Reshape", [ins[0], g.const(list(node.attr("shape")))], node.outputs[0])


@renders("transpose")
def _transpose(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    return g.node("Transpose", ins, node.outputs[0], perm=list(node.attr("perm")))


@renders("unsqueeze")
def _unsqueeze(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    return g.node("Unsqueeze", [ins[0], g.const([node.attr("axis")])], node.outputs[0])


@renders("squeeze")
def _squeeze(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    # torch leaves a non-1 dim alone, which shape inference already decided
    if types[0] is not None and node.types[0].rank == types[0].rank:
        return g.node("Identity", ins, node.outputs[0])
    return g.node("Squeeze", [ins[0], g.const([node.attr("axis")])], node.outputs[0])


@renders("slice")
def _slice(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    a = node.attr_dict
    args = [g.const([a[k]]) for k in ("start", "stop", "axis", "step")]
    return g.node("Slice", [ins[0], *args], node.outputs[0])


@renders("select")
def _select(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    # Gather with a scalar index drops the axis, like torch's select; from a unit axis a Squeeze
    # does the same without a copy (onnxruntime aliases it)
    x_t = types[0]
    if x_t is not None and x_t.shape[node.attr("axis")] == 1:
        return g.node("Squeeze", [ins[0], g.const([node.attr("axis")])], node.outputs[0])
    return g.node("Gather", [ins[0], g.const(node.attr("index"))], node.outputs[0], axis=node.attr("axis"))


@renders("flip")
def _flip(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    args = [g.const([-1]), g.const([_INT64_MIN]), g.const([node.attr("axis")]), g.const([-1])]
    return g.node("Slice", [ins[0], *args], node.outputs[0])


@renders("concat")
def _concat(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    return g.node("Concat", ins, node.outputs[0], axis=node.attr("axis"))


@renders("stack")
def _stack(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    axis = g.const([node.attr("axis")])
    parts = [g.op("Unsqueeze", i, axis) for i in ins]
    return g.node("Concat", parts, node.outputs[0], axis=node.attr("axis"))


@renders("split")
def _split(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    sizes = list(node.attr("sizes"))
    return g.node("Split", [ins[0], g.const(sizes)], node.outputs[0], n_out=len(sizes), axis=node.attr("axis"))


@renders("conv1d")
def _conv1d(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    a = node.attr_dict
    w = ins[1]
    if w in g.emitter.weights and types[0] is not None and types[0].dtype == "float32":
        weight = to_numpy(g.emitter.weights[w])
        m = frames_of(types[0], weight.shape, a, g)
        if m is not None:  # an STFT-like front end: one MatMul over stride-long blocks
            w_cat = g.emitter.initializer(f"{node.outputs[0]}.w_cat", side_by_side(weight, a["stride"]))
            y = framed_conv(g, ins[0], w_cat, weight.shape[0], m, a["stride"], g.emitter.dim(types[0].shape[2]),
                            node.outputs[0])
            if len(ins) > 2 and ins[2]:
                y = g.op("Add", y, g.op("Unsqueeze", ins[2], g.const([1])), hint=node.outputs[0])
            return [y]
    return g.node("Conv", ins, node.outputs[0], strides=[a["stride"]], pads=[a["padding"]] * 2,
                  dilations=[a["dilation"]], group=a["groups"])


@renders("pad")
def _pad(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    x_t = types[0]
    assert x_t is not None
    left, right = node.attr("pads")
    zeros = [0] * (x_t.rank - 1)
    pads = g.const([*zeros, left, *zeros, right])
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[node.attr("mode")]
    value = g.const(node.attr("value") or 0.0, x_t.dtype) if mode == "constant" else None
    return g.node("Pad", [ins[0], pads, value] if value else [ins[0], pads], node.outputs[0], mode=mode)


@renders("layer_norm")
def _layer_norm(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    x_t = types[0]
    assert x_t is not None
    nd = node.attr("ndim")
    scale = ins[1] if len(ins) > 1 and ins[1] else None
    if scale is None:  # ONNX requires a scale; torch's default is ones
        scale = g.const(np.ones([g.emitter.dim(d) for d in x_t.shape[-nd:]]), x_t.dtype)
    bias = ins[2] if len(ins) > 2 else None
    return g.node("LayerNormalization", [ins[0], scale, bias] if bias else [ins[0], scale], node.outputs[0],
                  axis=-nd, epsilon=float(node.attr("eps")))


@renders("embedding")
def _embedding(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    return g.node("Gather", [ins[1], ins[0]], node.outputs[0], axis=0)
