"""ONNX renderings of the IR's ``aten`` op, one per ATen overload (``rnnc.ir.ops_aten``).

Each renderer restates one core-ATen operator with standard ONNX ops (opset >= 17), in the form
onnxruntime runs whole (``Conv``, ``BatchNormalization``, ``MaxPool``, ``Resize``...).  An overload
without a renderer is named by ``unsupported`` before rendering starts, in one sentence: the
Program still runs in rnnc (interpreter, compiled module), it just has no ONNX form yet.
Renderers take the call's decoded arguments: tensor arguments are ONNX value names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rnnc.backends.onnx.emit import ONNX_DTYPES, OnnxGraph
from rnnc.backends.onnx.ops import Ins, Types, renders
from rnnc.errors import UnsupportedError
from rnnc.ir import Node, TensorType

Args = list[Any]
AtenRenderer = Callable[[OnnxGraph, Node, Args, dict[str, Any], Types], list[str]]
ATEN_RENDERERS: dict[str, AtenRenderer] = {}


def aten_renders(*targets: str) -> Callable[[AtenRenderer], AtenRenderer]:
    def deco(fn: AtenRenderer) -> AtenRenderer:
        for t in targets:
            ATEN_RENDERERS[t] = fn
        return fn

    return deco


def renderer_of(target: str) -> AtenRenderer | None:
    """By overload (``"conv2d.default"``), else by operator name for every overload."""
    return ATEN_RENDERERS.get(target) or ATEN_RENDERERS.get(target.partition(".")[0])


def _decode(value: Any, ins: Ins) -> Any:
    if isinstance(value, str) and value.startswith("%") and value[1:].isdigit():
        return ins[int(value[1:])]
    if isinstance(value, (list, tuple)):
        return [_decode(v, ins) for v in value]
    return value


@renders("aten")
def _aten(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    target = node.attr("target")
    fn = renderer_of(target)
    if fn is None:  # unsupported() names it first; a guard for direct callers
        raise KeyError(f"aten.{target} has no ONNX rendering")
    args = _decode(node.attr("args"), ins)
    kwargs = {k: _decode(v, ins) for k, v in (node.attr("kwargs") or ())}
    return fn(g, node, args, kwargs, types)


def unsupported_aten(node: Node) -> str:
    """Why an ``aten`` node has no ONNX form ("" when it has)."""
    target = node.attr("target")
    if renderer_of(target) is None:
        return f"ATen operator aten.{target} ({node.label}) has no ONNX rendering yet"
    return ""


def _arg(args: Args, i: int, kwargs: dict[str, Any], name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if i < len(args) and args[i] is not None else default


def _ints(v: Any, n: int, cast: Any = int) -> list[Any]:
    """A per-axis argument for ``n`` axes (torch lets one value stand for all)."""
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return [cast(x) for x in (v * n if len(v) == 1 else v)]


def _in_type(node: Node, types: Types, which: int = 0) -> TensorType:
    """The IR type of the call's argument ``which`` (a tensor argument, ``"%k"``: input k)."""
    raw = node.attr("args")[which]
    t = types[int(raw[1:])] if isinstance(raw, str) and raw.startswith("%") else None
    assert t is not None, f"{node.label}: argument {which} is not a tensor input"
    return t


def _out(node: Node) -> str:
    return node.outputs[0]


# --------------------------------------------------------------------------- convolution
def _conv(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    x, w, b = args[0], args[1], _arg(args, 2, kwargs, "bias", None)
    wt = _in_type(node, types, 1)
    n = wt.rank - 2
    stride = _ints(_arg(args, 3, kwargs, "stride", 1), n)
    padding = _arg(args, 4, kwargs, "padding", 0)
    dilation = _ints(_arg(args, 5, kwargs, "dilation", 1), n)
    groups = int(_arg(args, 6, kwargs, "groups", 1))
    if isinstance(padding, str):  # "valid" / "same" (torch puts an odd extra pad at the end)
        total = [0 if padding == "valid" else d * (int(k) - 1) for d, k in zip(dilation, wt.shape[2:], strict=True)]
        pads = [t // 2 for t in total] + [t - t // 2 for t in total]
    else:
        p = _ints(padding, n)
        pads = p + p
    ins = [x, w, b] if b else [x, w]
    return g.node("Conv", ins, _out(node), strides=stride, pads=pads, dilations=dilation, group=groups)


aten_renders("conv1d", "conv2d", "conv3d")(_conv)


@aten_renders("convolution")
def _convolution(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """aten.convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)."""
    x, w, b, stride, padding, dilation, transposed, out_pad, groups = args[:9]
    if transposed:
        return _conv_transpose(g, node, [x, w, b, stride, padding, out_pad, groups, dilation], {}, types)
    return _conv(g, node, [x, w, b, stride, padding, dilation, groups], {}, types)


@aten_renders("conv_transpose1d", "conv_transpose2d")
def _conv_transpose(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    x, w, b = args[0], args[1], _arg(args, 2, kwargs, "bias", None)
    n = _in_type(node, types, 1).rank - 2
    stride = _ints(_arg(args, 3, kwargs, "stride", 1), n)
    p = _ints(_arg(args, 4, kwargs, "padding", 0), n)
    out_pad = _ints(_arg(args, 5, kwargs, "output_padding", 0), n)
    groups = int(_arg(args, 6, kwargs, "groups", 1))
    dilation = _ints(_arg(args, 7, kwargs, "dilation", 1), n)
    return g.node("ConvTranspose", [x, w, b] if b else [x, w], _out(node), strides=stride, pads=p + p,
                  output_padding=out_pad, dilations=dilation, group=groups)


# --------------------------------------------------------------------------- normalisation
def _channels(node: Node, types: Types) -> int:
    c = _in_type(node, types).shape[1]
    if not isinstance(c, int):
        raise UnsupportedError(f"{node.label}: the channel dim must be fixed, got {c}")
    return c


def _scale_bias(g: OnnxGraph, node: Node, types: Types, w: Any, b: Any) -> tuple[str, str]:
    c, dt = _channels(node, types), _in_type(node, types).dtype
    return (w or g.const(np.ones(c), dt)), (b or g.const(np.zeros(c), dt))


@aten_renders("batch_norm")
def _batch_norm(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    x, w, b, mean, var = args[:5]
    eps = float(_arg(args, 7, kwargs, "eps", 1e-5))
    w, b = _scale_bias(g, node, types, w, b)
    return g.node("BatchNormalization", [x, w, b, mean, var], _out(node), epsilon=eps)


@aten_renders("instance_norm")
def _instance_norm(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    x, w, b, mean, var, use_input_stats = args[:6]
    eps = float(_arg(args, 7, kwargs, "eps", 1e-5))
    if not use_input_stats:  # running statistics: a batch norm
        return _batch_norm(g, node, [x, w, b, mean, var, False, 0.1, eps], {}, types)
    w, b = _scale_bias(g, node, types, w, b)
    return g.node("InstanceNormalization", [x, w, b], _out(node), epsilon=eps)


@aten_renders("group_norm")
def _group_norm(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """Normalise over [C/G, ...] per group with reductions (ONNX's GroupNormalization changed
    meaning between opsets 18 and 21), then the per-channel affine."""
    x, groups = args[0], int(args[1])
    w, b = _arg(args, 2, kwargs, "weight", None), _arg(args, 3, kwargs, "bias", None)
    eps = float(_arg(args, 4, kwargs, "eps", 1e-5))
    xt = _in_type(node, types)
    dt = xt.dtype
    grouped = g.op("Reshape", x, g.const([0, groups, -1]))
    mean = g.op("ReduceMean", grouped, g.const([2]), keepdims=1)
    centred = g.op("Sub", grouped, mean)
    var = g.op("ReduceMean", g.op("Mul", centred, centred), g.const([2]), keepdims=1)
    normed = g.op("Div", centred, g.op("Sqrt", g.op("Add", var, g.const(eps, dt))))
    y = g.op("Reshape", normed, g.op("Shape", x))
    tail = [1] * (xt.rank - 2)
    if w:
        y = g.op("Mul", y, g.op("Reshape", w, g.const([-1, *tail])))
    if b:
        y = g.op("Add", y, g.op("Reshape", b, g.const([-1, *tail])))
    return [g.op("Identity", y, hint=_out(node))]


# --------------------------------------------------------------------------- pooling, resizing
def _pool(kind: str) -> AtenRenderer:
    def render(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
        n = _in_type(node, types).rank - 2
        kernel = _ints(args[1], n)
        stride = _arg(args, 2, kwargs, "stride", None)
        stride = kernel if not stride else _ints(stride, n)
        p = _ints(_arg(args, 3, kwargs, "padding", 0), n)
        if kind == "MaxPool":
            dilation = _ints(_arg(args, 4, kwargs, "dilation", 1), n)
            ceil = int(bool(_arg(args, 5, kwargs, "ceil_mode", False)))
            return g.node("MaxPool", [args[0]], _out(node), kernel_shape=kernel, strides=stride, pads=p + p,
                          dilations=dilation, ceil_mode=ceil)
        ceil = int(bool(_arg(args, 4, kwargs, "ceil_mode", False)))
        include = int(bool(_arg(args, 5, kwargs, "count_include_pad", True)))
        if _arg(args, 6, kwargs, "divisor_override", None) is not None:
            raise UnsupportedError(f"{node.label}: avg_pool with divisor_override has no ONNX form")
        return g.node("AveragePool", [args[0]], _out(node), kernel_shape=kernel, strides=stride, pads=p + p,
                      ceil_mode=ceil, count_include_pad=include)

    return render


aten_renders("max_pool1d", "max_pool2d", "max_pool3d")(_pool("MaxPool"))


@aten_renders("max_pool2d_with_indices", "max_pool3d_with_indices")
def _max_pool_indices(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``max_pool3d`` as torch.export decomposes it (LipNet's front end): ONNX ``MaxPool`` and its
    indices, which ONNX counts over the whole input and torch within each channel's plane: the
    remainder by the plane's size."""
    n = _in_type(node, types).rank - 2
    kernel = _ints(args[1], n)
    stride = _arg(args, 2, kwargs, "stride", None)
    stride = kernel if not stride else _ints(stride, n)
    p = _ints(_arg(args, 3, kwargs, "padding", 0), n)
    dilation = _ints(_arg(args, 4, kwargs, "dilation", 1), n)
    ceil = int(bool(_arg(args, 5, kwargs, "ceil_mode", False)))
    values, flat = g.node("MaxPool", [args[0]], _out(node), n_out=2, kernel_shape=kernel, strides=stride,
                          pads=p + p, dilations=dilation, ceil_mode=ceil)
    plane = g.op("ReduceProd", g.op("Slice", g.op("Shape", args[0]), g.const([2]), g.const([n + 2])), keepdims=1)
    return [values, g.op("Mod", flat, plane)]


aten_renders("avg_pool1d", "avg_pool2d")(_pool("AveragePool"))


@aten_renders("adaptive_avg_pool1d", "adaptive_avg_pool2d")
def _adaptive_avg(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """Output size 1 on an axis is a mean over it; a fixed input size that the output size
    divides is a plain average pool; otherwise (a symbolic or uneven size) each axis is pooled in
    turn, bin by bin, as torch defines the bins (``_adaptive_bins``)."""
    xt = _in_type(node, types)
    n = xt.rank - 2
    out = _ints(args[1], n)
    spatial = xt.shape[2:]
    if all(o == 1 for o in out):
        return g.node("ReduceMean", [args[0], g.const(list(range(2, xt.rank)))], _out(node), keepdims=1)
    if all(isinstance(s, int) and s % o == 0 for s, o in zip(spatial, out, strict=True)):
        kernel = [s // o for s, o in zip(spatial, out, strict=True)]  # type: ignore[operator]
        return g.node("AveragePool", [args[0]], _out(node), kernel_shape=kernel, strides=kernel)
    x = args[0]
    for i, o in enumerate(out):
        x = _adaptive_bins(g, x, i + 2, o, _out(node) if i == n - 1 else "")
    return [x]


def _adaptive_bins(g: OnnxGraph, x: str, axis: int, o: int, hint: str) -> str:
    """Adaptive average pooling of one axis to ``o`` bins: bin ``i`` averages
    ``[floor(i*L/o), ceil((i+1)*L/o))`` with ``L`` read at run time.  (Averaging a rectangle is
    averaging per axis in turn: every row of a bin has the same count.)"""
    length = g.op("Gather", g.op("Shape", x), g.const([axis]))  # (Shape's start/end need opset 15)
    axes = g.const([axis])
    bins = []
    for i in range(o):
        lo = g.op("Div", g.op("Mul", length, g.const([i])), g.const([o]))
        hi = g.op("Div", g.op("Add", g.op("Mul", length, g.const([i + 1])), g.const([o - 1])), g.const([o]))
        bins.append(g.op("ReduceMean", g.op("Slice", x, lo, hi, axes), axes, keepdims=1))
    return g.op("Concat", *bins, hint=hint, axis=axis) if o > 1 else g.op("Identity", bins[0], hint=hint)


def _resize(mode: str) -> AtenRenderer:
    def render(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
        xt = _in_type(node, types)
        n = xt.rank - 2
        out_size = args[1] if len(args) > 1 else None
        align = bool(args[2]) if mode == "linear" and len(args) > 3 else False
        scales = args[-1] if len(args) > 2 else None
        attrs: dict[str, Any] = {"mode": mode}
        if mode == "nearest":  # torch's "nearest": floor(dst * in / out)
            attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            attrs["coordinate_transformation_mode"] = "align_corners" if align else "half_pixel"
        if scales:
            sc = g.const(np.array([1.0, 1.0, *_ints(scales, n, float)]), "float32")
            return g.node("Resize", [args[0], None, sc], _out(node), **attrs)
        if out_size:
            sizes = g.op("Concat", g.op("Slice", g.op("Shape", args[0]), g.const([0]), g.const([2])),
                         g.const([int(s) for s in out_size]), axis=0)
            return g.node("Resize", [args[0], None, None, sizes], _out(node), **attrs)
        raise UnsupportedError(f"{node.label}: resize without scales or sizes")

    return render


aten_renders("upsample_nearest1d", "upsample_nearest2d")(_resize("nearest"))
aten_renders("upsample_linear1d", "upsample_bilinear2d")(_resize("linear"))


@aten_renders("pixel_shuffle")
def _pixel_shuffle(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    return g.node("DepthToSpace", [args[0]], _out(node), blocksize=int(args[1]), mode="CRD")


# --------------------------------------------------------------------------- activations
@aten_renders("glu")
def _glu(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    xt = _in_type(node, types)
    dim = int(_arg(args, 1, kwargs, "dim", -1)) % xt.rank
    a, b = g.node("Split", [args[0]], "glu_half", n_out=2, axis=dim, num_outputs=2) if g.opset >= 18 else \
        g.node("Split", [args[0]], "glu_half", n_out=2, axis=dim)
    return [g.op("Mul", a, g.op("Sigmoid", b), hint=_out(node))]


def _simple(op_type: str, **fixed: Any) -> AtenRenderer:
    def render(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
        return g.node(op_type, [args[0]], _out(node), **fixed)

    return render


aten_renders("hardswish")(_simple("HardSwish"))
aten_renders("hardsigmoid")(_simple("HardSigmoid", alpha=1 / 6, beta=0.5))
for _t, _o in {"erf": "Erf", "floor": "Floor", "ceil": "Ceil", "sign": "Sign", "round": "Round",
               "logical_not": "Not", "bitwise_not": "Not", "tan": "Tan", "atan": "Atan", "asin": "Asin",
               "acos": "Acos", "sinh": "Sinh", "cosh": "Cosh"}.items():
    ATEN_RENDERERS[_t] = _simple(_o)


@aten_renders("leaky_relu")
def _leaky(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    return g.node("LeakyRelu", [args[0]], _out(node), alpha=float(_arg(args, 1, kwargs, "negative_slope", 0.01)))


@aten_renders("softplus")
def _softplus(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """torch's softplus: ``log(1 + exp(beta x)) / beta``, and ``x`` itself where ``beta x`` passes
    the threshold (ONNX's Softplus has neither parameter)."""
    beta, threshold = float(_arg(args, 1, kwargs, "beta", 1.0)), float(_arg(args, 2, kwargs, "threshold", 20.0))
    dt = _in_type(node, types).dtype
    bx = g.op("Mul", args[0], g.const(beta, dt))
    soft = g.op("Div", g.op("Softplus", bx), g.const(beta, dt))
    return [g.op("Where", g.op("Greater", bx, g.const(threshold, dt)), args[0], soft, hint=_out(node))]


@aten_renders("elu")
def _elu(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    alpha, scale, in_scale = (float(_arg(args, i, kwargs, k, 1.0)) for i, k in
                              ((1, "alpha"), (2, "scale"), (3, "input_scale")))
    dt = _in_type(node, types).dtype
    x = args[0] if in_scale == 1.0 else g.op("Mul", args[0], g.const(in_scale, dt))
    y = g.op("Elu", x, alpha=alpha)
    if scale != 1.0:
        y = g.op("Mul", y, g.const(scale, dt))
    return [g.op("Identity", y, hint=_out(node))]


@aten_renders("mish")
def _mish(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    if g.opset >= 18:
        return g.node("Mish", [args[0]], _out(node))
    return [g.op("Mul", args[0], g.op("Tanh", g.op("Softplus", args[0])), hint=_out(node))]


@aten_renders("prelu")
def _prelu(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """torch's weight is per channel (dim 1); ONNX broadcasts from the right: [C, 1, ...]."""
    xt, wt = _in_type(node, types), _in_type(node, types, 1)
    slope = args[1]
    if xt.rank > 2 and wt.shape != (1,):
        slope = g.op("Reshape", slope, g.const([-1] + [1] * (xt.rank - 2)))
    return g.node("PRelu", [args[0], slope], _out(node))


@aten_renders("log1p")
def _log1p(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    return [g.op("Log", g.op("Add", args[0], g.const(1.0, _in_type(node, types).dtype)), hint=_out(node))]


# --------------------------------------------------------------------------- attention
@aten_renders("scaled_dot_product_attention")
def _sdpa(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """softmax(q k^T * scale + mask) v, with a boolean mask as -inf where False and the causal
    mask built from the runtime lengths (Trilu over ones of [L, S])."""
    q, k, v = args[:3]
    qt = _in_type(node, types)
    dt = qt.dtype
    mask = _arg(args, 3, kwargs, "attn_mask", None)
    causal = bool(_arg(args, 5, kwargs, "is_causal", False))
    scale = _arg(args, 6, kwargs, "scale", None)
    e = qt.shape[-1]
    if scale is None:
        if not isinstance(e, int):
            raise UnsupportedError(f"{node.label}: attention with a symbolic head size needs an explicit scale")
        scale = 1.0 / float(np.sqrt(e))
    kt = _in_type(node, types, 1)
    perm = list(range(kt.rank - 2)) + [kt.rank - 1, kt.rank - 2]
    scores = g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=perm)), g.const(float(scale), dt))
    neg_inf = g.const(float("-inf"), dt)
    if causal:
        lq = g.op("Slice", g.op("Shape", q), g.const([-2]), g.const([-1]))
        lk = g.op("Slice", g.op("Shape", k), g.const([-2]), g.const([-1]))
        from onnx import helper

        ones = g.op("ConstantOfShape", g.op("Concat", lq, lk, axis=0),
                    value=helper.make_tensor("one", ONNX_DTYPES["bool"], [1], [True]))
        keep = g.op("Trilu", ones, g.const(0), upper=0)
        scores = g.op("Where", keep, scores, neg_inf)
    if mask is not None:
        raw = node.attr("args")[3] if len(node.attr("args")) > 3 else dict(node.attr("kwargs") or ())["attn_mask"]
        mt = types[int(raw[1:])]
        if mt.dtype == "bool":
            scores = g.op("Where", mask, scores, neg_inf)
        else:
            scores = g.op("Add", scores, mask)
    attn = g.op("Softmax", scores, axis=-1)
    return [g.op("MatMul", attn, v, hint=_out(node))]
