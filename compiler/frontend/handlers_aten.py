"""Core-ATen nodes (from ``frontend/aten.py``'s exports) -> IR.

Operators rnnc rewrites, fuses or quantizes go to their first-class IR ops through the shared
handlers (``handlers.py``, ``handlers_shape.py``), adapting ATen's argument order where it differs
from the torch function's (``aten.embedding(weight, indices)``); shape operators read ``SymInt``
sizes so symbolic dims stay symbolic.  Every other operator becomes the generic ``aten`` IR op
(``rnnc.ir.ops_aten``), whose arguments must then be constants: a size that follows a symbolic
dim cannot be written into an attribute and is refused with the operator's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils import _pytree as pytree

from rnnc.frontend.handlers import HANDLERS, handles, reads
from rnnc.frontend.handlers_shape import (
    cat,
    permute,
    reshape,
    select,
    slice_,
    split,
    squeeze,
    stack,
    transpose,
    unsqueeze,
)
from rnnc.frontend.values import TV, Ctx, SymInt, axis
from rnnc.ir.ops_aten import DROPPED_KWARGS, encode
from rnnc.ir.symdims import END as _END
from rnnc.ir.types import dtype_of_torch

AtenHandler = Callable[..., Any]
ATEN: dict[str, AtenHandler] = {}


def on(*names: str) -> Callable[[AtenHandler], AtenHandler]:
    def deco(fn: AtenHandler) -> AtenHandler:
        for n in names:
            ATEN[n] = fn
        return fn

    return deco


def target_name(op: Any) -> str:
    """``aten.add.Tensor`` -> ``"add.Tensor"`` (what the ``aten`` IR op's ``target`` holds)."""
    return f"{op.overloadpacket.__name__}.{op._overloadname}"


def convert_node(ctx: Ctx, op: Any, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> Any:
    """One ATen node: its handler (by overload, then by operator name), else the ``aten`` op."""
    name = target_name(op)
    handler = ATEN.get(name) or ATEN.get(op.overloadpacket.__name__)
    if handler is not None:
        out = handler(ctx, *args, **kwargs)
        if out is not NotImplemented:
            return out
    return generic(ctx, name, args, kwargs, what)


def generic(ctx: Ctx, target: str, args: tuple[Any, ...], kwargs: dict[str, Any], what: str = "") -> Any:
    """The ``aten`` IR op for ``target``: tensors are its inputs, everything else attributes."""
    leaves = pytree.tree_leaves((args, kwargs))
    for a in leaves:
        if isinstance(a, SymInt):
            raise ctx.unsupported(f"aten.{target}{f' (in {what})' if what else ''} with a size that follows the "
                                  f"symbolic dim {a.sym}", "constant sizes, or sizes that view/expand/arange take")
    tvs: list[TV] = []
    index: dict[int, int] = {}
    for a in leaves:
        if isinstance(a, TV) and id(a.ex) not in index:
            index[id(a.ex)] = len(tvs)
            tvs.append(a)

    def ex(v: Any) -> Any:
        return v.ex if isinstance(v, TV) else v

    try:
        enc_args = encode(pytree.tree_map(ex, tuple(args)), index)
        enc_kwargs = tuple((k, encode(ex(v), index)) for k, v in sorted(kwargs.items()) if k not in DROPPED_KWARGS)
    except (TypeError, ValueError) as exc:
        raise ctx.unsupported(f"aten.{target}{f' (in {what})' if what else ''}: {exc}") from None
    attrs: dict[str, Any] = {"target": target, "args": enc_args}
    if enc_kwargs:
        attrs["kwargs"] = enc_kwargs
    if ctx.probing:
        tvs = _pin_for_probe(ctx, tvs, attrs)
    return ctx.emit("aten", *tvs, **attrs)


def _pin_for_probe(ctx: Ctx, tvs: list[TV], attrs: dict[str, Any]) -> list[TV]:
    """In the all-dims-symbolic probe (``api._auto_dims``) a dim the op needs fixed (a conv's
    channels) is symbolic and the op's shape inference fails; pin the fewest dims (one, else
    two) to their example sizes so the probe can go on: a pinned dim is not batch or time."""
    from itertools import combinations

    from rnnc.ir.ops import OPS

    spots = [(i, d) for i, t in enumerate(tvs) for d, n in enumerate(t.shape) if isinstance(n, str)]

    def fits(pins: tuple[tuple[int, int], ...]) -> bool:
        types = [t.value.type.with_shape(tuple(int(t.ex.shape[d]) if (i, d) in pins else n
                                               for d, n in enumerate(t.shape))) if t.value is not None else None
                 for i, t in enumerate(tvs)]
        try:
            OPS["aten"].infer(types, attrs)
        except Exception:  # noqa: BLE001 -- any failure of the op's checks: try other pins
            return False
        return True

    for k in range(0, 3):
        for pins in combinations(spots, k):
            if fits(pins):
                if not pins:
                    return tvs
                out = list(tvs)
                for i in {i for i, _ in pins}:
                    t = tvs[i]
                    shape = tuple(int(t.ex.shape[d]) if (i, d) in pins else 0 for d in range(t.rank))
                    out[i] = ctx.emit("reshape", t, shape=shape)
                return out
    return tvs


def _is_full(x: TV, dim: int, end: Any) -> bool:
    n = x.shape[dim]
    return (isinstance(end, SymInt) and end.is_dim(x, dim)) or (isinstance(n, int) and not isinstance(end, SymInt)
                                                          and end is not None and end >= n)


# --------------------------------------------------------------------------- shape
@on("view", "reshape", "_unsafe_view")
def _view(ctx: Ctx, x: TV, shape: Any) -> TV:
    return reshape(ctx, x, list(shape))


@on("permute")
def _permute(ctx: Ctx, x: TV, dims: Any) -> TV:
    return permute(ctx, x, list(dims))


@on("transpose")
def _transpose(ctx: Ctx, x: TV, a: int, b: int) -> TV:
    return transpose(ctx, x, a, b)


@on("t")
def _t(ctx: Ctx, x: TV) -> TV:
    return transpose(ctx, x, 0, 1) if x.rank == 2 else x


@on("unsqueeze")
def _unsqueeze(ctx: Ctx, x: TV, dim: int) -> TV:
    return unsqueeze(ctx, x, dim)


@on("squeeze")
def _squeeze(ctx: Ctx, x: TV, dim: Any = None) -> TV:
    return squeeze(ctx, x, dim)


@on("select.int")
def _select(ctx: Ctx, x: TV, dim: int, index: int) -> TV:
    if isinstance(index, SymInt):
        return NotImplemented
    return select(ctx, x, dim, index)


@on("slice.Tensor")
def _slice(ctx: Ctx, x: TV, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> TV:
    dim = axis(dim, x.rank)
    if _is_full(x, dim, end):
        end = _END
    return slice_(ctx, x, dim, start, end, step)


@on("cat")
def _cat(ctx: Ctx, xs: Any, dim: int = 0) -> TV:
    return cat(ctx, list(xs), dim)


@on("stack")
def _stack(ctx: Ctx, xs: Any, dim: int = 0) -> TV:
    return stack(ctx, list(xs), dim)


@on("split_with_sizes", "split.Tensor")
def _split(ctx: Ctx, x: TV, size: Any, dim: int = 0) -> Any:
    return list(split(ctx, x, size, dim))


@on("unbind.int")
def _unbind(ctx: Ctx, x: TV, dim: int = 0) -> Any:
    return list(HANDLERS["unbind"](ctx, x, dim))


@on("flip")
def _flip(ctx: Ctx, x: TV, dims: Any) -> Any:
    return HANDLERS["flip"](ctx, x, *list(dims))


@on("expand")
def _expand(ctx: Ctx, x: TV, sizes: Any, implicit: bool = False) -> Any:
    return HANDLERS["expand"](ctx, x, *list(sizes))


@on("repeat")
def _repeat(ctx: Ctx, x: TV, reps: Any) -> Any:
    return HANDLERS["repeat"](ctx, x, *list(reps))


@on("full.default")
def _full(ctx: Ctx, size: Any, value: Any, **kwargs: Any) -> Any:
    return HANDLERS["full"](ctx, size, value, **kwargs)


@on("zeros.default", "empty.memory_format")
def _zeros(ctx: Ctx, size: Any, **kwargs: Any) -> Any:
    return HANDLERS["zeros"](ctx, list(size), **kwargs)


@on("ones.default")
def _ones(ctx: Ctx, size: Any, **kwargs: Any) -> Any:
    return HANDLERS["ones"](ctx, list(size), **kwargs)


@on("new_zeros", "new_empty")
def _new_zeros(ctx: Ctx, x: TV, size: Any, **kwargs: Any) -> Any:
    return HANDLERS["new_zeros"](ctx, x, list(size), **kwargs)


@on("new_ones")
def _new_ones(ctx: Ctx, x: TV, size: Any, **kwargs: Any) -> Any:
    return HANDLERS["new_ones"](ctx, x, list(size), **kwargs)


@on("new_full")
def _new_full(ctx: Ctx, x: TV, size: Any, value: Any, **kwargs: Any) -> Any:
    return HANDLERS["new_full"](ctx, x, size, value, **kwargs)


@on("clone", "alias", "detach", "lift_fresh_copy", "contiguous", "dropout")
def _same(ctx: Ctx, x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


@on("_to_copy")
def _to_copy(ctx: Ctx, x: TV, **kwargs: Any) -> TV:
    dtype = kwargs.get("dtype")
    return HANDLERS["to"](ctx, x, dtype) if dtype is not None else x


@on("sym_size.int")
def _sym_size(ctx: Ctx, x: TV, dim: int) -> Any:
    return x.size(axis(dim, x.rank))


# --------------------------------------------------------------------------- elementwise
def _binary(name: str) -> AtenHandler:
    def fn(ctx: Ctx, a: Any, b: Any, alpha: Any = 1, **kwargs: Any) -> Any:
        if kwargs.get("rounding_mode") is not None:
            return NotImplemented
        if alpha != 1:
            b = HANDLERS["mul"](ctx, b, alpha)
        return HANDLERS[name](ctx, a, b)

    return fn


for _n in ("add", "sub", "mul", "div"):
    ATEN[_n] = _binary(_n)
for _n in ("pow", "gt", "lt", "where"):
    ATEN[_n] = (lambda n: lambda ctx, *a, **k: HANDLERS[n](ctx, *a, **k))(_n)
for _n in ("relu", "sigmoid", "tanh", "exp", "log", "sqrt", "abs", "neg", "reciprocal", "silu"):
    ATEN[_n] = (lambda n: lambda ctx, x: HANDLERS[n](ctx, x))(_n)
ATEN["cos"] = lambda ctx, x: ctx.emit("cos", x)
ATEN["maximum"] = lambda ctx, a, b: ctx.emit("max", a, b) if isinstance(a, TV) and isinstance(b, TV) else NotImplemented
ATEN["minimum"] = lambda ctx, a, b: ctx.emit("min", a, b) if isinstance(a, TV) and isinstance(b, TV) else NotImplemented
ATEN["sin"] = lambda ctx, x: ctx.emit("sin", x)


@on("rsqrt")
def _rsqrt(ctx: Ctx, x: TV) -> TV:
    return ctx.emit("reciprocal", ctx.emit("sqrt", x))


@on("gelu")
def _gelu(ctx: Ctx, x: TV, approximate: str = "none") -> TV:
    return HANDLERS["gelu"](ctx, x, approximate)


@on("softplus")
def _softplus(ctx: Ctx, x: TV, beta: float = 1.0, threshold: float = 20.0) -> TV:
    return HANDLERS["softplus"](ctx, x, beta, threshold)


@on("clamp", "hardtanh")
def _clamp(ctx: Ctx, x: TV, lo: Any = None, hi: Any = None) -> Any:
    if isinstance(lo, TV) or isinstance(hi, TV):
        return NotImplemented
    return HANDLERS["clamp"](ctx, x, lo, hi)


@on("clamp_min")
def _clamp_min(ctx: Ctx, x: TV, lo: Any) -> Any:
    return NotImplemented if isinstance(lo, TV) else HANDLERS["clamp"](ctx, x, lo, None)


@on("clamp_max")
def _clamp_max(ctx: Ctx, x: TV, hi: Any) -> Any:
    return NotImplemented if isinstance(hi, TV) else HANDLERS["clamp"](ctx, x, None, hi)


@on("masked_fill.Scalar")
def _masked_fill(ctx: Ctx, x: TV, mask: TV, value: Any) -> TV:
    return HANDLERS["where"](ctx, mask, ctx.lift(value, like=x), x)


@on("scalar_tensor")
def _scalar_tensor(ctx: Ctx, value: Any, **kwargs: Any) -> TV:
    dtype = kwargs.get("dtype") or torch.float32
    return ctx.lift(torch.tensor(value, dtype=dtype))


# --------------------------------------------------------------------------- linear algebra, NN
@on("mm", "bmm", "matmul")
def _mm(ctx: Ctx, a: TV, b: TV) -> TV:
    return ctx.emit("matmul", a, b)


@on("addmm")
def _addmm(ctx: Ctx, bias: TV, a: TV, b: TV, beta: Any = 1, alpha: Any = 1) -> TV:
    return HANDLERS["addmm"](ctx, bias, a, b, beta, alpha)


@on("linear")
def _linear(ctx: Ctx, x: TV, w: TV, b: TV | None = None) -> TV:
    return HANDLERS["linear"](ctx, x, w, b)


@on("conv1d.default")
def _conv1d(ctx: Ctx, x: TV, w: TV, b: TV | None = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
            groups: int = 1) -> Any:
    return HANDLERS["conv1d"](ctx, x, w, b, stride, padding, dilation, groups)


@on("convolution")
def _convolution(ctx: Ctx, x: TV, w: TV, b: TV | None, stride: Any, padding: Any, dilation: Any, transposed: bool,
                 output_padding: Any, groups: int) -> Any:
    if x.rank == 3 and not transposed:
        return HANDLERS["conv1d"](ctx, x, w, b, stride, padding, dilation, groups)
    return NotImplemented


@on("layer_norm")
def _layer_norm(ctx: Ctx, x: TV, shape: Any, w: TV | None = None, b: TV | None = None, eps: float = 1e-5,
                *rest: Any) -> TV:
    return HANDLERS["layer_norm"](ctx, x, list(shape), w, b, eps)


@on("embedding")
def _embedding(ctx: Ctx, weight: TV, indices: TV, *rest: Any, **kwargs: Any) -> TV:
    return ctx.emit("embedding", indices, weight)


@on("_softmax", "softmax.int")
def _softmax(ctx: Ctx, x: TV, dim: int, *rest: Any) -> TV:
    return HANDLERS["softmax"](ctx, x, dim)


@on("_log_softmax", "log_softmax.int")
def _log_softmax(ctx: Ctx, x: TV, dim: int, *rest: Any) -> TV:
    return HANDLERS["log_softmax"](ctx, x, dim)


def _reduce(name: str) -> AtenHandler:
    def fn(ctx: Ctx, x: TV, dims: Any = None, keepdim: bool = False, **kwargs: Any) -> Any:
        dtype = kwargs.get("dtype")
        if dtype is not None:  # torch casts the input first, then reduces in that dtype
            x = HANDLERS["to"](ctx, x, dtype)
        out = HANDLERS[name](ctx, x, list(dims) if dims is not None else None, keepdim)
        # (``sum(dtype=torch.int32)`` stays int32: the frontend's sum counts integers in int64)
        return HANDLERS["to"](ctx, out, dtype) if dtype is not None else out

    return fn


ATEN["sum.dim_IntList"] = _reduce("sum")
ATEN["mean.dim"] = _reduce("mean")
ATEN["amax"] = _reduce("amax")


@on("_native_batch_norm_legit_no_training")
def _bn_legit(ctx: Ctx, x: TV, w: TV | None, b: TV | None, mean: TV, var: TV, momentum: float, eps: float) -> Any:
    """Inference batch norm as the one-output ``batch_norm`` (the other two outputs are empty)."""
    y = generic(ctx, "batch_norm.default", (x, w, b, mean, var, False, momentum, eps, False), {})
    return (y, None, None)


@on("arange.default", "arange.start", "arange.start_step")
def _arange(ctx: Ctx, *args: Any, **kwargs: Any) -> Any:
    """``arange`` whose bounds follow symbolic sizes: the ``arange`` IR op, its length a shape
    entry read at run time (``arange(1, x.size(1) + 1)``)."""
    one = len(args) == 1 and "end" not in kwargs  # ``arange(n)``; ``arange(1, end=n)`` gives the start
    start, end, step = (0, args[0], 1) if one else (*args, None, None, 1)[:3]
    start, end, step = kwargs.get("start", start), kwargs.get("end", end), kwargs.get("step", step)
    start, step = 0 if start is None else start, 1 if step is None else step  # (every bound as a keyword)
    if end is None:
        return NotImplemented
    if not any(isinstance(v, SymInt) for v in (start, end)) or isinstance(step, SymInt):
        return NotImplemented
    whole = int(step) if isinstance(step, float) and step.is_integer() else step  # ``arange(t - 1, -1, -1.0)``
    if not isinstance(whole, int) or isinstance(end, float) or isinstance(start, float) or not whole:
        return NotImplemented
    n = end - start if whole == 1 else (end - start + (whole - 1 if whole > 0 else whole + 1)) // whole
    made = ctx.shape_entries([n])
    if made is None or made[0] == (-1,):
        return NotImplemented
    (entry,), refs = made
    out = kwargs.get("out")  # ``arange(0, n, out=torch.LongTensor(n))`` (NVIDIA's masks): its dtype only
    dtype = kwargs.get("dtype") or (out.ex.dtype if isinstance(out, TV) else out.dtype
                                    if isinstance(out, torch.Tensor) else None) or (
        torch.float32 if any(isinstance(v, float) for v in (start, end, step)) else torch.int64)
    if not isinstance(start, SymInt):
        return ctx.emit("arange", *refs, n=entry, start=start, step=step, dtype=dtype_of_torch(dtype))
    # a start read at run time (Transformer-XL's relative positions ``arange(klen - 1, -1, -1.0)``)
    steps = ctx.emit("arange", *refs, n=entry, start=0, step=step, dtype=dtype_of_torch(dtype))
    return ctx.emit("add", steps, ctx.lift(start, like=steps))


HANDLERS["arange"] = reads("start", "end", "step", "dtype", "out")(_arange)  # torch.arange(x.size(1)) in fx graphs


@handles("one_hot")
def _one_hot(ctx: Ctx, idx: TV, num_classes: Any = -1) -> Any:
    """``F.one_hot(idx, x.size(1))`` (a pointer network marking the positions it took): as many
    classes as a symbolic size, so position k is 1 where ``|idx - k| < 1`` -- integer ops, exact."""
    if not isinstance(num_classes, SymInt):
        return NotImplemented
    ks = _arange(ctx, num_classes)
    if ks is NotImplemented:
        return NotImplemented
    near = ctx.emit("lt", ctx.emit("abs", ctx.emit("sub", ctx.emit("unsqueeze", idx, axis=idx.rank), ks)),
                    ctx.const(1, like=idx))
    return ctx.emit("cast", near, dtype="int64")


def _adaptive(reduce: str) -> AtenHandler:
    def fn(ctx: Ctx, x: TV, sizes: Any) -> Any:
        """Adaptive pooling whose output keeps some axes and pools others to 1 is a mean (max) over
        those axes -- also when a kept axis is symbolic (``AdaptiveAvgPool2d((None, 1))``)."""
        sizes = list(sizes)
        first = x.rank - len(sizes)
        axes = []
        for i, s in enumerate(sizes):
            d = x.shape[first + i]
            if (isinstance(s, SymInt) and s.is_dim(x, first + i)) or (not isinstance(s, SymInt) and s == d):
                continue
            if s == 1 and not isinstance(s, SymInt):
                axes.append(first + i)
            else:
                return NotImplemented
        return HANDLERS[reduce](ctx, x, axes, True) if axes else x

    return fn


ATEN["adaptive_avg_pool1d"] = ATEN["adaptive_avg_pool2d"] = _adaptive("mean")
ATEN["adaptive_max_pool1d"] = ATEN["adaptive_max_pool2d"] = lambda ctx, x, sizes: (
    NotImplemented if (r := _adaptive("amax")(ctx, x, sizes)) is NotImplemented else (r, None))
