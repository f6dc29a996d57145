"""The step graph a rolled loop becomes: where its values keep the batch, and its cleanup.

Why a module of its own: the loop pass (``scan.py``) builds a cell's step graph from an
unrolled template; these helpers say which axis of a per-step value is the batch (states and
``y`` are ``[B, ...]``, a value may keep it elsewhere and is moved) and strip what a time-major
body leaves behind (``simplify_step``), so every kernel backend sees ``[B, ...]`` values.
"""

from __future__ import annotations

from typing import Any

from rnnc.frontend.scan_match import BATCH, Skip
from rnnc.ir import Graph, GraphBuilder, Node
from rnnc.ir.ops import OPS
from rnnc.ir.types import TensorType


def static(shape: tuple[Any, ...]) -> bool:
    return all(isinstance(d, int) for d in shape)


def batch_axis(t: TensorType, what: str, sized: bool = False) -> int:
    """Where a per-step value keeps the batch; its other dims must be fixed (``sized``: or one of
    them a size that follows a symbol other than the batch's)."""
    found = [k for k, d in enumerate(t.shape) if d == BATCH]
    rest = rest_dims(t, found[0]) if len(found) == 1 else ()
    symbolic = [d for d in rest if not isinstance(d, int)]
    if len(found) != 1 or (symbolic and (not sized or len(symbolic) > 1 or "?" in str(symbolic[0]))):
        raise Skip(f"{what} is {t.text()}, not a batch and fixed sizes")
    return found[0]


def rest_dims(t: TensorType, bp: int) -> tuple[Any, ...]:
    return tuple(d for k, d in enumerate(t.shape) if k != bp)


def to_batch_first(bp: int, rank: int) -> tuple[int, ...]:
    """The transpose that moves axis ``bp`` to the front, the others in order."""
    return (bp, *[k for k in range(rank) if k != bp])


def from_batch_first(bp: int, rank: int) -> tuple[int, ...]:
    """The inverse of :func:`to_batch_first`."""
    order = to_batch_first(bp, rank)
    return tuple(order.index(k) for k in range(rank))


def simplify_step(step: Graph) -> Graph:
    """The step graph without the unit axis a time-major body carries (``h`` of ``[1, B, H]``
    from ``x.split(1)``, squeezed back by ``h.view(h.size()[1:])``) and without identity reshapes:
    the same values, in the ``[B, ...]`` shapes every kernel backend renders.

    A ``[1, B, ...]`` value loses its leading axis when it is made by ``unsqueeze(axis=0)`` or by
    an elementwise op whose inputs all lost theirs or are of lower rank, and every user is such an
    op, a ``squeeze(axis=0)`` or a reshape to exactly its shape without the axis."""
    types = step.value_types()
    made = {v: n for n in step.nodes for v in n.outputs}
    users: dict[str, list[Node]] = {}
    for n in step.nodes:
        for v in n.inputs:
            users.setdefault(v, []).append(n)
    outputs = {v for _, v in step.outputs}

    def unit_led(v: str) -> bool:
        s = types[v].shape
        return len(s) >= 2 and s[0] == 1 and s[1] == BATCH

    drop = {v for v in types if unit_led(v) and v in made and v not in outputs}
    changed = True
    while changed:
        changed = False
        for v in list(drop):
            n = made[v]
            rank = types[v].rank
            ok = (n.op == "unsqueeze" and n.attr("axis") == 0) or (OPS[n.op].elementwise and all(
                x in drop or types[x].rank < rank for x in n.inputs if x))
            for u in users.get(v, []):
                if OPS[u.op].elementwise:
                    ok = ok and u.outputs[0] in drop
                elif u.op == "squeeze":
                    ok = ok and u.attr("axis") == 0
                else:
                    ok = ok and u.op == "reshape" and types[u.outputs[0]].shape == types[v].shape[1:]
            if not ok:
                drop.discard(v)
                changed = True
    if not drop and not any(n.op == "reshape" and types[n.inputs[0]] == n.types[0] for n in step.nodes):
        return step
    b = GraphBuilder(step.name)
    val: dict[str, Any] = {}
    for name, t in step.inputs:
        val[name] = b.input(name, t.shape, t.dtype)
    for name, t in step.params:
        val[name] = b.param(name, t.shape, t.dtype)
    for n in step.nodes:
        args = [val[x] if x else None for x in n.inputs]
        first = n.inputs[0] if n.inputs else ""
        if n.op == "unsqueeze" and n.outputs[0] in drop:
            val[n.outputs[0]] = args[0]
        elif n.op in ("reshape", "squeeze") and first in drop:
            val[n.outputs[0]] = args[0]
        elif n.op == "reshape" and types[first] == n.types[0]:
            val[n.outputs[0]] = args[0]
        else:
            outs = b.op(n.op, *args, names=n.outputs, **dict(n.attrs))
            for v, o in zip(n.outputs, outs if isinstance(outs, tuple) else (outs,), strict=True):
                val[v] = o
    return b.build([(name, val[v]) for name, v in step.outputs])
