"""Stacks of per-step values in the order a loop made them.

A backward pass written by hand runs the loop over ``torch.flip``'d inputs and reverses its Python
list before stacking (Time-aware LSTM's ``if reverse: outputs.reverse()``, ``outputs[::-1]``,
``reversed(outputs)``), so the traced ``stack`` reads the last step's value first.  The loop pass
(``scan.py``) reads a loop's collected output as a stack in step order, and a stack that starts
with a later step's value looked like a read across steps: the loop stayed unrolled at the
traced length.  ``stack(reversed(v), d)`` is exactly ``flip(stack(v, d), [d])`` (and so is a ``cat``
of pieces one long along ``d``), and in that form the loop rolls and the flip follows it.  A loop
that steps backwards (``for t in reversed(range(T))`` over ``x[t]``) makes the same reversed list
in time order, which the loop pass reads as it is: the rewrite is the frontend's second try where
a loop stayed unrolled (``api._build``).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx

from rnnc.frontend.fx_trace import Traced, call_shape, example_of

#: the fewest values a reversed stack must hold to be rewritten (two are no loop)
_MIN_VALUES = 3



def _dim(node: fx.Node) -> int | None:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    return dim if isinstance(dim, int) and not isinstance(dim, bool) else None


def unreverse_stacks(gm: Traced, rewrite: bool = True) -> int:
    """Rewrite each ``stack``/``cat`` of values made in strictly descending graph order into the
    flip of the stack in ascending order (``rewrite`` False: only count them); returns how many."""
    graph = gm.graph
    order = {n: k for k, n in enumerate(graph.nodes)}
    done = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (torch.stack, torch.cat) or not node.args:
            continue
        values, dim = node.args[0], _dim(node)
        if not isinstance(values, (list, tuple)) or len(values) < _MIN_VALUES or dim is None or not all(
                isinstance(v, fx.Node) for v in values):
            continue
        at = [order[v] for v in values]
        if any(a <= b for a, b in zip(at, at[1:], strict=False)):
            continue
        rank = example_of(node).dim()
        axis = dim % rank if rank else 0
        if node.target is torch.cat and any(example_of(v).shape[axis] != 1 for v in values):
            continue  # flipping a cat of longer pieces would reverse inside them too
        done += 1
        if not rewrite:
            continue
        with graph.inserting_before(node):
            forward = graph.call_function(node.target, (list(reversed(values)), dim))
            forward.meta["rnnc_ex"] = node.target([example_of(v) for v in reversed(values)], dim)
            flipped = graph.call_function(torch.flip, (forward, [axis]))
            flipped.meta["rnnc_ex"] = torch.flip(example_of(forward), [axis])
        flipped.stack_trace = forward.stack_trace = node.stack_trace
        node.replace_all_uses_with(flipped)
        graph.erase_node(node)
    return done


def _signature(node: fx.Node) -> Any:
    """A call's kind: what it calls and its arguments with nodes blanked (``index_late_reads``)."""
    shape = call_shape(node)
    try:
        hash(shape)
    except TypeError:
        return None
    return shape


def index_late_reads(gm: Traced) -> int:
    """Per-step values a later loop reads one by one (a Viterbi backtrack walking its history
    ``for hist in reversed(history): best = hist.gather(1, best)``) are read from their stack:
    ``S = stack(values)`` after the last of them and ``S[k]`` for each read (flipped, and read
    from its start, where the reads walk from the last value).  The same values, now collected
    by the loop that makes them -- which then rolls -- and read by position by the loop that
    walks them, as from an input.  Returns how many families of values were stacked."""
    graph = gm.graph
    order = {n: k for k, n in enumerate(graph.nodes)}
    groups: dict[Any, list[fx.Node]] = {}
    for node in graph.nodes:
        if node.op in ("call_function", "call_method"):
            sig = _signature(node)
            if sig is not None:
                groups.setdefault(sig, []).append(node)
    done = 0
    for readers in groups.values():
        if len(readers) < _MIN_VALUES:
            continue
        first_read = min(order[r] for r in readers)
        for pos, arg in enumerate(readers[0].args):
            if not isinstance(arg, fx.Node):
                continue
            values = [r.args[pos] for r in readers]
            if len(set(values)) != len(values) or not all(isinstance(v, fx.Node) for v in values):
                continue
            values.sort(key=order.__getitem__)
            kinds = {(_signature(v), tuple(example_of(v).shape), example_of(v).dtype) if isinstance(
                example_of(v), torch.Tensor) else None for v in values}
            if len(kinds) != 1 or None in kinds or order[values[-1]] > first_read:
                continue  # one kind of value, every one made before the first read
            walked = [values.index(r.args[pos]) for r in sorted(readers, key=order.__getitem__)]
            backwards = all(a > b for a, b in zip(walked, walked[1:], strict=False))
            with graph.inserting_after(values[-1]):
                stacked = graph.call_function(torch.stack, (list(values), 0))
            stacked.meta["rnnc_ex"] = torch.stack([example_of(v) for v in values], 0)
            if backwards:  # (walked from the last: read forwards from the flipped stack)
                with graph.inserting_after(stacked):
                    stacked = graph.call_function(torch.flip, (stacked, [0]))
                stacked.meta["rnnc_ex"] = torch.flip(stacked.args[0].meta["rnnc_ex"], [0])
            stacked.stack_trace = values[-1].stack_trace
            for r in readers:
                v = r.args[pos]
                k = len(values) - 1 - values.index(v) if backwards else values.index(v)
                with graph.inserting_before(r):
                    read = graph.call_function(operator.getitem, (stacked, k))
                read.meta["rnnc_ex"] = example_of(stacked)[k]
                read.stack_trace = r.stack_trace
                r.replace_input_with(v, read)
            done += 1
            break
    return done
