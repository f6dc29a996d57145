"""Ops whose output sizes are read at run time from other tensors' dims.

Why: a model writes ``x.view(t, b, 2, h)``, ``torch.zeros(b, h)`` or ``h.repeat(1, t, 1)`` with
sizes it read from its inputs.  When those sizes are symbolic (batch, time) no constant shape
attribute can say them, and ONNX's ``0``/``-1`` rules only cover a dim kept in place or one
inferred.  These ops name each size either as a constant or as "dim ``axis`` of reference input
``k``", so the Program stays valid for every batch and length, and exporters build the shape at
run time (``Shape`` -> ``Gather`` -> ``Concat``).

Shape entries (attribute ``shape``): an int (``-1``: inferred, reshape only; ``-1`` in
``expand_dyn``: keep the input's dim), ``["value", k]``: the value of reference ``k``, a
one-element integer tensor (``lengths.max().item()``), or ``[k, axis]``: dim ``axis`` of reference ``k``
(the op's inputs after ``x``; all inputs for ``full_dyn``).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from rnnc.ir import symdims
from rnnc.ir.ops import ShapeError, _req, _t, infers, register_op
from rnnc.ir.types import Dim, TensorType, broadcast_shapes, torch_dtype


def _entry_dims(entries: Any, refs: Sequence[TensorType | None]) -> list[Dim]:
    out: list[Dim] = []
    for e in entries:
        if isinstance(e, int):
            out.append(e)
        elif e[0] == "value":  # the value of a one-element integer reference: unknown until run time
            out.append("?")
        elif isinstance(e[0], str):  # a computed size: named by its expression (``rnnc.ir.symdims``)
            a, b = _entry_dims(e[1:], refs)
            out.append(symdims.name(e[0], a, b) if a != -1 and b != -1 else "?")
        else:
            k, ax = e
            if not 0 <= k < len(refs) or refs[k] is None:
                raise ShapeError(f"shape entry {list(e)} names reference {k}, there are {len(refs)}")
            ref = refs[k]
            assert ref is not None
            if not -ref.rank <= ax < ref.rank:
                raise ShapeError(f"shape entry {list(e)}: axis {ax} out of range for {ref.text()}")
            out.append(ref.shape[ax])
    return out


#: the arithmetic a shape entry ``[op, a, b]`` may use; the frontend's symbolic sizes
#: (``SymInt``, ``TracedInt``) compute with the same table
SIZE_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv, "%": operator.mod,
            "max": max, "min": min}


def _value(e: Any, refs: Sequence[Any]) -> int:
    if isinstance(e, int):
        return e
    if e[0] == "value":
        return int(refs[e[1]].reshape(-1)[0])
    if isinstance(e[0], str):
        return SIZE_OPS[e[0]](_value(e[1], refs), _value(e[2], refs))
    return int(refs[e[0]].shape[e[1]])


def concrete(entries: Any, refs: Sequence[Any]) -> list[int]:
    """The entries' sizes given the reference tensors."""
    return [_value(e, refs) for e in entries]


@register_op("reshape_dyn", inputs=(1, None), attrs=("shape",), doc="x.reshape(sizes read from the references)")
def _reshape_dyn(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    return (xs[0].reshape(concrete(a["shape"], xs[1:])),)


@infers("reshape_dyn")
def _reshape_dyn_infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    x = _req(types[0], "x")
    dims = _entry_dims(attrs["shape"], types[1:])
    if dims.count(-1) > 1:
        raise ShapeError("reshape_dyn: at most one -1")
    if -1 in dims:
        dims[dims.index(-1)] = symdims.quotient(x.shape, [d for d in dims if d != -1])
    return (TensorType(tuple(dims), x.dtype),)


@register_op("expand_dyn", inputs=(1, None), attrs=("shape",), doc="x.expand(sizes read from the references)")
def _expand_dyn(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    return (xs[0].expand(concrete(a["shape"], xs[1:])),)


@infers("expand_dyn")
def _expand_dyn_infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    x = _req(types[0], "x")
    dims = _entry_dims(attrs["shape"], types[1:])
    lead = len(dims) - x.rank
    if lead < 0:
        raise ShapeError(f"expand_dyn: {len(dims)} sizes for {x.text()}")
    want = tuple(x.shape[i - lead] if d == -1 else d for i, d in enumerate(dims))
    if broadcast_shapes(x.shape, want) is None:
        raise ShapeError(f"expand_dyn: cannot expand {x.text()} to {list(want)}")
    return (TensorType(want, x.dtype),)


@register_op("full_dyn", inputs=(0, None), attrs=("shape", "value", "dtype"),
             doc="torch.full(sizes read from the references, value)")
def _full_dyn(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    return (_t().full(concrete(a["shape"], xs), a["value"], dtype=torch_dtype(a["dtype"])),)


@infers("full_dyn")
def _full_dyn_infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    dims = _entry_dims(attrs["shape"], types)
    if any(d == -1 for d in dims):
        raise ShapeError("full_dyn: every size must be known")
    return (TensorType(tuple(dims), attrs["dtype"]),)


@register_op("arange", inputs=(0, None), attrs=("n", "start", "step", "dtype"),
             doc="start, start + step, ... (n values, n a shape entry): a range as long as a symbolic size")
def _arange(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    (n,) = concrete((a["n"],), xs)
    i = _t().arange(n, dtype=_t().float64 if "float" in a["dtype"] else _t().int64)
    return ((i * a["step"] + a["start"]).to(torch_dtype(a["dtype"])),)


@infers("arange")
def _arange_infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    return (TensorType(tuple(_entry_dims((attrs["n"],), types)), attrs["dtype"]),)


@register_op("slice_dyn", inputs=(1, None), attrs=("axis", "start", "stop", "step"),
             doc="x[start:stop:step] on axis, start/stop being shape entries (``x[:, :t]`` with t read from y)")
def _slice_dyn(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    start, stop = concrete((a["start"], a["stop"]), xs[1:])
    index = [slice(None)] * xs[0].dim()
    index[a["axis"]] = slice(start, stop, a["step"])
    return (xs[0][tuple(index)],)


@infers("slice_dyn")
def _slice_dyn_infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    x = _req(types[0], "x")
    ax = attrs["axis"]
    if not 0 <= ax < x.rank or attrs["step"] < 1:
        raise ShapeError(f"slice_dyn: axis {ax} / step {attrs['step']} invalid for {x.text()}")
    start, stop = _entry_dims((attrs["start"], attrs["stop"]), types[1:])
    n = symdims.slice_length(x.shape[ax], start, stop, attrs["step"])
    return (x.with_shape(tuple(n if i == ax else d for i, d in enumerate(x.shape))),)


@register_op("trim_to_lengths", inputs=2, attrs=("axis",),
             doc="x cut along axis to max(lengths): pad_packed_sequence's padded length")
def _trim(xs: Sequence[Any], a: dict[str, Any]) -> tuple[Any, ...]:
    n = int(xs[1].max()) if xs[1].numel() else 0
    return (xs[0].narrow(a["axis"], 0, n),)


@infers("trim_to_lengths")
def _trim_infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    x, lengths = _req(types[0], "x"), _req(types[1], "lengths")
    if lengths.rank != 1 or not 0 <= attrs["axis"] < x.rank:
        raise ShapeError(f"trim_to_lengths: lengths {lengths.text()} / axis {attrs['axis']} invalid for {x.text()}")
    return (x.with_shape(tuple("?" if i == attrs["axis"] else d for i, d in enumerate(x.shape))),)
