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

from typing import Any

import torch
from torch import fx

from rnnc.frontend.fx_trace import Traced

#: the fewest values a reversed stack must hold to be rewritten (two are no loop)
_MIN_VALUES = 3


def _example(a: Any) -> Any:
    return a.meta.get("rnnc_ex") if isinstance(a, fx.Node) else a


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
        rank = _example(node).dim()
        axis = dim % rank if rank else 0
        if node.target is torch.cat and any(_example(v).shape[axis] != 1 for v in values):
            continue  # flipping a cat of longer pieces would reverse inside them too
        done += 1
        if not rewrite:
            continue
        with graph.inserting_before(node):
            forward = graph.call_function(node.target, (list(reversed(values)), dim))
            forward.meta["rnnc_ex"] = node.target([_example(v) for v in reversed(values)], dim)
            flipped = graph.call_function(torch.flip, (forward, [axis]))
            flipped.meta["rnnc_ex"] = torch.flip(_example(forward), [axis])
        flipped.stack_trace = forward.stack_trace = node.stack_trace
        node.replace_all_uses_with(flipped)
        graph.erase_node(node)
    return done
