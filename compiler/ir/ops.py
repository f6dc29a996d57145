"""The op set of the IR: for each op, its arity, required attributes, shape inference and its
torch semantics (which *is* the interpreter, so the reference meaning of every op is written once).

Ops register themselves in ``OPS``; backends look ops up by name and decline (``supports``)
what they cannot render, so there is no dispatch on backend names here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rnnc.ir.types import TensorType, broadcast_shapes, dims_compatible, torch_dtype

Infer = Callable[[Sequence[TensorType | None], dict[str, Any]], tuple[TensorType, ...]]
Evaluate = Callable[[Sequence[Any], dict[str, Any]], tuple[Any, ...]]


class ShapeError(ValueError):
    """Raised by shape inference; the verifier adds which node it was."""


@dataclass(frozen=True)
class OpDef:
    """How one op type behaves: checked by ``verify``, executed by the interpreter."""

    name: str
    min_inputs: int
    max_inputs: int | None  # None: variadic
    required_attrs: tuple[str, ...]
    infer: Infer
    evaluate: Evaluate
    elementwise: bool = False
    doc: str = ""


OPS: dict[str, OpDef] = {}


def register_op(
    name: str,
    *,
    inputs: int | tuple[int, int | None],
    attrs: tuple[str, ...] = (),
    elementwise: bool = False,
    doc: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an op whose evaluate function is decorated; its infer is set with ``@infers``."""
    lo, hi = (inputs, inputs) if isinstance(inputs, int) else inputs

    def deco(fn: Evaluate) -> Evaluate:
        OPS[name] = OpDef(name, lo, hi, attrs, _no_infer(name), fn, elementwise, doc)
        return fn

    return deco


def infers(name: str) -> Callable[[Infer], Infer]:
    def deco(fn: Infer) -> Infer:
        d = OPS[name]
        OPS[name] = OpDef(d.name, d.min_inputs, d.max_inputs, d.required_attrs, fn, d.evaluate,
                          d.elementwise, d.doc)
        return fn

    return deco


def _no_infer(name: str) -> Infer:
    def infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
        raise ShapeError(f"op {name} has no shape inference")

    return infer


def _req(t: TensorType | None, what: str) -> TensorType:
    if t is None:
        raise ShapeError(f"input {what} is required")
    return t


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


# --------------------------------------------------------------------------- elementwise
def _t():  # lazy torch import keeps `import rnnc.ir` cheap for pure tools
    import torch

    return torch


_UNARY: dict[str, Callable[[Any], Any]] = {
    "neg": lambda x: -x,
    "sigmoid": lambda x: _t().sigmoid(x),
    "tanh": lambda x: _t().tanh(x),
    "exp": lambda x: _t().exp(x),
    "log": lambda x: _t().log(x),
    "softplus": lambda x: _t().nn.functional.softplus(x),
    "relu": lambda x: _t().relu(x),
    "abs": lambda x: _t().abs(x),
    "sqrt": lambda x: _t().sqrt(x),
    "silu": lambda x: _t().nn.functional.silu(x),
    "gelu": lambda x: _t().nn.functional.gelu(x),
    "logsigmoid": lambda x: _t().nn.functional.logsigmoid(x),
    "reciprocal": lambda x: _t().reciprocal(x),
    # LRU builds its complex eigenvalues λ = |λ| e^{iθ} from the trained phase θ
    "cos": lambda x: _t().cos(x),
    "sin": lambda x: _t().sin(x),
}
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "max": lambda a, b: _t().maximum(a, b),
    "min": lambda a, b: _t().minimum(a, b),
    "pow": lambda a, b: _t().pow(a, b),
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
}


def _unary_infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    return (_req(types[0], "x"),)


def _binary_infer_for(name: str) -> Infer:
    def infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
        a, b = _req(types[0], "a"), _req(types[1], "b")
        shape = broadcast_shapes(a.shape, b.shape)
        if shape is None:
            raise ShapeError(f"cannot broadcast {a.text()} with {b.text()}")
        if a.dtype != b.dtype:
            raise ShapeError(f"dtype mismatch {a.text()} vs {b.text()} (insert a cast)")
        return (TensorType(shape, "bool" if name in ("gt", "lt") else a.dtype),)

    return infer


#: the elementwise scalar ops, by arity: the table every backend's scalar renderer covers
#: (``tests/test_op_tables.py`` names the tables a new op still needs)
UNARY_OPS = frozenset(_UNARY)
BINARY_OPS = frozenset(_BINARY)

for _name, _fn in _UNARY.items():
    OPS[_name] = OpDef(_name, 1, 1, (), _unary_infer, (lambda f: lambda xs, a: (f(xs[0]),))(_fn), True)
for _name, _fn in _BINARY.items():
    OPS[_name] = OpDef(_name, 2, 2, (), _binary_infer_for(_name),
                       (lambda f: lambda xs, a: (f(xs[0], xs[1]),))(_fn), True)


@register_op("const", inputs=0, attrs=("value", "dtype"), doc="scalar constant (broadcasts)")
def _const(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    return (_t().tensor(a["value"], dtype=torch_dtype(a["dtype"])),)


@infers("const")
def _const_infer(types, attrs):
    return (TensorType((), attrs["dtype"]),)


@register_op("cast", inputs=1, attrs=("dtype",))
def _cast(xs, a):
    return (xs[0].to(torch_dtype(a["dtype"])),)


@infers("cast")
def _cast_infer(types, attrs):
    return (TensorType(_req(types[0], "x").shape, attrs["dtype"]),)


@register_op("clamp", inputs=1, attrs=("min", "max"), elementwise=True, doc="None bounds are open")
def _clamp(xs, a):
    return (_t().clamp(xs[0], a["min"], a["max"]),)


OPS["clamp"] = OpDef("clamp", 1, 1, ("min", "max"), _unary_infer, _clamp, True)


@register_op("where", inputs=3, elementwise=True)
def _where(xs, a):
    return (_t().where(xs[0], xs[1], xs[2]),)


@infers("where")
def _where_infer(types, attrs):
    c, x, y = (_req(t, n) for t, n in zip(types, ("cond", "x", "y"), strict=True))
    shape = broadcast_shapes(c.shape, x.shape)
    shape = broadcast_shapes(shape, y.shape) if shape is not None else None
    if shape is None:
        raise ShapeError(f"cannot broadcast {c.text()}, {x.text()}, {y.text()}")
    return (TensorType(shape, x.dtype),)


# --------------------------------------------------------------------------- linear algebra
@register_op("linear", inputs=(2, 3), doc="y = x @ w.T + b (torch layout: w is [out, in])")
def _linear(xs, a):
    return (_t().nn.functional.linear(xs[0], xs[1], xs[2] if len(xs) > 2 else None),)


@infers("linear")
def _linear_infer(types, attrs):
    x, w = _req(types[0], "x"), _req(types[1], "weight")
    if w.rank != 2 or x.rank < 1:
        raise ShapeError(f"linear wants x[..., in] and weight[out, in], got {x.text()} and {w.text()}")
    if not dims_compatible(x.shape[-1], w.shape[1]):
        raise ShapeError(f"linear: x has {x.shape[-1]} features but weight {w.text()} expects {w.shape[1]}")
    b = types[2] if len(types) > 2 else None
    if b is not None and (b.rank != 1 or not dims_compatible(b.shape[0], w.shape[0])):
        raise ShapeError(f"linear: bias {b.text()} does not match weight {w.text()}")
    return (TensorType((*x.shape[:-1], w.shape[0]), x.dtype),)


@register_op("matmul", inputs=2, doc="torch.matmul semantics")
def _matmul(xs, a):
    return (_t().matmul(xs[0], xs[1]),)


@infers("matmul")
def _matmul_infer(types, attrs):
    x, y = _req(types[0], "a"), _req(types[1], "b")
    if x.rank < 1 or y.rank < 1:
        raise ShapeError("matmul needs rank >= 1")
    if not dims_compatible(x.shape[-1], y.shape[-2] if y.rank >= 2 else y.shape[0]):
        raise ShapeError(f"matmul: inner dims differ in {x.text()} @ {y.text()}")
    if x.rank == 1 and y.rank == 1:
        return (TensorType((), x.dtype),)
    if y.rank == 1:
        return (TensorType(x.shape[:-1], x.dtype),)
    if x.rank == 1:
        return (TensorType((*y.shape[:-2], y.shape[-1]), x.dtype),)
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2])
    if batch is None:
        raise ShapeError(f"matmul: batch dims of {x.text()} and {y.text()} do not broadcast")
    return (TensorType((*batch, x.shape[-2], y.shape[-1]), x.dtype),)
