"""The generic IR-op -> TIR expression renderer: every cell, user-written ones included.

A value of the step graph is a :class:`Lazy`: its shape (the IR shape, with the batch symbol
bound to a TIR variable) and a function from an index tuple to a TIR expression.  Elementwise
ops compose these functions (that *is* the gate-math fusion: ``sigmoid(xp + rec) * c`` becomes
one expression read at one index), views only remap indices, and a buffer is just a ``Lazy``
that loads.  The meaning of each op follows ``rnnc.ir.ops`` (torch semantics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tvm import tirx

from rnnc.backends.tvm.fastmath import fast_exp, fast_sigmoid, fast_tanh, let
from rnnc.errors import UnsupportedError
from rnnc.ir.graph import Node
from rnnc.ir.types import TensorType

Index = tuple[Any, ...]  # TIR expressions (or ints)
Dim = Any  # int | tirx.PrimExpr


@dataclass(frozen=True)
class Lazy:
    """A value as an index function; ``fn(idx)`` is the element at ``idx`` (len(idx) == rank)."""

    shape: tuple[Dim, ...]
    dtype: str
    fn: Callable[[Index], Any]

    def at(self, idx: Index) -> Any:
        return self.fn(tuple(idx))


def buffer_value(buf: Any, shape: tuple[Dim, ...], dtype: str, to_buf: Callable[[Index], Index] | None = None) -> Lazy:
    """A Lazy reading ``buf``; ``to_buf`` maps value indices to buffer indices (default: same)."""
    return Lazy(shape, dtype, lambda idx: buf[to_buf(idx) if to_buf else idx])


def static(d: Dim) -> int | None:
    """The int value of a dim, or None when it is symbolic."""
    if isinstance(d, int):
        return d
    return int(d.value) if isinstance(d, tirx.IntImm) else None


def same_dim(a: Dim, b: Dim) -> bool:
    sa, sb = static(a), static(b)
    if sa is not None or sb is not None:
        return sa == sb
    return a.same_as(b)


def broadcast(v: Lazy, out_shape: tuple[Dim, ...]) -> Lazy:
    """Numpy broadcasting of ``v`` to ``out_shape`` (right-aligned; size-1 dims read index 0)."""
    rank, pad = len(v.shape), len(out_shape) - len(v.shape)
    if pad < 0:
        raise UnsupportedError(f"cannot broadcast shape {v.shape} to {out_shape}")
    ones = [static(d) == 1 and static(o) != 1 for d, o in zip(v.shape, out_shape[pad:], strict=True)]

    def fn(idx: Index) -> Any:
        inner = idx[pad:]
        return v.at(tuple(0 if ones[i] else inner[i] for i in range(rank)))

    return Lazy(out_shape, v.dtype, fn)


def _const(value: float, dtype: str) -> Any:
    return tirx.const(value, dtype)


def _softplus(x: Any, dt: str) -> Any:  # torch: beta=1, threshold=20
    return let(x, lambda v: tirx.Select(v > _const(20.0, dt), v, tirx.log1p(fast_exp(v, dt))), dt)


#: unary ops as ``f(x, dtype)`` (loads carry no dtype attribute, constants need one)
UNARY: dict[str, Callable[[Any, str], Any]] = {
    "neg": lambda x, dt: -x,
    "sigmoid": fast_sigmoid,
    "tanh": fast_tanh,
    "exp": fast_exp,
    "log": lambda x, dt: tirx.log(x),
    "softplus": _softplus,
    "relu": lambda x, dt: tirx.max(x, _const(0.0, dt)),
    "abs": lambda x, dt: tirx.abs(x),
    "sqrt": lambda x, dt: tirx.sqrt(x),
    "silu": lambda x, dt: let(x, lambda v: v * fast_sigmoid(v, dt), dt),
    "gelu": lambda x, dt: let(x, lambda v: _const(0.5, dt) * v * (_const(1.0, dt) + tirx.erf(
        v * _const(math.sqrt(0.5), dt))), dt),
    "logsigmoid": lambda x, dt: let(x, lambda v: tirx.min(v, _const(0.0, dt)) - tirx.log1p(
        fast_exp(-tirx.abs(v), dt)), dt),
    "reciprocal": lambda x, dt: _const(1.0, dt) / x,
    "cos": lambda x, dt: tirx.cos(x),
    "sin": lambda x, dt: tirx.sin(x),
}
BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "max": tirx.max,
    "min": tirx.min,
    "pow": tirx.power,
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
}


class Renderer:
    """Turns elementwise and view nodes into Lazy values over ``env`` (value name -> Lazy).

    ``dims`` binds IR dim symbols (``"B"``) to TIR expressions; reductions are not rendered
    here but by the loop-nest emitters, which read their operands through :meth:`value`.
    """

    def __init__(self, types: dict[str, TensorType], dims: dict[str, Dim]) -> None:
        self.types = types
        self.dims = dims
        self.env: dict[str, Lazy] = {}

    def shape(self, name: str) -> tuple[Dim, ...]:
        out = []
        for d in self.types[name].shape:
            if isinstance(d, int):
                out.append(d)
            elif d in self.dims:
                out.append(self.dims[d])
            else:
                raise UnsupportedError(f"value %{name} of the step graph has an unknown dim {d!r}")
        return tuple(out)

    def value(self, name: str) -> Lazy:
        return self.env[name]

    def node(self, n: Node) -> None:
        """Bind the outputs of an elementwise, const, concat or view node in ``env``."""
        if n.op == "const":
            c = _const(float(n.attr("value")), n.attr("dtype"))
            self.env[n.outputs[0]] = Lazy((), n.attr("dtype"), lambda idx: c)
        elif n.op in UNARY or n.op in BINARY or n.op in ("where", "clamp"):
            self.env[n.outputs[0]] = self._elementwise(n)
        elif n.op == "concat":
            self.env[n.outputs[0]] = self._concat(n)
        else:
            for name, lazy in zip(n.outputs, self._view(n), strict=True):
                self.env[name] = lazy

    def _elementwise(self, n: Node) -> Lazy:
        out = n.outputs[0]
        shape, dtype = self.shape(out), self.types[out].dtype
        ins = [broadcast(self.env[i], shape) for i in n.inputs]
        op = n.op
        if op in UNARY:
            f = UNARY[op]
            return Lazy(shape, dtype, lambda idx: f(ins[0].at(idx), dtype))
        if op in BINARY:
            f2 = BINARY[op]
            return Lazy(shape, dtype, lambda idx: f2(ins[0].at(idx), ins[1].at(idx)))
        if op == "where":
            return Lazy(shape, dtype, lambda idx: tirx.Select(ins[0].at(idx), ins[1].at(idx), ins[2].at(idx)))
        lo, hi = n.attr("min"), n.attr("max")

        def clamp(idx: Index) -> Any:
            v = ins[0].at(idx)
            v = tirx.max(v, _const(float(lo), dtype)) if lo is not None else v
            return tirx.min(v, _const(float(hi), dtype)) if hi is not None else v

        return Lazy(shape, dtype, clamp)

    def _concat(self, n: Node) -> Lazy:
        out = n.outputs[0]
        shape = self.shape(out)
        axis = n.attr("axis") % len(shape)
        parts, start = [], 0
        for name in n.inputs:
            v = self.env[name]
            parts.append((start, v))
            start += static(v.shape[axis])

        def fn(idx: Index) -> Any:
            # if_then_else, not Select: the branch not taken would load out of its part's bounds
            begin, last = parts[-1]
            expr = last.at((*idx[:axis], idx[axis] - begin, *idx[axis + 1:]))
            for begin, v in reversed(parts[:-1]):
                here = v.at((*idx[:axis], idx[axis] - begin, *idx[axis + 1:]))
                expr = tirx.if_then_else(idx[axis] < begin + static(v.shape[axis]), here, expr)
            return expr

        return Lazy(shape, self.types[out].dtype, fn)

    def _view(self, n: Node) -> Sequence[Lazy]:
        src = self.env[n.inputs[0]]
        shapes = [self.shape(o) for o in n.outputs]
        rank = len(src.shape)
        op, dtype = n.op, self.types[n.outputs[0]].dtype
        if op == "cast":
            return [Lazy(shapes[0], dtype, lambda idx: tirx.Cast(dtype, src.at(idx)))]
        if op == "reshape":
            return [Lazy(shapes[0], dtype, reshape_index(src, shapes[0]))]
        if op == "transpose":
            perm = [p % rank for p in n.attr("perm")]
            inv = [perm.index(i) for i in range(rank)]
            return [Lazy(shapes[0], dtype, lambda idx: src.at(tuple(idx[inv[i]] for i in range(rank))))]
        if op == "unsqueeze":
            ax = n.attr("axis") % (rank + 1)
            return [Lazy(shapes[0], dtype, lambda idx: src.at((*idx[:ax], *idx[ax + 1:])))]
        ax = n.attr("axis") % rank
        if op == "squeeze":
            if len(shapes[0]) == rank:  # torch leaves a non-1 dim alone
                return [src]
            return [Lazy(shapes[0], dtype, lambda idx: src.at((*idx[:ax], 0, *idx[ax:])))]
        if op == "select":
            index = n.attr("index") % static(src.shape[ax])
            return [Lazy(shapes[0], dtype, lambda idx: src.at((*idx[:ax], index, *idx[ax:])))]
        if op == "split":
            outs, start = [], 0
            for shape, size in zip(shapes, n.attr("sizes"), strict=True):
                outs.append(Lazy(shape, dtype, _offset_fn(src, ax, start, 1)))
                start += size
            return outs
        if op == "slice":
            size = static(src.shape[ax])
            start, step = n.attr("start") or 0, n.attr("step") or 1
            start = start + size if start < 0 else start
            return [Lazy(shapes[0], dtype, _offset_fn(src, ax, start, step))]
        raise UnsupportedError(f"the TVM backend cannot render op {op!r} ({n.label}) in a cell step")


def _offset_fn(src: Lazy, axis: int, start: int, step: int) -> Callable[[Index], Any]:
    return lambda idx: src.at((*idx[:axis], idx[axis] * step + start, *idx[axis + 1:]))


def _unit_dims_only(src: Lazy, out_shape: tuple[Dim, ...]) -> Callable[[Index], Any] | None:
    """The index map of a reshape that only adds or drops size-1 dims (``h.view(h.size()[1:])``
    on ``[1, B, H]``), symbolic dims included; None for any other reshape."""
    ins = [i for i, d in enumerate(src.shape) if static(d) != 1]
    outs = [i for i, d in enumerate(out_shape) if static(d) != 1]
    if len(ins) != len(outs) or not all(same_dim(src.shape[i], out_shape[o]) for i, o in zip(ins, outs, strict=True)):
        return None
    rank = len(src.shape)

    def at(idx: Index) -> Any:
        full: list[Any] = [0] * rank
        for i, o in zip(ins, outs, strict=True):
            full[i] = idx[o]
        return src.at(tuple(full))

    return at


def reshape_index(src: Lazy, out_shape: tuple[Dim, ...]) -> Callable[[Index], Any]:
    """Index map of a reshape: a common prefix of equal dims (the batch) passes through, the
    rest is linearised over the output's static dims and split over the input's."""
    keep = 0
    while keep < min(len(src.shape), len(out_shape)) and same_dim(src.shape[keep], out_shape[keep]) and (
            static(src.shape[keep]) is None or keep == 0):
        keep += 1
    rest_in, rest_out = src.shape[keep:], out_shape[keep:]
    if any(static(d) is None for d in (*rest_in, *rest_out)):
        moved = _unit_dims_only(src, out_shape)
        if moved is None:
            raise UnsupportedError(f"reshape from {src.shape} to {out_shape} mixes symbolic dims")
        return moved
    in_sizes = [static(d) for d in rest_in]
    out_sizes = [static(d) for d in rest_out]

    def fn(idx: Index) -> Any:
        flat: Any = 0
        for i, size in zip(idx[keep:], out_sizes, strict=True):
            flat = flat * size + i
        parts = []
        for size in reversed(in_sizes):
            parts.append(tirx.floormod(flat, size) if size != 1 else 0)
            flat = tirx.floordiv(flat, size)
        return src.at((*idx[:keep], *reversed(parts)))

    return fn
