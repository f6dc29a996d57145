"""Merge a Python loop of cell calls, unrolled by tracing, back into one recurrent layer.

``for t in range(x.size(1)): h, c = self.cell(x[:, t], (h, c))`` traces (with concrete sizes) to
T calls of the cell.  If the calls form a chain -- call k reads time step k of one tensor X
(``x[:, k]``, ``x[k]``, ``x.select(1, k)``, ``x.unbind(1)[k]``), takes the previous call's state,
and the per-step outputs are used only by the next call and by one ``torch.stack`` of all of them
-- the chain is replaced by one ``cell_scan`` node that converts to an ``rnn`` node over X, whose
T then stays symbolic.  Chains that do not fit are left alone: each call converts to a one-step
rnn node, which is still correct but fixes T to the example's length.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx, nn

from rnnc.frontend.fx_trace import Traced
from rnnc.ir import symdims


def cell_scan(cell: str, x: Any, axis: int, state: Any, stack_dim: int | None, steps: int) -> Any:
    """Marker target for the merged loop (never executed; converted by ``convert_cell_scan``)."""
    raise RuntimeError("cell_scan is an fx marker node of rnnc, it does not run")


def _time_index(node: Any) -> tuple[fx.Node, int, int] | None:
    """(X, axis, k) when ``node`` reads time step k of X along ``axis``."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_function" and node.target is operator.getitem:
        base, idx = node.args
        if isinstance(base, fx.Node) and base.target in ("unbind", torch.unbind) and isinstance(idx, int):
            dim = base.args[1] if len(base.args) > 1 else base.kwargs.get("dim", 0)
            return base.args[0], dim, idx
        items = idx if isinstance(idx, tuple) else (idx,)
        ints = [i for i, it in enumerate(items) if isinstance(it, int)]
        rest_ok = all(it == slice(None) for i, it in enumerate(items) if i not in ints)
        if len(ints) == 1 and rest_ok and isinstance(base, fx.Node):
            return base, ints[0], items[ints[0]]
    if node.target in ("select", torch.select) and len(node.args) == 3:
        return node.args[0], node.args[1], node.args[2]
    return None


def _state_of(call: fx.Node) -> Any:
    return call.args[1] if len(call.args) > 1 else call.kwargs.get("hx")


def _follows(state: Any, prev: fx.Node, lstm: bool, user: bool = False) -> bool:
    if user:  # y, state = cell(x_t, state): the state is the call's second result
        return isinstance(state, fx.Node) and state.target is operator.getitem and state.args == (prev, 1)
    if not lstm:
        return state is prev
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        return False
    return all(isinstance(s, fx.Node) and s.target is operator.getitem and s.args == (prev, i)
               for i, s in enumerate(state))


def _merge_one(gm: Traced, calls: list[fx.Node], lstm: bool, user: bool = False) -> bool:
    """``lstm``: calls return a tuple whose first item is the step's output (LSTMCell's (h, c),
    a user cell's (y, state)); ``user``: the state is the call's second result."""
    steps = [_time_index(c.args[0]) for c in calls]
    if any(s is None for s in steps):
        return False
    xs = {id(s[0]) for s in steps}
    axes = {s[1] for s in steps}
    if len(xs) != 1 or len(axes) != 1 or [s[2] for s in steps] != list(range(len(calls))):
        return False
    x, axis = steps[0][0], steps[0][1]
    ex = x.meta.get("rnnc_ex") if isinstance(x, fx.Node) else None
    if isinstance(ex, torch.Tensor) and (ex.dim() <= axis or ex.shape[axis] < len(calls)):
        return False
    if axis not in (0, 1) or any(not _follows(_state_of(c), p, lstm, user)
                                 for p, c in zip(calls, calls[1:], strict=False)):
        return False
    outs = [next((u for u in c.users if u.target is operator.getitem and u.args[1] == 0), None) if lstm else c
            for c in calls]
    stack = None
    for k, call in enumerate(calls[:-1]):
        users = set(call.users) if not lstm else {u for g in call.users for u in g.users} | set(call.users)
        allowed = {calls[k + 1], *(g for g in call.users if lstm)}
        extra = users - allowed
        if len(extra) > 1:
            return False
        if extra:
            (s,) = extra
            if stack is None:
                stack = s
            if s is not stack:
                return False
    if stack is not None and not (stack.target in (torch.stack, "stack") and list(stack.args[0]) == outs):
        return False
    if stack is None and outs[-1] is not None and any(
            u.target in (torch.stack, "stack") for u in outs[-1].users):
        return False
    dim = None
    if stack is not None:
        dim = stack.args[1] if len(stack.args) > 1 else stack.kwargs.get("dim", 0)
    with gm.graph.inserting_after(calls[-1]):
        scan = gm.graph.call_function(cell_scan, (str(calls[0].target), x, axis, _state_of(calls[0]), dim, len(calls)))
    with gm.graph.inserting_after(scan):
        ys = gm.graph.call_function(operator.getitem, (scan, 0))
    with gm.graph.inserting_after(ys):
        final = gm.graph.call_function(operator.getitem, (scan, 1))
    if stack is not None:
        ys.meta["rnnc_ex"] = stack.meta.get("rnnc_ex")  # (what a merge of the next layer's loop reads)
        stack.replace_all_uses_with(ys)
        gm.graph.erase_node(stack)
    calls[-1].replace_all_uses_with(final, delete_user_cb=lambda user: user is not scan)
    _drop_dead(gm.graph)
    return True


def _drop_dead(graph: fx.Graph) -> None:
    """Erase nodes nothing uses (the merged chain); every node fx records here is pure."""
    for node in reversed(list(graph.nodes)):
        if node.op not in ("placeholder", "output") and not node.users:
            graph.erase_node(node)


def merge_cell_loops(gm: Traced, step_cells: Any = ()) -> int:
    """Rewrite every mergeable chain of cell calls in place (torch cells, and the user modules
    whose ids are in ``step_cells``); returns how many merged."""
    by_target: dict[str, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(str(node.target))
        if isinstance(mod, nn.RNNCellBase) or id(mod) in step_cells:
            by_target.setdefault(str(node.target), []).append(node)
    merged = 0
    for target, calls in by_target.items():
        if len(calls) >= 2:
            mod = gm.get_submodule(target)
            user = not isinstance(mod, nn.RNNCellBase)
            merged += _merge_one(gm, calls, user or isinstance(mod, nn.LSTMCell), user)
    return merged


def convert_cell_scan(ctx: Any, mod: nn.RNNCellBase, qual: str, x: Any, axis: int, state: Any,
                      stack_dim: int | None, steps: int) -> tuple[Any, Any]:
    """The merged loop as one rnn node; returns (stacked outputs or None, final state) -- for a
    user cell, the final state is what its last call returned: (y_T, state_T).  A loop over the
    first ``steps`` positions of a longer X (a teacher-forced decoder reading T of the T + 1
    frames of ``cat([go, targets])``, a loop of ``range(T - 1)``) runs over that slice of X."""
    from rnnc.frontend.recurrent import cell_of, emit_rnn

    size = int(x.ex.shape[axis])
    if size != steps:  # a guess where it stops short of the end: retried without (``ctx.retimed``)
        stop = symdims.prefix_stop(x.shape[axis], steps, size) if ctx.retime_loops else steps
        ctx.retimed += stop < 0
        x = ctx.emit("slice", x, axis=axis, start=0, stop=stop, step=1)
    if not isinstance(mod, nn.RNNCellBase):
        return _user_cell_scan(ctx, mod, qual, x, axis, state, stack_dim)
    cell, weights = cell_of(mod)
    states = list(state) if isinstance(state, (tuple, list)) else ([state] if state is not None else [])
    init = [ctx.emit("unsqueeze", s, axis=0) if s is not None and not s.zeros else None for s in states] or None
    y, finals = emit_rnn(ctx, x, [cell], [[weights]], prefix=f"{qual}.", batch_first=axis == 1, init=init)
    outs = [ctx.emit("select", f, axis=0, index=0) for f in finals]
    final = tuple(outs) if isinstance(mod, nn.LSTMCell) else outs[0]
    if stack_dim is None:
        return None, final
    src = ["B", "T", "H"] if axis == 1 else ["T", "B", "H"]
    want = ["B", "H"]
    want.insert(stack_dim % 3, "T")
    perm = tuple(src.index(d) for d in want)
    return (y if perm == (0, 1, 2) else ctx.emit("transpose", y, perm=perm)), final


def _user_cell_scan(ctx: Any, mod: nn.Module, qual: str, x: Any, axis: int, state: Any,
                    stack_dim: int | None) -> tuple[Any, Any]:
    from rnnc.frontend.recurrent import emit_rnn
    from rnnc.frontend.usercell import Recurrent, build_user_cell

    states = list(state) if isinstance(state, (tuple, list)) else [state]
    shapes = [tuple(int(d) for d in s.ex.shape[1:]) for s in states]
    rec = Recurrent(mod, shapes, input_size=int(x.ex.shape[-1]), batch_first=axis == 1)
    cell, weights = build_user_cell(rec, qual, x.ex.dtype, cell_qual=qual)
    init = [ctx.emit("unsqueeze", s, axis=0) if not s.zeros else None for s in states]
    y, finals = emit_rnn(ctx, x, [cell], [[weights]], prefix=f"{qual}.", batch_first=axis == 1, init=init)
    outs = [ctx.emit("select", f, axis=0, index=0) for f in finals]
    final_state = tuple(outs) if isinstance(state, (tuple, list)) else outs[0]
    y_last = ctx.emit("select", y, axis=axis, index=-1)
    ys = None
    if stack_dim is not None:
        src = ["B", "T", "H"] if axis == 1 else ["T", "B", "H"]
        want = ["B", "H"]
        want.insert(stack_dim % 3, "T")
        perm = tuple(src.index(d) for d in want)
        ys = y if perm == (0, 1, 2) else ctx.emit("transpose", y, perm=perm)
    return ys, (y_last, final_state)
