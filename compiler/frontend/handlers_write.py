"""``x[idx] = value`` into a tensor the model computed (``fx_trace.assign``), as slices and concats.

Why not torch.export's functional form: it writes through an ``arange(n) == k`` mask and a
``slice_scatter`` whose sizes are the example's, so every write would fix the lengths it
touches.  A write of a box -- each axis indexed by a constant, a unit-step slice or all of it --
is the untouched parts of ``x`` around the written box, concatenated axis by axis; slices and
concats keep symbolic sizes, so ``outputs[0, :, 1:3] = -1``, ``y[:, :, -2:] *= 0.5`` or
``out[:, :h.size(1)] = h`` (a buffer of the longer stream's length) hold at any length.  A
symbolic slice bound must be a size that is never negative (``rnnc.ir.symdims.bounds``), and a
symbolic slice never shorter than empty, so the pieces never overlap at another size.  Other
indexing (masks, tensors of indices, strided slices, Ellipsis) stays on the exact path.  One-step
writes in a loop are first gathered into a stack (``writes.py``).
"""

from __future__ import annotations

from typing import Any

from rnnc.frontend.handlers import HANDLERS, handles, is_tensor
from rnnc.frontend.handlers_shape import cat, getitem, slice_, unsqueeze
from rnnc.frontend.values import TV, Ctx, SymInt
from rnnc.ir import symdims


def _constant(b: Any) -> bool:
    return b is None or (isinstance(b, int) and not isinstance(b, (bool, SymInt)))


def _low(d: Any) -> float:
    """The least value a bound (a constant or a ``SymInt``) takes at any size."""
    p = symdims.parse(d.dim if isinstance(d, SymInt) else int(d))
    return -float("inf") if p is None else symdims.bounds(p)[0]


def _sized(it: slice) -> bool:
    """A slice with a symbolic bound (``[:h.size(1)]``, ``[s:s + n]``) that counts from the start
    at every size and never runs backwards."""
    lo, hi = it.start or 0, it.stop
    if _low(lo) < 0 or (hi is not None and _low(hi) < 0):
        return False
    return hi is None or _low(hi - lo) >= 0


def _box(items: list[Any]) -> list[tuple[int, Any, Any]] | None:
    """(axis, start, stop) per indexed axis (stop None: to the end), or None when an item is not
    a constant index or a unit-step slice of constant or never-negative symbolic bounds."""
    box = []
    for ax, it in enumerate(items):
        if it is not None and _constant(it):
            box.append((ax, it, None if it == -1 else it + 1))
        elif isinstance(it, slice):
            if it.step not in (None, 1):
                return None
            if not all(_constant(b) for b in (it.start, it.stop)):
                if not _sized(it):
                    return None
                box.append((ax, it.start or 0, it.stop))
                continue
            if it.start in (None, 0) and it.stop is None:
                continue
            lo, hi = it.start or 0, it.stop
            if hi is not None and lo < 0 <= hi:
                return None  # ``y[:, -3:5]``: from the end to a position from the start, overlapping
            box.append((ax, lo, hi))
        else:
            return None
    return box


def _put(ctx: Ctx, x: TV, box: list[tuple[int, Any, Any]], value: TV) -> TV:
    """``x`` with the box replaced by ``value`` (shaped like the box, every axis kept)."""
    if not box:
        return value
    (ax, lo, hi), rest = box[0], box[1:]
    pieces = []
    if not (_constant(lo) and lo == 0):
        pieces.append(slice_(ctx, x, ax, 0, lo))
    pieces.append(_put(ctx, slice_(ctx, x, ax, lo, hi), rest, value))
    if hi is not None:
        pieces.append(slice_(ctx, x, ax, hi, None))
    return cat(ctx, pieces, ax)


@handles("assign")
def assign(ctx: Ctx, x: Any, idx: Any, value: Any) -> Any:
    if not is_tensor(x):
        return NotImplemented
    items = list(idx) if isinstance(idx, tuple) else [idx]
    box = _box(items) if len(items) <= x.rank else None
    if box is None:
        return NotImplemented  # masks, index tensors, steps, Ellipsis: the exact path
    if any(hi is not None and _constant(lo) and _constant(hi) and (lo >= 0) == (hi >= 0) and hi <= lo
           for _, lo, hi in box):
        return x  # ``y[:, 3:1] = v`` writes nothing, at any length
    region = getitem(ctx, x, idx)
    value = ctx.lift(value, like=x) if not isinstance(value, TV) else value
    if value.rank > region.rank:
        return NotImplemented
    value = HANDLERS["to"](ctx, value, x.ex.dtype)
    value = HANDLERS["expand_as"](ctx, value, region)
    if value is NotImplemented:
        return NotImplemented
    for ax, it in enumerate(items):  # the indexed axes come back, size one
        if isinstance(it, int):
            value = unsqueeze(ctx, value, ax)
    return _put(ctx, x, box, value)
