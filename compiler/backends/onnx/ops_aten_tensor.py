"""ONNX renderings of the ``aten`` op's tensor operators: reductions, comparisons and logic,
shape and creation ops, indexing, sorting (the neural-network ones are in ``ops_aten.py``, whose
registry and helpers these use)."""

from __future__ import annotations

import math
from typing import Any

from rnnc.backends.onnx.emit import ONNX_DTYPES, OnnxGraph
from rnnc.backends.onnx.ops import Types
from rnnc.backends.onnx.ops_aten import ATEN_RENDERERS, Args, AtenRenderer, _arg, _in_type, _out, aten_renders
from rnnc.errors import UnsupportedError
from rnnc.ir import Node


# --------------------------------------------------------------------------- reductions
def _axes(v: Any, rank: int) -> list[int]:
    v = [v] if isinstance(v, int) else list(v or range(rank))
    return [int(a) % rank for a in v]


@aten_renders("linalg_vector_norm")
def _vector_norm(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    xt = _in_type(node, types)
    ord_ = float(_arg(args, 1, kwargs, "ord", 2.0))
    axes = _axes(_arg(args, 2, kwargs, "dim", None), xt.rank)
    keep = int(bool(_arg(args, 3, kwargs, "keepdim", False)))
    op = {2.0: "ReduceL2", 1.0: "ReduceL1", float("inf"): "ReduceMax"}.get(ord_)
    if op is None:
        raise UnsupportedError(f"{node.label}: vector norm of order {ord_} has no ONNX form here")
    x = g.op("Abs", args[0]) if op == "ReduceMax" else args[0]
    return g.node(op, [x, g.const(axes)], _out(node), keepdims=keep)


def _reduce(op_type: str) -> AtenRenderer:
    """``op(x, dims, keepdim)`` as the ONNX reduction ``op_type`` over ``dims``."""
    def render(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
        keep = int(bool(_arg(args, 2, kwargs, "keepdim", False)))
        axes = _axes(_arg(args, 1, kwargs, "dim", None), _in_type(node, types).rank)
        return g.node(op_type, [args[0], g.const(axes)], _out(node), keepdims=keep)

    return render


@aten_renders("fmod", "remainder")
def _fmod(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``torch.fmod`` (the sign of the dividend: ONNX ``Mod`` with ``fmod=1``) and
    ``torch.remainder`` (the sign of the divisor: ``a - b * floor(a / b)``; for integers, Mod)."""
    dtype = node.types[0].dtype  # torch's promotion: ``remainder(int tensor, 2.5)`` is float
    a, b = _common(g, node, args, types, dtype)  # (``t % self.periods``: a Python int first)
    fmod = node.attr("target").startswith("fmod")
    if not dtype.startswith(("float", "bfloat")):  # integers: ONNX's Mod says both
        return g.node("Mod", [a, b], _out(node), fmod=int(fmod))
    if fmod:
        return g.node("Mod", [a, b], _out(node), fmod=1)
    return g.node("Sub", [a, g.op("Mul", b, g.op("Floor", g.op("Div", a, b)))], _out(node))


@aten_renders("atan2")
def _atan2(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``atan2(y, x)`` (the phase of a complex mask, DCCRN): ``atan(y / x)`` moved by pi into the
    quadrant of ``(x, y)``; on the axis ``x = 0``, ``pi / 2`` signed by ``y``, and where both are
    zero torch's signed answers (0 or pi, by the signs of the zeros: a sign bit is ``1 / v < 0``)."""
    dtype = node.types[0].dtype
    y, x = args[0], args[1]
    zero, one, pi = g.const([0.0], dtype), g.const([1.0], dtype), g.const([math.pi], dtype)
    y_neg = g.op("Less", g.op("Div", one, y), zero)  # y < 0 or y = -0
    x_neg = g.op("Less", g.op("Div", one, x), zero)
    signed_pi = g.op("Where", y_neg, g.op("Neg", pi), pi)
    base = g.op("Atan", g.op("Div", y, x))
    off_axis = g.op("Where", g.op("Greater", x, zero), base, g.op("Add", base, signed_pi))
    at_origin = g.op("Where", x_neg, signed_pi, g.op("Where", y_neg, g.const([-0.0], dtype), zero))
    on_axis = g.op("Where", g.op("Equal", y, zero), at_origin,
                   g.op("Mul", g.op("Sign", y), g.const([math.pi / 2], dtype)))
    return g.node("Where", [g.op("Equal", x, zero), on_axis, off_axis], _out(node))


@aten_renders("max.default", "min.default")
def _max_all(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``torch.max(lengths)``: the largest of every element (the length of NVIDIA's masks)."""
    op = "ReduceMax" if node.attr("target").startswith("max") else "ReduceMin"
    return g.node(op, [args[0]], _out(node), keepdims=0)


@aten_renders("prod.dim_int", "prod.default")
def _prod(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``x.prod(dim)`` (pytorch-dnc's exclusive cumprod of the sorted usage) and ``x.prod()``:
    ReduceProd in the result's dtype (torch's: int64 for booleans and integers, or ``dtype=``)."""
    whole = node.attr("target").endswith("default")
    out_dtype = node.types[0].dtype
    x = args[0] if _in_type(node, types).dtype == out_dtype else g.op("Cast", args[0], to=ONNX_DTYPES[out_dtype])
    keep = 0 if whole else int(bool(_arg(args, 2, kwargs, "keepdim", False)))
    axes = _axes(None if whole else _arg(args, 1, kwargs, "dim", None), _in_type(node, types).rank)
    return g.node("ReduceProd", [x, g.const(axes)], _out(node), keepdims=keep)


aten_renders("logsumexp")(_reduce("ReduceLogSumExp"))
aten_renders("amin")(_reduce("ReduceMin"))


@aten_renders("var", "std")
def _var(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``var``/``std`` over ``dim`` with Bessel's ``correction`` (``var.dim``'s ``unbiased``):
    the mean square deviation times N / (N - correction), N read from the shape at run time."""
    base, _, overload = node.attr("target").partition(".")
    xt = _in_type(node, types)
    if overload == "dim":
        correction = 1 if _arg(args, 2, kwargs, "unbiased", True) else 0
        keep = bool(_arg(args, 3, kwargs, "keepdim", False))
    elif overload == "correction":
        c = kwargs.get("correction")
        correction, keep = (1 if c is None else float(c)), bool(kwargs.get("keepdim", False))
    else:  # var(x, unbiased): every dim
        correction, keep = (1 if _arg(args, 1, kwargs, "unbiased", True) else 0), False
    dim = _arg(args, 1, kwargs, "dim", None) if overload in ("dim", "correction") else None
    axes = _axes(dim, xt.rank)
    dev = g.op("Sub", args[0], g.op("ReduceMean", args[0], g.const(axes), keepdims=1))
    var = g.op("ReduceMean", g.op("Mul", dev, dev), g.const(axes), keepdims=int(keep))
    if correction:
        n = g.op("Cast", g.op("ReduceProd", g.op("Gather", g.op("Shape", args[0]), g.const(axes)), keepdims=0),
                 to=ONNX_DTYPES[xt.dtype])
        var = g.op("Mul", var, g.op("Div", n, g.op("Sub", n, g.const(correction, xt.dtype))))
    return [g.op("Sqrt" if base == "std" else "Identity", var, hint=_out(node))]


@aten_renders("cumsum")
def _cumsum(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    return g.node("CumSum", [args[0], g.const(int(args[1]) % _in_type(node, types).rank)], _out(node))


@aten_renders("any")
def _any(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    xt = _in_type(node, types)
    keep = int(bool(_arg(args, 2, kwargs, "keepdim", False)))
    as_int = g.op("Cast", args[0], to=ONNX_DTYPES["int32"])
    m = g.op("ReduceMax", as_int, g.const(_axes(_arg(args, 1, kwargs, "dim", None), xt.rank)), keepdims=keep)
    return g.node("Cast", [m], _out(node), to=ONNX_DTYPES["bool"])


@aten_renders("argmax", "argmin")
def _argmax(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    xt = _in_type(node, types)
    dim = _arg(args, 1, kwargs, "dim", None)
    keep = int(bool(_arg(args, 2, kwargs, "keepdim", False)))
    op = "ArgMax" if node.attr("target").startswith("argmax") else "ArgMin"
    if dim is None:
        return g.node(op, [g.op("Reshape", args[0], g.const([-1]))], _out(node), axis=0, keepdims=0)
    return g.node(op, [args[0]], _out(node), axis=int(dim) % xt.rank, keepdims=keep)


# --------------------------------------------------------------------------- comparisons, logic
def _tensor_dtype(node: Node, types: Types, which: int) -> str | None:
    raw = node.attr("args")[which]
    return _in_type(node, types, which).dtype if isinstance(raw, str) and raw.startswith("%") else None


def _common_dtype(node: Node, args: Args, types: Types) -> str:
    """torch's result dtype of a binary call's operands (ONNX's comparisons and Max/Min want one
    type), by ``torch.result_type`` itself: int64 positions against int32 lengths are int64; a
    Python float against an integer tensor makes float32 (``lengths >= 0.5`` must not become
    ``lengths >= 0``); a 0-dim tensor does not widen a tensor of its own kind (``x.half() >=
    torch.tensor(0.1)`` compares in float16)."""
    import torch

    operands = []
    for k in (0, 1):
        dtype = _tensor_dtype(node, types, k)
        if dtype is None:
            operands.append(args[k])
        else:
            rank = _in_type(node, types, k).rank
            operands.append(torch.empty((1,) * rank, dtype=getattr(torch, dtype)))
    assert any(isinstance(o, torch.Tensor) for o in operands), f"{node.label}: no tensor operand"
    return str(torch.result_type(*operands)).removeprefix("torch.")


def _common(g: OnnxGraph, node: Node, args: Args, types: Types, dtype: str | None = None) -> tuple[str, str]:
    """The two operands as ONNX values of ``dtype`` (default: their common dtype), a Python
    scalar as a constant, a tensor cast where it differs."""
    dtype = dtype or _common_dtype(node, args, types)
    out = []
    for k, arg in enumerate(args[:2]):
        have = _tensor_dtype(node, types, k)
        if have is None:
            out.append(g.const(arg, dtype))
        else:
            out.append(arg if have == dtype else g.op("Cast", arg, to=ONNX_DTYPES[dtype]))
    return out[0], out[1]


def _compare(op_type: str, negate: bool = False) -> AtenRenderer:
    def render(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
        logical = op_type in ("And", "Or", "Xor")
        dtype = _common_dtype(node, args, types)
        if logical and node.attr("target").startswith("bitwise") and dtype != "bool":
            op = "Bitwise" + op_type  # integers: bit by bit (ONNX's And/Or/Xor take booleans only)
        else:
            op, dtype = op_type, "bool" if logical else dtype
        a, b = _common(g, node, args, types, dtype)
        if negate:
            return [g.op("Not", g.op(op, a, b), hint=_out(node))]
        return g.node(op, [a, b], _out(node))

    return render


ATEN_RENDERERS.update({
    "eq": _compare("Equal"), "ne": _compare("Equal", negate=True), "ge": _compare("GreaterOrEqual"),
    "le": _compare("LessOrEqual"), "gt": _compare("Greater"), "lt": _compare("Less"),
    "logical_and": _compare("And"), "logical_or": _compare("Or"), "logical_xor": _compare("Xor"),
    "bitwise_and": _compare("And"), "bitwise_or": _compare("Or"), "bitwise_xor": _compare("Xor"),
    "maximum": _compare("Max"), "minimum": _compare("Min"),
})


@aten_renders("div")
def _div_rounding(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    dt = _in_type(node, types).dtype
    b = args[1] if isinstance(args[1], str) else g.const(args[1], dt)
    q = g.op("Div", args[0], b)
    mode = kwargs.get("rounding_mode")
    if mode == "floor" and dt.startswith("float"):
        q = g.op("Floor", q)
    elif mode == "trunc" and dt.startswith("float"):  # trunc(q) = sign(q) * floor(|q|)
        q = g.op("Mul", g.op("Sign", q), g.op("Floor", g.op("Abs", q)))
    return [g.op("Identity", q, hint=_out(node))]


# --------------------------------------------------------------------------- shapes, creation, indexing
@aten_renders("expand")
def _expand(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """torch's ``-1`` (keep the dim) is ONNX's ``1`` (Expand broadcasts: max of the two)."""
    sizes = [1 if int(s) == -1 else int(s) for s in args[1]]
    return g.node("Expand", [args[0], g.const(sizes)], _out(node))


@aten_renders("repeat")
def _repeat(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    reps = [int(r) for r in args[1]]
    x = args[0]
    extra = len(reps) - _in_type(node, types).rank
    if extra > 0:
        x = g.op("Unsqueeze", x, g.const(list(range(extra))))
    return g.node("Tile", [x, g.const(reps)], _out(node))


def _fill_value(node: Node, args: Args, kwargs: dict[str, Any], default: float) -> tuple[float, str]:
    value = default if node.attr("target").partition(".")[0] in ("zeros_like", "ones_like") else args[1]
    dt = kwargs.get("dtype")
    return value, (dt[6:] if isinstance(dt, str) and dt.startswith("dtype:") else "")


@aten_renders("full_like", "zeros_like", "ones_like")
def _full_like(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    base = node.attr("target").partition(".")[0]
    value, dt = _fill_value(node, args, kwargs, 1.0 if base == "ones_like" else 0.0)
    dt = dt or _in_type(node, types).dtype
    from onnx import helper

    tensor = helper.make_tensor("value", ONNX_DTYPES[dt], [1], [value])
    return g.node("ConstantOfShape", [g.op("Shape", args[0])], _out(node), value=tensor)


@aten_renders("full", "zeros", "ones", "scalar_tensor", "empty")
def _static(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """Creation ops with constant arguments: computed once, stored as an initializer."""
    from rnnc.ir.ops_aten import call

    (value,) = call(node.attr("target"), node.attr("args"), node.attr("kwargs") or (), [])
    return [g.emitter.initializer(_out(node), value.numpy())]


@aten_renders("arange")
def _arange_static(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """A ``Range`` node, not an initializer: onnx's shape-data propagation mistakes an int64
    initializer read through ``Unsqueeze`` for a shape and rejects the broadcast after it."""
    from rnnc.ir.ops_aten import call

    (value,) = call(node.attr("target"), node.attr("args"), node.attr("kwargs") or (), [])
    dt = str(value.dtype).removeprefix("torch.")
    n = int(value.numel())
    if n < 2:
        return [g.emitter.initializer(_out(node), value.numpy())]
    start, step = value[0].item(), (value[1] - value[0]).item()
    r = g.op("Range", g.const(0, "int64"), g.const(n, "int64"), g.const(1, "int64"))
    r = g.op("Add", g.op("Mul", g.op("Cast", r, to=ONNX_DTYPES["float64"]), g.const(float(step), "float64")),
             g.const(float(start), "float64"))
    return g.node("Cast", [r], _out(node), to=ONNX_DTYPES[dt])


@aten_renders("index_select")
def _index_select(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    return g.node("Gather", [args[0], args[2]], _out(node), axis=int(args[1]) % _in_type(node, types).rank)


@aten_renders("gather")
def _gather(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    return g.node("GatherElements", [args[0], args[2]], _out(node), axis=int(args[1]) % _in_type(node, types).rank)


@aten_renders("index_put")
def _index_put(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``x[mask] = v`` with one boolean mask (RetNet's ``D[D != D] = 0``): ``Where(mask, v, x)``;
    other index forms have no single ONNX op here."""
    idx = list(args[1])
    accumulate = bool(_arg(args, 3, kwargs, "accumulate", False))
    mask_t = types[node.inputs.index(idx[0])] if len(idx) == 1 and idx[0] in node.inputs else None
    if accumulate or mask_t is None or mask_t.dtype != "bool" or mask_t.rank != _in_type(node, types).rank:
        raise UnsupportedError(f"{node.label}: index_put other than x[mask] = v has no ONNX form here")
    return [g.op("Where", idx[0], args[2], args[0], hint=_out(node))]


@aten_renders("copy")
def _copy(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``aten.copy(self, src)``: ``src`` broadcast to ``self``'s shape in ``self``'s dtype (what a
    write into a preallocated tensor decomposes to)."""
    self_t = _in_type(node, types)
    src = g.op("Expand", args[1], g.op("Shape", args[0]))
    return [g.op("Cast", src, hint=_out(node), to=ONNX_DTYPES[self_t.dtype])]


@aten_renders("slice_scatter")
def _slice_scatter(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``self`` with ``self[start:end]`` on ``dim`` replaced by ``src`` (``y[0, :, 1:3] = v``):
    the slices before and after, and ``src`` between them, concatenated."""
    rank = _in_type(node, types).rank
    dim = int(_arg(args, 2, kwargs, "dim", 0)) % rank
    start, end = _arg(args, 3, kwargs, "start", None), _arg(args, 4, kwargs, "end", None)
    if int(_arg(args, 5, kwargs, "step", 1)) != 1:
        raise UnsupportedError(f"{node.label}: a strided slice_scatter has no ONNX form here")
    top = 2**63 - 1
    lo, hi = int(start or 0), top if end is None else int(end)
    axes = g.const([dim])
    head = g.op("Slice", args[0], g.const([0]), g.const([lo]), axes)
    tail = g.op("Slice", args[0], g.const([hi]), g.const([top]), axes)
    return [g.op("Concat", head, args[1], tail, hint=_out(node), axis=dim)]


@aten_renders("scatter_add", "scatter.src", "scatter_reduce.two", "scatter.value", "scatter.reduce",
              "scatter.value_reduce")
def _scatter(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``x.scatter_add(dim, idx, src)`` (a pointer-generator's copy distribution): ScatterElements
    with an add reduction (opset 16); plain scatter overwrites; scatter_reduce sums or takes a max.
    A scalar value (a one-hot from ``zeros(...).scatter_(-1, ids, 1)``) is expanded to the index's
    shape; the legacy ``reduce=`` adds or multiplies."""
    name, _, overload = node.attr("target").partition(".")
    reduction = {"scatter_add": "add", "scatter": "none"}.get(name)
    if name == "scatter" and overload.endswith("reduce"):
        how = _arg(args, 4, kwargs, "reduce", None)
        reduction = {"add": "add", "multiply": "mul"}.get(how)
        if reduction is None:
            raise UnsupportedError(f"{node.label}: scatter with reduce={how!r} has no ONNX form here")
    if name == "scatter" and overload.startswith("value"):
        dtype = _in_type(node, types).dtype
        value = g.const(_arg(args, 3, kwargs, "value", 0), "float32" if dtype == "bfloat16" else dtype)
        if dtype == "bfloat16":  # (numpy has no bfloat16)
            value = g.op("Cast", value, to=ONNX_DTYPES[dtype])
        args = (*args[:3], g.op("Expand", value, g.op("Shape", args[2])))
    if name == "scatter_reduce":
        how = _arg(args, 4, kwargs, "reduce", "sum")
        reduction = {"sum": "add", "prod": "mul", "amax": "max", "amin": "min"}.get(how)
        if reduction is None or not _arg(args, 5, kwargs, "include_self", True):
            raise UnsupportedError(f"{node.label}: scatter_reduce {how!r} without self has no ONNX form here")
    need = 18 if reduction in ("max", "min") else 16
    if reduction != "none" and g.opset < need:
        raise UnsupportedError(f"{node.label}: a scatter with reduction {reduction!r} needs opset {need} or later")
    attrs = {"reduction": reduction} if reduction != "none" else {}
    return g.node("ScatterElements", [args[0], args[2], args[3]], _out(node),
                  axis=int(args[1]) % _in_type(node, types).rank, **attrs)


@aten_renders("index")
def _index(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``x[..., idx]`` with one index tensor: a Gather on that axis (torch puts the index's dims
    there, as Gather does).  Several (``y[arange(B), lengths - 1]``, the last valid step): the
    indexed axes moved first, the indices broadcast and stacked, one GatherND; the broadcast dims
    go where torch puts them -- in place of adjacent indexed axes, else first."""
    idx = list(args[1])
    used = [i for i, t in enumerate(idx) if t is not None]
    raw = node.attr("args")[1]
    if any(types[int(raw[i][1:])].dtype == "bool" for i in used):  # (a mask: as many rows as it has trues)
        raise UnsupportedError(f"{node.label}: indexing with a boolean mask has no ONNX form here")
    if len(used) == 1:
        return g.node("Gather", [args[0], idx[used[0]]], _out(node), axis=used[0])
    rank = _in_type(node, types).rank
    rest = [a for a in range(rank) if a not in used]
    x = args[0] if used == list(range(len(used))) else g.op("Transpose", args[0], perm=[*used, *rest])
    ids = [g.op("Cast", idx[a], to=ONNX_DTYPES["int64"]) for a in used]
    zero = ids[0]
    for i in ids[1:]:
        zero = g.op("Add", g.op("Mul", zero, g.const(0)), g.op("Mul", i, g.const(0)))
    stacked = g.op("Concat", *[g.op("Unsqueeze", g.op("Add", i, zero), g.const([-1])) for i in ids], axis=-1)
    nb = node.types[0].rank - len(rest)  # the broadcast index dims, first in GatherND's result
    if used[0] == 0 or used != list(range(used[0], used[-1] + 1)):
        return g.node("GatherND", [x, stacked], _out(node))
    out = g.op("GatherND", x, stacked)
    perm = [*range(nb, nb + used[0]), *range(nb), *range(nb + used[0], nb + len(rest))]
    return g.node("Transpose", [out], _out(node), perm=perm)


@aten_renders("unfold")
def _unfold(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """``x.unfold(dim, size, step)``: windows ``k * step + (0 .. size - 1)`` gathered along
    ``dim`` (their count read from the shape at run time), the window axis moved last."""
    rank = _in_type(node, types).rank
    dim, size, step = int(args[1]) % rank, int(args[2]), int(args[3])
    length = g.op("Gather", g.op("Shape", args[0]), g.const(dim))
    count = g.op("Add", g.op("Div", g.op("Sub", length, g.const(size)), g.const(step)), g.const(1))
    starts = g.op("Mul", g.op("Range", g.const(0), count, g.const(1)), g.const(step))
    windows = g.op("Add", g.op("Unsqueeze", starts, g.const([1])), g.const([list(range(size))]))
    out = g.op("Gather", args[0], windows, axis=dim)  # [..., count, size, ...]
    perm = [*range(dim + 1), *range(dim + 2, rank + 1), dim + 1]
    return g.node("Transpose", [out], _out(node), perm=perm)


@aten_renders("constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "replication_pad1d", "replication_pad2d")
def _pad_nd(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """torch lists pads from the last dim backwards as (left, right); ONNX wants all begins then all ends."""
    xt = _in_type(node, types)
    p = [int(v) for v in args[1]]
    begins, ends = [0] * xt.rank, [0] * xt.rank
    for k in range(len(p) // 2):
        begins[xt.rank - 1 - k], ends[xt.rank - 1 - k] = p[2 * k], p[2 * k + 1]
    base = node.attr("target").partition(".")[0]
    mode = "reflect" if base.startswith("reflection") else "edge" if base.startswith("replication") else "constant"
    ins = [args[0], g.const(begins + ends)]
    if mode == "constant":
        ins.append(g.const(float(_arg(args, 2, kwargs, "value", 0.0)), xt.dtype))
    return g.node("Pad", ins, _out(node), mode=mode)


@aten_renders("tril", "triu")
def _trilu(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    k = int(_arg(args, 1, kwargs, "diagonal", 0))
    upper = int(node.attr("target").startswith("triu"))
    return g.node("Trilu", [args[0], g.const(k)], _out(node), upper=upper)


@aten_renders("clamp")
def _clamp_tensor(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    y, dt = args[0], _in_type(node, types).dtype
    lo, hi = _arg(args, 1, kwargs, "min", None), _arg(args, 2, kwargs, "max", None)
    if lo is not None:
        y = g.op("Max", y, lo if isinstance(lo, str) else g.const(lo, dt))
    if hi is not None:
        y = g.op("Min", y, hi if isinstance(hi, str) else g.const(hi, dt))
    return [g.op("Identity", y, hint=_out(node))]


@aten_renders("sort")
def _sort(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """A full TopK along ``dim`` (ties may come out in another order than torch's)."""
    xt = _in_type(node, types)
    dim = int(_arg(args, 1, kwargs, "dim", -1)) % xt.rank
    descending = bool(_arg(args, 2, kwargs, "descending", False))
    k = g.op("Gather", g.op("Shape", args[0]), g.const([dim]), axis=0)
    return g.node("TopK", [args[0], k], _out(node), n_out=2, axis=dim, largest=int(descending), sorted=1)


@aten_renders("topk")
def _topk(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    xt = _in_type(node, types)
    dim = int(_arg(args, 2, kwargs, "dim", -1)) % xt.rank
    largest = bool(_arg(args, 3, kwargs, "largest", True))
    return g.node("TopK", [args[0], g.const([int(args[1])])], _out(node), n_out=2, axis=dim, largest=int(largest),
                  sorted=1)


@aten_renders("_embedding_bag", "_embedding_bag_forward_only")
def _embedding_bag(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """Ragged bags (``nn.EmbeddingBag(ids, offsets)``): a ``[bags, N]`` membership matrix from the
    offsets (row ``b`` holds the ids from ``offsets[b]`` up to the next), then a MatMul (sum,
    mean over the bag's size) or a masked ReduceMax -- an empty bag gives zeros, as in torch.
    Padding ids belong to no bag.  Only the first result (the bags) is computed for real; rnnc's
    frontend reads no other."""
    weight, ids, offsets = args[0], args[1], args[2]
    mode = int(_arg(args, 4, kwargs, "mode", 0))
    per_sample = _arg(args, 6, kwargs, "per_sample_weights", None)
    last = bool(_arg(args, 7, kwargs, "include_last_offset", False))
    padding = int(_arg(args, 8, kwargs, "padding_idx", -1))
    if last and padding >= 0:  # (torch's kernels disagree on ids past the last offset there)
        raise UnsupportedError(f"{node.label}: an EmbeddingBag with both padding_idx and include_last_offset "
                               "has no ONNX form here")
    dtype = _in_type(node, types).dtype
    n = g.op("Shape", ids)
    starts = offsets
    if last:  # the last offset closes the last bag
        starts = g.op("Slice", offsets, g.const([0]), g.const([-1]), g.const([0]))
    pos = g.op("Range", g.const(0), g.op("Squeeze", n, g.const([0])), g.const(1))  # [N]
    # id i's bag: how many bags start at or before it, less one
    bag = g.op("Sub", g.op("ReduceSum", g.op("Cast", g.op("GreaterOrEqual", g.op("Unsqueeze", pos, g.const([1])),
                                                            g.op("Unsqueeze", starts, g.const([0]))),
                                               to=ONNX_DTYPES["int64"]), g.const([1]), keepdims=0), g.const(1))
    count = g.op("Shape", starts)
    which = g.op("Range", g.const(0), g.op("Squeeze", count, g.const([0])), g.const(1))  # [B]
    member = g.op("Equal", g.op("Unsqueeze", which, g.const([1])), g.op("Unsqueeze", bag, g.const([0])))  # [B, N]
    if last:  # ids past the last offset belong to no bag
        end = g.op("Slice", offsets, g.const([-1]), g.const([2 ** 62]), g.const([0]))
        member = g.op("And", member, g.op("Unsqueeze", g.op("Less", pos, end), g.const([0])))
    if padding >= 0:
        member = g.op("And", member, g.op("Unsqueeze", g.op("Not", g.op("Equal", ids, g.const(padding))), g.const([0])))
    rows = g.op("Gather", weight, ids, axis=0)  # [N, D]
    if per_sample is not None:
        rows = g.op("Mul", rows, g.op("Unsqueeze", per_sample, g.const([1])))
    weights = g.op("Cast", member, to=ONNX_DTYPES[dtype])
    if mode in (0, 1):
        out = g.op("MatMul", weights, rows)
        if mode == 1:
            size = g.op("Max", g.op("ReduceSum", weights, g.const([1]), keepdims=1), g.const([1.0], dtype))
            out = g.op("Div", out, size)
    else:
        low = g.op("Where", g.op("Unsqueeze", member, g.const([2])), g.op("Unsqueeze", rows, g.const([0])),
                   g.const([float("-inf")], dtype))
        some = g.op("Cast", g.op("ReduceMax", g.op("Cast", member, to=ONNX_DTYPES["int32"]), g.const([1]),
                                 keepdims=1), to=ONNX_DTYPES["bool"])
        out = g.op("Where", some, g.op("ReduceMax", low, g.const([1]), keepdims=0), g.const([0.0], dtype))
    # offset2bag and the bag sizes for real; no argmax (zeros of its shape): rnnc reads neither
    sizes = g.op("ReduceSum", g.op("Cast", member, to=ONNX_DTYPES["int64"]), g.const([1]), keepdims=0)
    from onnx import helper

    zero = helper.make_tensor("value", ONNX_DTYPES["int64"], [1], [0])
    argmax = g.op("ConstantOfShape", g.op("Shape", out) if mode == 2 else g.const([0]), value=zero)
    return [g.op("Identity", v, hint=name) for v, name in zip((out, bag, sizes, argmax), node.outputs, strict=False)]


@aten_renders("max.dim", "min.dim")
def _max_dim(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    xt = _in_type(node, types)
    dim = int(args[1]) % xt.rank
    keep = int(bool(_arg(args, 2, kwargs, "keepdim", False)))
    is_max = node.attr("target").startswith("max")
    values = g.op("ReduceMax" if is_max else "ReduceMin", args[0], g.const([dim]), keepdims=keep)
    index = g.op("ArgMax" if is_max else "ArgMin", args[0], axis=dim, keepdims=keep)
    return [g.op("Identity", values, hint=node.outputs[0]), g.op("Identity", index, hint=node.outputs[1])]


@aten_renders("logcumsumexp")
def _logcumsumexp(g: OnnxGraph, node: Node, args: Args, kwargs: dict[str, Any], types: Types) -> list[str]:
    """log(cumsum(exp(x - m))) + m with m the axis maximum: no overflow for large x."""
    dim = int(args[1]) % _in_type(node, types).rank
    m = g.op("ReduceMax", args[0], g.const([dim]), keepdims=1)
    s = g.op("CumSum", g.op("Exp", g.op("Sub", args[0], m)), g.const(dim))
    return [g.op("Add", g.op("Log", s), m, hint=_out(node))]
