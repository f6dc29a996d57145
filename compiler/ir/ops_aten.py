"""The IR's open end: ``aten``, one core-ATen operator applied to IR values.

Why one generic op: the frontend captures everything that is not a recurrent layer through
``torch.export`` decomposed to core ATen (``rnnc.frontend.aten``), a closed set of about two
hundred operators whose meaning PyTorch defines.  Ops the rest of rnnc rewrites, fuses or
quantizes (linear, conv1d, the elementwise scalar ops, layer_norm, ...) become first-class IR
ops; every other core-ATen op becomes an ``aten`` node naming its overload, so coverage is the
operator set's, not a list grown model by model.  Its interpreter semantics are the ATen op
itself, its shape inference runs the op on meta tensors (below), and each exporter renders the
overloads it knows (``backends/onnx/ops_aten.py``); one it does not know is named in one
sentence (``explain()``/``export_onnx``), never guessed.

Attributes (all JSON, so the printed text round-trips):

* ``target``: the overload, e.g. ``"max_pool2d.default"`` (``torch.ops.aten.<target>``);
* ``args`` / ``kwargs``: the call's arguments, a tensor input written ``"%i"`` (the node's i-th
  input), a dtype ``"dtype:float32"``; device, layout and memory-format arguments are dropped
  (the interpreter runs on the CPU, exporters choose their own layouts).
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Sequence
from typing import Any

from rnnc.ir import symdims
from rnnc.ir.ops import ShapeError, _t, infers, register_op
from rnnc.ir.types import Dim, TensorType, dtype_of_torch, torch_dtype

#: keyword arguments that only place or lay out memory: meaningless for the IR
DROPPED_KWARGS = frozenset({"device", "layout", "pin_memory", "memory_format", "non_blocking"})

#: meta evaluation gives each symbol a size from its name (so a symbol has the same size in every
#: op, and a size derived from it the same value): run r uses ``_BASE[r] + 2 * (crc32 % 1999)``;
#: every anonymous ``?`` dim takes ``_ANON[r]`` (ops that need two of them equal accept that)
_BASE = (10007, 20011)
_ANON = (40009, 50021)
#: the same for an op with a tensor of five or more symbolic dims (MaxPool3d over [B, C, T, H, W]):
#: five sizes of 1e4 overflow a storage size; names derived there (``T'1013``) differ from the
#: ones other ops give the same size, which only makes them "not known equal"
_SMALL_BASE = (1009, 2003)
_SMALL_ANON = (4001, 5003)
_MANY_SYMBOLS = 5


def _sentinel(sym: str, run: int, taken: set[int], small: bool = False) -> int:
    n = (_SMALL_BASE if small else _BASE)[run] + 2 * (zlib.crc32(sym.encode()) % (199 if small else 1999))
    while n in taken:  # two symbols of one op on one size: the later moves (order is the op's)
        n += 1
    taken.add(n)
    return n


@functools.cache
def overload(target: str) -> Any:
    """``torch.ops.aten.<target>``, or one ShapeError naming the unknown overload."""
    packet, _, name = target.partition(".")
    try:
        return getattr(getattr(_t().ops.aten, packet), name or "default")
    except (AttributeError, RuntimeError):
        raise ShapeError(f"unknown ATen operator aten.{target}") from None


def encode(value: Any, tensor_index: dict[int, int]) -> Any:
    """An argument as an attribute: tensors (by ``id``) become ``"%i"``, dtypes ``"dtype:..."``."""
    torch = _t()
    if isinstance(value, torch.Tensor):
        return f"%{tensor_index[id(value)]}"
    if isinstance(value, torch.dtype):
        return f"dtype:{dtype_of_torch(value)}"
    if isinstance(value, (list, tuple)):
        return tuple(encode(v, tensor_index) for v in value)
    if isinstance(value, (bool, str, type(None))):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"ATen argument {value!r} of type {type(value).__name__} cannot be an IR attribute")


def decode(value: Any, inputs: Sequence[Any]) -> Any:
    """Inverse of :func:`encode` given the node's input tensors."""
    if isinstance(value, str):
        if value.startswith("%") and value[1:].isdigit():
            return inputs[int(value[1:])]
        if value.startswith("dtype:"):
            return torch_dtype(value[6:])
        return value
    if isinstance(value, (list, tuple)):
        return [decode(v, inputs) for v in value]
    return value


def call(target: str, args: Any, kwargs: Any, inputs: Sequence[Any]) -> tuple[Any, ...]:
    """Run the overload on ``inputs`` (real or meta tensors); always a tuple of tensors."""
    fn = overload(target)
    out = fn(*decode(tuple(args), inputs), **{k: decode(v, inputs) for k, v in (kwargs or ())})
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if not all(isinstance(o, _t().Tensor) for o in outs):
        raise ShapeError(f"aten.{target} returns {[type(o).__name__ for o in outs]}, not tensors")
    return outs


@register_op("aten", inputs=(0, None), attrs=("target", "args"),
             doc="a core-ATen operator by name (see module docstring); kwargs optional")
def _aten(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    return call(a["target"], a["args"], a.get("kwargs", ()), xs)


def _many(types: Sequence[TensorType | None]) -> bool:
    """Whether a tensor of the op has so many symbolic dims that the usual sizes overflow."""
    return any(sum(isinstance(d, str) for d in t.shape) >= _MANY_SYMBOLS for t in types if t is not None)


def _meta_run(attrs: dict[str, Any], types: Sequence[TensorType | None], size: dict[str, int], run: int) -> Any:
    torch = _t()
    metas = []
    for t in types:
        if t is None:
            metas.append(None)
            continue
        anon = (_SMALL_ANON if _many(types) else _ANON)[run]
        shape = [d if isinstance(d, int) else size.get(d, anon) for d in t.shape]
        metas.append(torch.empty(shape, dtype=torch_dtype(t.dtype), device="meta"))
    try:
        return call(attrs["target"], attrs["args"], attrs.get("kwargs", ()), metas)
    except ShapeError:
        raise
    except Exception as exc:  # the op's own argument checks: say which op and why
        raise ShapeError(f"aten.{attrs['target']}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None


@infers("aten")
def _aten_infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    """Shapes from meta runs (``_infer_named``); if the op rejects its symbols at distinct sizes
    (it needs a ``?`` dim to equal ``B``), every symbolic dim gets one size and the outputs'
    symbolic dims are ``?``."""
    try:
        return _infer_named(types, attrs)
    except ShapeError as first:
        shared = [t.with_shape(tuple(d if isinstance(d, int) else "?" for d in t.shape)) if t is not None else None
                  for t in types]
        try:
            return _infer_named(shared, attrs)
        except ShapeError:
            raise first from None


def _infer_named(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    """Run the op on meta tensors, each symbolic dim given a size from its name, twice (two
    sizes per symbol): an output dim that follows a symbol in both runs is that symbol, one
    equal in both runs is a constant.  Any other dim is derived: if changing one symbol alone
    changes it, it is named ``<symbol>'<its size in the first run>`` -- the same name wherever
    the same function of that symbol appears (``T`` through a stride-2 conv: ``T'5004`` ...),
    so later ops can tell equal sizes apart from merely unknown ones; otherwise ``?``."""
    symbols: list[str] = []
    for t in types:
        for d in (t.shape if t is not None else ()):
            if isinstance(d, str) and d != "?" and d not in symbols:
                symbols.append(d)
    sizes: list[dict[str, int]] = []
    for run in (0, 1):
        taken: set[int] = set()
        sizes.append({sym: _sentinel(sym, run, taken, _many(types)) for sym in symbols})
    runs = [_meta_run(attrs, types, sizes[r], r) for r in (0, 1)]
    moved: dict[str, Any] = {}

    def derived_name(k: int, axis: int) -> str:
        v0 = int(runs[0][k].shape[axis])
        deps = []
        for sym in symbols:
            if sym not in moved:
                moved[sym] = _meta_run(attrs, types, {**sizes[0], sym: sizes[1][sym]}, 0)
            if int(moved[sym][k].shape[axis]) != v0:
                deps.append(sym)
        if len(deps) != 1:
            return "?"
        sym = deps[0]
        unknown = any("?" in str(d) for t in types if t is not None for d in t.shape)
        # (a ``?`` dim has a fixed stand-in size in every run: a line through it is no claim)
        linear = None if unknown else _linear_in(sym, k, axis, v0, int(moved[sym][k].shape[axis]))
        if linear is not None:  # F.pad(x[:, 1:], (0, 0, 0, 1)): T-1+1 is T again
            return str(linear)
        return f"{sym}'{v0}" if re.fullmatch(r"[\w']+", sym) else f"({sym})'{v0}"

    def _linear_in(sym: str, k: int, axis: int, v0: int, v1: int) -> Dim | None:
        """The dim as ``a*sym + c`` when a third size of ``sym`` confirms a line through the two runs."""
        s0, s1 = sizes[0][sym], sizes[1][sym]
        a, rem = divmod(v1 - v0, s1 - s0)
        if rem or not a:
            return None
        c = v0 - a * s0
        s2 = s0 + 2 * (s1 - s0) + 1
        try:
            third = _meta_run(attrs, types, {**sizes[0], sym: s2}, 0)
        except ShapeError:  # the op takes no size there (an even length): no line to claim
            return None
        if int(third[k].shape[axis]) != a * s2 + c:
            return None
        return symdims.name("+", symdims.name("*", a, sym), c)

    out: list[TensorType] = []
    for k, (first, second) in enumerate(zip(*runs, strict=True)):
        dims: list[Dim] = []
        for axis, (n1, n2) in enumerate(zip(first.shape, second.shape, strict=True)):
            sym = next((s for s in symbols if n1 == sizes[0][s] and n2 == sizes[1][s]), None)
            if sym is not None:
                dims.append(sym)
            elif n1 == n2:
                dims.append(int(n1))
            else:
                dims.append(derived_name(k, axis))
        try:
            dtype = dtype_of_torch(first.dtype)
        except ValueError as exc:
            raise ShapeError(f"aten.{attrs['target']}: {exc}") from None
        out.append(TensorType(tuple(dims), dtype))
    return tuple(out)
