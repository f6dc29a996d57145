"""Op handlers shared by the fx and TorchScript converters: elementwise, linear algebra, NN ops.

A handler takes ``(ctx, *args, **kwargs)`` with torch's own argument order (which is also the
order of the aten schema), where tensors are ``TV``s and everything else is a python value, and
returns what torch would return.  ``HANDLERS`` maps the function name (``relu``, ``conv1d``,
``add`` ...) to it; the shape ops live in ``handlers_shape.py`` and register into the same table.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from collections.abc import Callable
from typing import Any

import torch

from rnnc.frontend.values import TV, Ctx, SymInt, SymRatio, axis, size_op
from rnnc.ir.types import dtype_of_torch

Handler = Callable[..., Any]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn

    return deco


def is_tensor(x: Any) -> bool:
    return isinstance(x, TV)


#: keyword arguments that never change a result: a handler's ``**kwargs`` may drop them
INERT_KWARGS = frozenset({"inplace", "memory_format", "non_blocking", "copy", "device", "layout", "pin_memory",
                          "requires_grad"})


def reads(*names: str) -> Callable[[Handler], Handler]:
    """Declare the keyword arguments a handler reads from its ``**kwargs`` itself (``dtype``)."""
    def deco(fn: Handler) -> Handler:
        fn.kwargs_read = frozenset(names)  # type: ignore[attr-defined]
        return fn

    return deco


@functools.cache
def _signature(fn: Handler) -> inspect.Signature:
    return inspect.signature(fn)


def understands(handler: Handler, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``handler`` takes this call as written: its arguments bind to the handler's
    parameters, and every keyword its ``**kwargs`` would catch is inert, ``None`` or one it reads.

    Why: a handler written for ``x.mean(dim, keepdim)`` that swallowed ``axis=1`` reduced over
    every dim, silently.  A call a handler does not understand goes to the exact path instead
    (``torch.export`` of the call, ``aten.py``), where torch itself resolves ``axis=``, ``dims=``,
    ``tensors=`` and every other spelling."""
    try:
        bound = _signature(handler).bind(None, *args, **kwargs)
    except TypeError:
        return False
    extra: dict[str, Any] = {}
    for p in _signature(handler).parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            extra = bound.arguments.get(p.name, {})
    read = getattr(handler, "kwargs_read", frozenset())
    return all(v is None or k in INERT_KWARGS or k in read for k, v in extra.items())


# --------------------------------------------------------------------------- elementwise
_UNARY = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp",
          "log": "log", "abs": "abs", "sqrt": "sqrt", "neg": "neg", "silu": "silu",
          "logsigmoid": "logsigmoid", "log_sigmoid": "logsigmoid", "reciprocal": "reciprocal", "sigmoid_": "sigmoid",
          "tanh_": "tanh"}


def _unary(op: str) -> Handler:
    def fn(ctx: Ctx, x: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_tensor(x):
            return {"neg": operator.neg, "abs": abs}[op](x) if op in ("neg", "abs") else _py_unary(ctx, op, x)
        return ctx.emit(op, x)

    return fn


def _py_unary(ctx: Ctx, op: str, x: Any) -> Any:
    raise ctx.unsupported(f"{op} of a python {type(x).__name__}")


for _name, _op in _UNARY.items():
    HANDLERS[_name] = _unary(_op)


@handles("gelu")
def _gelu(ctx: Ctx, x: TV, approximate: str = "none") -> TV:
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as torch computes it
        inner = ctx.emit("mul", ctx.emit("add", x, ctx.emit("mul", ctx.emit("mul", ctx.emit("mul", x, x), x),
                                                              ctx.lift(0.044715, x))),
                         ctx.lift(math.sqrt(2 / math.pi), x))
        return ctx.emit("mul", ctx.emit("mul", x, ctx.lift(0.5, x)),
                        ctx.emit("add", ctx.emit("tanh", inner), ctx.lift(1.0, x)))
    if approximate != "none":
        raise ctx.unsupported(f"gelu(approximate={approximate!r})", "gelu with approximate='none' or 'tanh'")
    return ctx.emit("gelu", x)


@handles("softplus")
def _softplus(ctx: Ctx, x: TV, beta: float = 1.0, threshold: float = 20.0) -> TV:
    if threshold != 20.0:  # the IR op is torch's default; another threshold: the exact path
        return NotImplemented
    if beta != 1:
        return ctx.emit("div", ctx.emit("softplus", ctx.emit("mul", x, ctx.lift(beta, x))), ctx.lift(beta, x))
    return ctx.emit("softplus", x)


@handles("hardtanh", "clamp", "clip", "clamp_")
def _clamp(ctx: Ctx, x: TV, min: Any = None, max: Any = None, *rest: Any) -> TV:  # noqa: A002
    if is_tensor(min) or is_tensor(max):
        out = x
        if min is not None:
            out = ctx.emit("max", out, ctx.lift(min, x))
        if max is not None:
            out = ctx.emit("min", out, ctx.lift(max, x))
        return out
    # an integer tensor keeps integer bounds: clamp(int64, 0.0) would promote it to float in torch
    num = float if x.ex.dtype.is_floating_point else int
    return ctx.emit("clamp", x, min=None if min is None else num(min), max=None if max is None else num(max))


def _promote(ctx: Ctx, a: Any, b: Any) -> tuple[TV, TV]:
    """torch type promotion for the cases models use: python scalars adopt the tensor's dtype,
    an int tensor meeting a float tensor is cast to the float dtype."""
    if not is_tensor(a):
        a = ctx.lift(a, b)
    if not is_tensor(b):
        b = ctx.lift(b, a)
    da, db = a.ex.dtype, b.ex.dtype
    if da != db:
        if da.is_floating_point and not db.is_floating_point:
            b = ctx.emit("cast", b, dtype=dtype_of_torch(da))
        elif db.is_floating_point and not da.is_floating_point:
            a = ctx.emit("cast", a, dtype=dtype_of_torch(db))
        elif da == torch.bool:  # a mask meeting integers counts as 0/1
            a = ctx.emit("cast", a, dtype=dtype_of_torch(db))
        elif db == torch.bool:
            b = ctx.emit("cast", b, dtype=dtype_of_torch(da))
        else:
            raise ctx.unsupported(f"arithmetic between {da} and {db} tensors")
    return a, b


_PY_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
              "truediv": operator.truediv, "floordiv": operator.floordiv, "pow": operator.pow,
              "maximum": max, "minimum": min, "max": max, "min": min, "mod": operator.mod,
              "gt": operator.gt, "lt": operator.lt, "eq": operator.eq, "ne": operator.ne,
              "ge": operator.ge, "le": operator.le, "floor_divide": operator.floordiv}
_IR_BINARY = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "truediv": "div", "pow": "pow",
              "maximum": "max", "minimum": "min", "gt": "gt", "lt": "lt"}


def _binary(name: str) -> Handler:
    @reads("rounding_mode")
    def fn(ctx: Ctx, a: Any, b: Any = None, *rest: Any, alpha: Any = 1, **kwargs: Any) -> Any:
        if b is None:  # x.max(dim=...) and friends: not a binary op
            return NotImplemented
        if not is_tensor(a) and not is_tensor(b):
            if name in ("max", "min", "maximum", "minimum") and not rest and not kwargs:
                return size_op(name[:3], a, b)  # ``max(T, S)`` of sizes stays symbolic
            if name in ("truediv", "div") and not kwargs and (isinstance(a, SymInt) or isinstance(b, SymInt)) \
                    and isinstance(a, int) and isinstance(b, int) and int(b):
                return SymRatio(a, b)  # a size ratio a tensor may be scaled by (``Ctx.lift``)
            return _PY_BINARY[name](a, b)
        if rest and name in ("add", "sub"):  # aten::add(a, b, alpha)
            alpha = rest[0]
        if name in ("max", "min") and is_tensor(a) and is_tensor(b) and not rest and not kwargs:
            return ctx.emit(name, *_promote(ctx, a, b))  # torch.max(a, b): elementwise
        if name not in _IR_BINARY or kwargs.get("rounding_mode") is not None:
            return NotImplemented  # comparisons, floor division, ...: captured through torch.export
        if name in ("add", "sub") and alpha != 1:
            b = ctx.emit("mul", *_promote(ctx, b, alpha))
        if name == "pow" and is_tensor(a) and not is_tensor(b) and b == 2:
            return ctx.emit("mul", a, a)  # exact, and what backends want for squares
        if name == "pow" and is_tensor(a) and not is_tensor(b) and b == 0.5:
            return ctx.emit("sqrt", a)
        x, y = _promote(ctx, a, b)
        if name in ("div", "truediv") and not x.ex.dtype.is_floating_point:
            x, y = ctx.emit("cast", x, dtype="float32"), ctx.emit("cast", y, dtype="float32")
        return ctx.emit(_IR_BINARY[name], x, y)

    return fn


for _name in _PY_BINARY:
    HANDLERS[_name] = _binary(_name)
HANDLERS["sym_max"] = lambda ctx, a, b: size_op("max", a, b)  # ``torch.sym_max`` recorded as itself
HANDLERS["sym_min"] = lambda ctx, a, b: size_op("min", a, b)
HANDLERS["rsub"] = lambda ctx, a, b, alpha=1: HANDLERS["sub"](ctx, b, a if alpha == 1 else
                                                                HANDLERS["mul"](ctx, a, alpha))
for _name in ("add_", "sub_", "mul_", "div_", "iadd", "isub", "imul", "itruediv"):
    HANDLERS[_name] = HANDLERS[{"add_": "add", "sub_": "sub", "mul_": "mul", "div_": "div",
                                "iadd": "add", "isub": "sub", "imul": "mul", "itruediv": "div"}[_name]]


@handles("where")
def _where(ctx: Ctx, cond: TV, a: Any, b: Any) -> TV:
    x, y = _promote(ctx, a, b)
    return ctx.emit("where", cond, x, y)


# --------------------------------------------------------------------------- linear algebra
@handles("linear")
def linear(ctx: Ctx, x: TV, weight: TV, bias: TV | None = None) -> TV:
    return ctx.emit("linear", x, weight, bias)


@handles("matmul", "mm", "bmm")
def _matmul(ctx: Ctx, a: TV, b: TV) -> TV:
    return ctx.emit("matmul", a, b)


@handles("addmm")
def _addmm(ctx: Ctx, bias: TV, a: TV, b: TV, beta: Any = 1, alpha: Any = 1) -> TV:
    if beta != 1 or alpha != 1:
        raise ctx.unsupported("addmm with beta or alpha != 1")
    return ctx.emit("add", ctx.emit("matmul", a, b), bias)


# --------------------------------------------------------------------------- NN ops
def _one(v: Any, what: str, ctx: Ctx) -> int:
    if isinstance(v, (list, tuple)):
        if len(v) != 1:
            raise ctx.unsupported(f"conv1d {what}={list(v)}")
        v = v[0]
    if isinstance(v, str):
        raise ctx.unsupported(f"conv1d padding={v!r}", "integer padding")
    return int(v)


@handles("conv1d")
def conv1d(ctx: Ctx, x: TV, weight: TV, bias: TV | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> TV:
    squeeze = x.rank == 2  # torch accepts unbatched [C, L]
    if squeeze:
        x = ctx.emit("unsqueeze", x, axis=0)
    y = ctx.emit("conv1d", x, weight, bias, stride=_one(stride, "stride", ctx),
                 padding=_one(padding, "padding", ctx), dilation=_one(dilation, "dilation", ctx),
                 groups=int(groups))
    return ctx.emit("squeeze", y, axis=0) if squeeze else y


@handles("pad")
def pad(ctx: Ctx, x: TV, pad: Any, mode: str = "constant", value: Any = None) -> TV:
    if any(isinstance(p, SymInt) for p in pad):  # an amount computed from a symbolic size
        return _pad_by_sizes(ctx, x, list(pad), mode, value)
    pads = [int(p) for p in pad]
    if len(pads) != 2:
        if any(pads[2:]):
            return NotImplemented  # padding more axes: captured through torch.export
        pads = pads[:2]
    if mode not in ("constant", "reflect", "replicate"):
        return NotImplemented
    return ctx.emit("pad", x, pads=tuple(pads), mode=mode, value=float(value or 0.0))


def _pad_by_sizes(ctx: Ctx, x: TV, pads: list[Any], mode: str, value: Any) -> TV:
    """``F.pad(x, (0, 0, 0, (4 - t % 4) % 4))``: blocks of the fill value whose sizes are read at
    run time, concatenated on each side (an amount frozen at the example's would pad every other
    length wrong, silently)."""
    from rnnc.frontend.handlers_shape import filled

    if mode != "constant":
        raise ctx.unsupported(f"{mode} padding by an amount computed from a symbolic size",
                              "constant padding by computed amounts")
    for k in range(len(pads) // 2):
        ax = x.rank - 1 - k
        for side, amount in (("left", pads[2 * k]), ("right", pads[2 * k + 1])):
            if not isinstance(amount, SymInt) and int(amount) == 0:
                continue
            if not isinstance(amount, SymInt) and int(amount) < 0:
                raise ctx.unsupported("negative padding next to an amount computed from a symbolic size")
            sizes = [amount if i == ax else x.size(i) for i in range(x.rank)]
            block = filled(ctx, sizes, float(value or 0.0) if x.ex.dtype.is_floating_point else int(value or 0),
                           x.ex.dtype)
            if block is NotImplemented:
                raise ctx.unsupported(f"padding of {list(x.shape)} by sizes that cannot be read at run time")
            x = ctx.emit("concat", *((block, x) if side == "left" else (x, block)), axis=ax)
    return x


@handles("layer_norm")
def layer_norm(ctx: Ctx, x: TV, shape: Any, weight: TV | None = None, bias: TV | None = None,
               eps: float = 1e-5, *rest: Any) -> TV:
    ndim = 1 if isinstance(shape, int) else len(shape)
    return ctx.emit("layer_norm", x, weight, bias, eps=float(eps), ndim=ndim)


@handles("embedding")
def embedding(ctx: Ctx, idx: TV, weight: TV, padding_idx: Any = None, max_norm: Any = None,
              *rest: Any, **kwargs: Any) -> TV:
    if isinstance(weight, TV) and not isinstance(idx, TV):  # aten::embedding(weight, indices, ...)
        idx, weight = weight, idx
    if idx.ex.dtype.is_floating_point and not weight.ex.dtype.is_floating_point:
        idx, weight = weight, idx  # aten order is (weight, indices)
    if max_norm is not None:
        raise ctx.unsupported("embedding with max_norm", "embedding without max_norm")
    return ctx.emit("embedding", idx, weight)


@handles("dropout", "dropout_", "feature_dropout", "alpha_dropout", "identity", "contiguous", "clone",
         "detach")
def _identity(ctx: Ctx, x: Any, *args: Any, **kwargs: Any) -> Any:
    return x  # rnnc compiles for inference: dropout is the identity


@handles("softmax")
def _softmax(ctx: Ctx, x: TV, dim: int | None = None, *rest: Any, **kwargs: Any) -> TV:
    if dim is None:
        raise ctx.unsupported("softmax without dim")
    y = ctx.emit("softmax", x, axis=axis(dim, x.rank))
    return y


@handles("log_softmax")
def _log_softmax(ctx: Ctx, x: TV, dim: int | None = None, *rest: Any, **kwargs: Any) -> TV:
    """``x - max - log(sum(exp(x - max)))``: ``log(softmax(x))`` underflows to -inf where a
    score is far below the largest (a pointer network's ``-1e4`` on positions already taken:
    torch gives -10002.2, the logarithm of a float32 softmax -inf)."""
    if dim is None:
        raise ctx.unsupported("log_softmax without dim")
    ax = (axis(dim, x.rank),)
    s = ctx.emit("sub", x, ctx.emit("amax", x, axes=ax, keepdim=True))
    return ctx.emit("sub", s, ctx.emit("log", ctx.emit("sum", ctx.emit("exp", s), axes=ax, keepdim=True)))


def _reduce(op: str) -> Handler:
    """``sum``/``mean``/``amax`` over dims.  A sum of booleans or integers counts in int64, as
    torch's does (wenet's ``masks.sum(1)``, allennlp's ``mask.sum(0).long() - 1``): summed as
    booleans it would be an or, typed bool.  (``dtype=`` is not declared: such calls take the
    exact path.)"""
    def fn(ctx: Ctx, x: TV, dim: Any = None, keepdim: bool = False, *rest: Any, **kwargs: Any) -> TV:
        if isinstance(dim, bool):  # sum(x, keepdim) is not a thing; guard against dtype slots
            dim = None
        if op == "sum" and is_tensor(x) and not (x.ex.dtype.is_floating_point or x.ex.dtype.is_complex) \
                and x.ex.dtype != torch.int64:
            x = HANDLERS["to"](ctx, x, torch.int64)
        axes = tuple(range(x.rank)) if dim is None or dim == [] else (
            (dim,) if isinstance(dim, int) else tuple(dim))
        return ctx.emit(op, x, axes=tuple(axis(a, x.rank) for a in axes), keepdim=bool(keepdim))

    return fn


def _global_pool(op: str, spatial: int) -> Handler:
    """``F.max_pool1d(x, x.size(2))``: a window as large as the (symbolic) spatial dims is a
    reduction over them; any other pooling goes to the exact path."""
    def fn(ctx: Ctx, x: TV, kernel_size: Any, stride: Any = None, padding: Any = 0, *rest: Any,
           ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Any = None,
           return_indices: bool = False, dilation: Any = 1) -> Any:
        kernel = [kernel_size] * spatial if not isinstance(kernel_size, (list, tuple)) else list(kernel_size)
        axes = tuple(range(x.rank - spatial, x.rank))
        whole = len(kernel) == spatial and all(
            (isinstance(k, SymInt) and k.is_dim(x, a)) or (not isinstance(k, SymInt) and x.shape[a] == k)
            for k, a in zip(kernel, axes, strict=True))
        plain = stride in (None, [], kernel_size) and padding in (0, [0] * spatial, (0,) * spatial) and \
            not return_indices and divisor_override is None and not any(r not in (None, 1, False, 0) for r in rest)
        if not whole or not plain or not any(isinstance(k, SymInt) for k in kernel):
            return NotImplemented
        return ctx.emit(op, x, axes=axes, keepdim=True)

    return fn


for _dims_n in (1, 2):
    HANDLERS[f"max_pool{_dims_n}d"] = _global_pool("amax", _dims_n)
    HANDLERS[f"avg_pool{_dims_n}d"] = _global_pool("mean", _dims_n)
HANDLERS["sum"] = _reduce("sum")
HANDLERS["mean"] = _reduce("mean")
HANDLERS["amax"] = _reduce("amax")


@handles("cpu", "cuda")
def _device(ctx: Ctx, x: Any, *args: Any, **kwargs: Any) -> Any:
    return x  # the IR has no devices


@handles("to", "type")
@reads("dtype")
def to(ctx: Ctx, x: Any, *args: Any, **kwargs: Any) -> Any:
    """``x.to(dtype)`` casts; device moves are no-ops (the IR has no devices)."""
    from rnnc.frontend.handlers_shape import torch_dtype_arg

    dtype = kwargs.get("dtype")
    for a in args:
        d = torch_dtype_arg(a)
        if d is not None:
            dtype = d
            break
    if dtype is None or not is_tensor(x) or x.ex.dtype == dtype:
        return x
    return ctx.emit("cast", x, dtype=dtype_of_torch(dtype))


for _meth, _dt in (("float", torch.float32), ("double", torch.float64), ("half", torch.float16),
                   ("long", torch.int64), ("int", torch.int32), ("bool", torch.bool)):
    HANDLERS[_meth] = (lambda d: lambda ctx, x, *a, **k: to(ctx, x, d))(_dt)
