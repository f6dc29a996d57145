"""Writes into a preallocated tensor, one step at a time, become a ``stack`` of the written values.

``outputs = torch.zeros(T, B, V); for t in range(1, T): ...; outputs[t] = out`` (the seq2seq
tutorials) and ``y = torch.zeros_like(x); for t in ...: y[:, t] = h`` (Griffin's ``rnn_scan``)
trace to a chain of functional writes (``fx_trace.assign``), one per step.  A chain that writes
consecutive positions of one axis, one position per step, is exactly

    cat([buffer[:first], stack(values), buffer[last + 1:]], axis)

and that form is what the rest of the frontend reads as a loop's collected output: the cell-call
merge (``loops.py``) and loop rolling (``scan.py``) then keep T symbolic.  Reads of the buffer
inside the loop at one step's position (``outputs[t - 1]``) read the value written there, or the
buffer's own value where nothing was written yet.  A chain with any other use in the middle is cut
there (the part before it is rewritten, the part after starts from its result); writes that do
not fit (slices of a step, masks, strided or repeated positions) stay functional writes, which are
exact at the traced length.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from rnnc.frontend.fx_trace import Traced, assign

#: a loop that stops this many positions or fewer before the buffer's end is taken to run to
#: ``end - k`` (``range(T - 1)``); one that stops further from it, to run a fixed count
_NEAR_END = 1


def step_position(idx: Any) -> tuple[int, int, bool] | None:
    """``(axis, k, keeps_axis)`` when ``idx`` indexes one position of one axis and all of every
    other: ``x[k]``, ``x[:, k]``, ``x[:, k:k + 1]`` (keeps the axis), else None."""
    items = idx if isinstance(idx, tuple) else (idx,)
    full = slice(None)
    picked = [(i, it) for i, it in enumerate(items) if not (isinstance(it, slice) and it == full)]
    if len(picked) != 1:
        return None
    axis, it = picked[0]
    if isinstance(it, int) and not isinstance(it, bool):
        return axis, int(it), False
    if (isinstance(it, slice) and it.step in (None, 1) and isinstance(it.start, int)
            and isinstance(it.stop, int) and it.stop == it.start + 1 and it.start >= 0):
        return axis, it.start, True
    return None


def _example(a: Any) -> Any:
    return a.meta.get("rnnc_ex") if isinstance(a, fx.Node) else a


@dataclass
class _Chain:
    base: fx.Node
    axis: int
    keep: bool
    size: int  # the buffer's length along the axis, at the example
    writes: list[tuple[fx.Node, int, Any]] = field(default_factory=list)  # (assign node, position, value)

    def fits(self, pos: int) -> bool:
        """Whether writing ``pos`` next keeps the positions consecutive, one direction."""
        if pos in {p for _, p, _ in self.writes}:
            return False
        if len(self.writes) < 2:
            return not self.writes or abs(pos - self.writes[-1][1]) == 1
        step = self.writes[-1][1] - self.writes[-2][1]
        return pos - self.writes[-1][1] == step


def _write(node: fx.Node) -> tuple[int, int, bool] | None:
    """(axis, position, keeps_axis) of an ``assign`` node writing one step of a tensor value."""
    if node.op != "call_function" or node.target is not assign:
        return None
    buf, idx, value = node.args
    ex, v = _example(buf), _example(value)
    at = step_position(idx)
    if at is None or not isinstance(ex, torch.Tensor) or not isinstance(v, torch.Tensor):
        return None
    axis, pos, keep = at
    if axis >= ex.dim():
        return None
    n = ex.shape[axis]
    pos = pos + n if pos < 0 else pos
    if not 0 <= pos < n:
        return None
    slot = list(ex.shape)
    if keep:
        slot[axis] = 1
    else:
        del slot[axis]
    if tuple(v.shape) != tuple(slot):  # broadcast writes stay functional writes
        return None
    return axis, pos, keep


def _read_position(node: fx.Node, chain: _Chain) -> int | None:
    """The position a getitem of the buffer reads, when it reads one step in the chain's form."""
    if node.op != "call_function" or node.target is not operator.getitem:
        return None
    at = step_position(node.args[1])
    if at is None or at[0] != chain.axis or at[2] != chain.keep:
        return None
    pos = at[1] + chain.size if at[1] < 0 else at[1]
    return pos if 0 <= pos < chain.size else None


def _chains(graph: fx.Graph) -> list[_Chain]:
    """Maximal chains of one-step writes whose middle values only the next write and one-step
    reads use."""
    chains: list[_Chain] = []
    of: dict[fx.Node, _Chain] = {}
    for node in graph.nodes:
        at = _write(node)
        if at is None:
            continue
        axis, pos, keep = at
        prev = node.args[0]
        chain = of.get(prev)
        if chain is not None and (chain.axis, chain.keep) == (axis, keep) and chain.fits(pos) and all(
                u is node or _read_position(u, chain) is not None for u in prev.users):
            chain.writes.append((node, pos, node.args[2]))
        else:
            size = _example(prev).shape[axis]
            chain = _Chain(prev, axis, keep, size, [(node, pos, node.args[2])])
            chains.append(chain)
        of[node] = chain
    return [c for c in chains if len(c.writes) >= 2]


def _cast(graph: fx.Graph, value: fx.Node, dtype: torch.dtype) -> fx.Node:
    """The write casts to the buffer's dtype; so does its stacked form (cast where the value is
    made, since a read in the middle of the loop may use it)."""
    if _example(value).dtype == dtype:
        return value
    with graph.inserting_after(value):
        node = graph.call_method("to", (value, dtype))
    node.meta["rnnc_ex"] = _example(value).to(dtype)
    return node


def _call(graph: fx.Graph, fn: Any, args: tuple[Any, ...]) -> fx.Node:
    node = graph.call_function(fn, args)
    node.meta["rnnc_ex"] = fn(*fx.node.map_arg(args, _example))
    return node


def _rewrite(graph: fx.Graph, chain: _Chain) -> fx.Node:
    """Replace the chain by its cat/stack form; returns the node that stands for its result."""
    base, axis = chain.base, chain.axis
    dtype = _example(base).dtype
    last = chain.writes[-1][0]
    stack_fn = torch.cat if chain.keep else torch.stack
    values = {pos: _cast(graph, v, dtype) for _, pos, v in chain.writes}
    with graph.inserting_before(last):
        lo, hi = min(values), max(values)
        pieces = []
        lead = (slice(None),) * axis
        if lo > 0:
            pieces.append(_call(graph, operator.getitem, (base, (*lead, slice(None, lo)))))
        pieces.append(_call(graph, stack_fn, ([values[p] for p in range(lo, hi + 1)], axis)))
        rest = chain.size - hi - 1
        if rest:
            start = -rest if rest <= _NEAR_END else hi + 1
            pieces.append(_call(graph, operator.getitem, (base, (*lead, slice(start, None)))))
        new = pieces[0] if len(pieces) == 1 else _call(graph, torch.cat, (pieces, axis))
    new.stack_trace = last.stack_trace
    # reads in the middle of the chain: the value written there, or the buffer's where unwritten
    written: set[int] = set()
    for node, pos, _ in chain.writes[:-1]:
        written.add(pos)
        for user in list(node.users):
            at = _read_position(user, chain) if user is not node else None
            if at is None:
                continue
            if at in written:
                user.replace_all_uses_with(values[at])
                graph.erase_node(user)
            else:
                user.replace_input_with(node, base)
    last.replace_all_uses_with(new)
    for node, _, _ in reversed(chain.writes):
        graph.erase_node(node)
    return new


def gather_writes(gm: Traced) -> int:
    """Rewrite every chain of one-step writes in ``gm`` (see the module docstring); returns how many."""
    chains = _chains(gm.graph)
    done: dict[fx.Node, fx.Node] = {}  # a rewritten chain's last write -> its result
    for chain in chains:
        chain.base = done.get(chain.base, chain.base)  # a chain cut by a use starts from its result
        done[chain.writes[-1][0]] = _rewrite(gm.graph, chain)
    return len(chains)
