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

from rnnc.frontend.fx_trace import Traced, add_call, assign, example_of

#: a loop that stops this many positions or fewer before the buffer's end is taken to run to
#: ``end - k`` (``range(T - 1)``); one that stops further from it, to run a fixed count
_NEAR_END = 1


def _items(idx: Any) -> tuple[Any, ...] | None:
    """The index as a tuple of constant ints and int-bounded slices, else None."""
    items = idx if isinstance(idx, tuple) else (idx,)
    for it in items:
        if isinstance(it, slice):
            if not all(b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in (it.start, it.stop,
                                                                                            it.step)):
                return None
        elif not isinstance(it, int) or isinstance(it, bool):
            return None
    return items


def _position(it: Any) -> tuple[int, bool] | None:
    """(k, keeps_axis) when an index item picks one position: ``k`` or ``k:k + 1``."""
    if isinstance(it, int):
        return it, False
    if it.step in (None, 1) and isinstance(it.start, int) and it.stop == it.start + 1 and it.start >= 0:
        return it.start, True
    return None


def _key(items: tuple[Any, ...], axis: int) -> tuple[Any, ...]:
    """The items other than ``axis``, hashable (slices are not, before Python 3.12)."""
    return tuple((it.start, it.stop, it.step) if isinstance(it, slice) else it
                 for k, it in enumerate(items) if k != axis)



@dataclass
class _Chain:
    """Writes to consecutive positions of one axis (item ``axis`` of the index), every other
    index item the same: ``h[t]``, ``y[:, t]``, ``h[t, :, d, :]`` for a fixed ``d``."""

    base: fx.Node
    items: tuple[Any, ...]  # the first write's index
    axis: int
    keep: bool
    size: int  # the buffer's length along the axis, at the example
    writes: list[tuple[fx.Node, int, Any]] = field(default_factory=list)  # (assign node, position, value)

    def position(self, items: tuple[Any, ...] | None) -> int | None:
        """The position ``items`` picks when it is this chain's form, else None."""
        if items is None or len(items) != len(self.items) or _key(items, self.axis) != _key(self.items, self.axis):
            return None
        at = _position(items[self.axis])
        if at is None or at[1] != self.keep:
            return None
        pos = at[0] + self.size if at[0] < 0 else at[0]
        return pos if 0 <= pos < self.size else None

    def fits(self, pos: int) -> bool:
        """Whether writing ``pos`` next keeps the positions consecutive, one direction."""
        if pos in {p for _, p, _ in self.writes}:
            return False
        if len(self.writes) < 2:
            return not self.writes or abs(pos - self.writes[-1][1]) == 1
        step = self.writes[-1][1] - self.writes[-2][1]
        return pos - self.writes[-1][1] == step


def _write(node: fx.Node) -> tuple[Any, ...] | None:
    """The index of an ``assign`` node that writes a tensor of exactly the indexed shape, leading
    ones aside (torch drops them: sru's ``h[t, :, d, :] = h_t`` of a ``[1, B, H]`` step)."""
    if node.op != "call_function" or node.target is not assign:
        return None
    buf, idx, value = node.args
    ex, v = example_of(buf), example_of(value)
    items = _items(idx)
    if items is None or not isinstance(ex, torch.Tensor) or not isinstance(v, torch.Tensor) or len(items) > ex.dim():
        return None
    try:
        slot = ex[items].shape
    except (IndexError, RuntimeError):
        return None
    lead = v.dim() - len(slot)
    exact = lead >= 0 and tuple(v.shape[lead:]) == tuple(slot) and all(d == 1 for d in v.shape[:lead])
    return items if exact else None  # broadcast writes stay functional writes


def _read_position(node: fx.Node, chain: _Chain) -> int | None:
    """The position a getitem of the buffer reads, when it reads one step in the chain's form."""
    if node.op != "call_function" or node.target is not operator.getitem:
        return None
    return chain.position(_items(node.args[1]))


def _start(prev: fx.Node, before: tuple[Any, ...] | None, items: tuple[Any, ...]) -> _Chain | None:
    """A chain from a write of index ``items`` and the write before it (``prev``, of index
    ``before``), when they differ in one index item, each picking one position there, one apart."""
    if before is None or len(before) != len(items):
        return None
    differ = [k for k, (a, b) in enumerate(zip(before, items, strict=True)) if _key((a,), -1) != _key((b,), -1)]
    if len(differ) != 1:
        return None
    a = differ[0]
    p, q = _position(before[a]), _position(items[a])
    if p is None or q is None or p[1] != q[1]:
        return None
    size = example_of(prev.args[0])[tuple(it if k < a else slice(None) for k, it in enumerate(items[:a]))].shape
    ints_before = sum(1 for it in items[:a] if isinstance(it, int))
    chain = _Chain(prev.args[0], before, a, p[1], int(size[a - ints_before]))
    first = chain.position(before)
    if first is None:
        return None
    chain.writes.append((prev, first, prev.args[2]))
    return chain


def _chains(graph: fx.Graph) -> list[_Chain]:
    """Maximal chains of one-step writes whose middle values only the next write and one-step
    reads use."""
    chains: list[_Chain] = []
    of: dict[fx.Node, _Chain] = {}
    index: dict[fx.Node, tuple[Any, ...]] = {}  # each one-step write's index
    for node in graph.nodes:
        items = _write(node)
        if items is None:
            continue
        index[node] = items
        prev = node.args[0]
        chain = of.get(prev)
        fresh = chain is None or chain.writes[-1][0] is not prev  # (a chain whose last write is prev)
        if fresh:
            chain = _start(prev, index.get(prev), items)
        pos = chain.position(items) if chain is not None else None
        if chain is None or pos is None or not chain.fits(pos) or not all(
                u is node or _read_position(u, chain) is not None for u in prev.users):
            continue
        if fresh:
            chains.append(chain)
        chain.writes.append((node, pos, node.args[2]))
        of[node] = chain
    return [c for c in chains if len(c.writes) >= 2]


def _cast(graph: fx.Graph, value: fx.Node, dtype: torch.dtype) -> fx.Node:
    """The write casts to the buffer's dtype; so does its stacked form (cast where the value is
    made, since a read in the middle of the loop may use it)."""
    if example_of(value).dtype == dtype:
        return value
    with graph.inserting_after(value):
        node = graph.call_method("to", (value, dtype))
    node.meta["rnnc_ex"] = example_of(value).to(dtype)
    return node


def _slotted(graph: fx.Graph, value: fx.Node, rank: int) -> fx.Node:
    """``value`` without the leading ones the write drops (``_write``), at the slot's rank."""
    lead = example_of(value).dim() - rank
    if lead <= 0:
        return value
    with graph.inserting_after(value):
        return add_call(graph, operator.getitem, (value, (0,) * lead))



def _rewrite(graph: fx.Graph, chain: _Chain) -> fx.Node:
    """Replace the chain by its cat/stack form; returns the node that stands for its result."""
    base, a = chain.base, chain.axis
    dtype = example_of(base).dtype
    last = chain.writes[-1][0]
    stack_fn = torch.cat if chain.keep else torch.stack
    rank = example_of(base)[chain.items].dim()
    values = {pos: _slotted(graph, _cast(graph, v, dtype), rank) for _, pos, v in chain.writes}
    # the written part: the buffer indexed by every item but the stepping one (all of ``base``
    # for ``h[t]``, ``h[:, :, d, :]`` for ``h[t, :, d, :]``), its axis ``a`` counted there
    sub_idx = tuple(slice(None) if k == a else it for k, it in enumerate(chain.items))
    whole = all(isinstance(it, slice) and it == slice(None) for it in sub_idx)
    axis = a - sum(1 for it in chain.items[:a] if isinstance(it, int))
    with graph.inserting_before(last):
        sub = base if whole else add_call(graph, operator.getitem, (base, sub_idx))
        lo, hi = min(values), max(values)
        pieces = []
        lead = (slice(None),) * axis
        if lo > 0:
            pieces.append(add_call(graph, operator.getitem, (sub, (*lead, slice(None, lo)))))
        pieces.append(add_call(graph, stack_fn, ([values[p] for p in range(lo, hi + 1)], axis)))
        rest = chain.size - hi - 1
        if rest:
            start = -rest if rest <= _NEAR_END else hi + 1
            pieces.append(add_call(graph, operator.getitem, (sub, (*lead, slice(start, None)))))
        new = pieces[0] if len(pieces) == 1 else add_call(graph, torch.cat, (pieces, axis))
        if not whole:  # one box write of the rest (``handlers_write.py``)
            new = add_call(graph, assign, (base, sub_idx, new))
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
