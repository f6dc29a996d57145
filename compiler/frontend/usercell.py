"""User-written cells: ``Recurrent(cell, state_shapes)`` runs any step module over time.

A cell is an ``nn.Module`` whose ``forward(x_t, state) -> (y_t, new_state)`` works on one time
step (``x_t [B, I]``; ``state`` a tensor ``[B, *shape]``, or a tuple of them when the cell has
several states).  ``Recurrent`` is what users put in their models: in eager it loops over time,
and the frontend traces the cell's step once with torch.fx into a ``Cell`` step graph, so the
whole loop becomes one ``rnn`` node whose T is symbolic.  Whether the state update is linear
(parallel-scan legal) is the user's statement, ``recurrence="linear"``; the default is the safe
``"nonlinear"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rnnc.errors import UserInputError
from rnnc.ir import Cell, GraphBuilder, StateSpec
from rnnc.ir.types import dtype_of_torch


class Recurrent(nn.Module):
    """Run ``cell`` over the time axis of ``x [B, T, I]`` (``batch_first``) or ``[T, B, I]``.

    ``state_shapes`` gives each state's per-sample shape (e.g. ``[(64,), (64,)]`` for h and c);
    ``state_names`` names them in the IR (default ``s0, s1, ...``).  ``forward(x, state=None)``
    returns ``(y, state)`` with ``y`` stacked over time and the final state.
    """

    def __init__(self, cell: nn.Module, state_shapes: Sequence[Sequence[int]], *, input_size: int,
                 recurrence: str = "nonlinear", batch_first: bool = True,
                 state_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if recurrence not in ("nonlinear", "linear"):
            raise UserInputError(f"recurrence must be 'nonlinear' or 'linear', not {recurrence!r}")
        self.cell = cell
        self.state_shapes = [tuple(int(d) for d in s) for s in state_shapes]
        self.state_names = list(state_names or [f"s{i}" for i in range(len(self.state_shapes))])
        if len(self.state_names) != len(self.state_shapes) or not self.state_shapes:
            raise UserInputError("Recurrent needs at least one state and one name per state shape")
        self.input_size = input_size
        self.recurrence = recurrence
        self.batch_first = batch_first

    def _pack(self, states: Sequence[torch.Tensor]) -> Any:
        return states[0] if len(states) == 1 else tuple(states)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        xs = x if self.batch_first else x.transpose(0, 1)
        if state is None:
            state = self._pack([xs.new_zeros((xs.shape[0], *s)) for s in self.state_shapes])
        ys = []
        for t in range(xs.shape[1]):
            y, state = self.cell(xs[:, t], state)
            ys.append(y)
        y = torch.stack(ys, dim=1)
        return (y if self.batch_first else y.transpose(0, 1)), state


def build_user_cell(rec: Recurrent, qual: str, dtype: torch.dtype = torch.float32, *, cell_qual: str | None = None
                    ) -> tuple[Cell, dict[str, torch.Tensor]]:
    """Trace ``rec.cell``'s step with fx into a Cell; returns the cell and its weights.
    ``cell_qual``: the cell module's qualified name (default ``<qual>.cell``), for messages."""
    from rnnc.frontend.fx_convert import convert_graph
    from rnnc.frontend.fx_trace import trace_module
    from rnnc.frontend.values import TV, Ctx

    name = type(rec.cell).__name__
    where = cell_qual or f"{qual}.cell"
    dt = dtype_of_torch(dtype)
    b = GraphBuilder(f"{name}_step")
    ex_b = 2
    x_ex = torch.zeros(ex_b, rec.input_size, dtype=dtype)
    s_ex = [torch.zeros(ex_b, *s, dtype=dtype) for s in rec.state_shapes]
    x = TV(b.input("x", ("B", rec.input_size), dt), x_ex)
    states = [TV(b.input(n, ("B", *s), dt), e) for n, s, e in zip(rec.state_names, rec.state_shapes, s_ex,
                                                                    strict=True)]
    gm = trace_module(rec.cell, [x_ex, rec._pack(s_ex)])
    ctx = Ctx(b)
    out = convert_graph(ctx, gm, [x, rec._pack(states)], root_name=where)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise UserInputError(f"cell {where} ({name}) must return (y_t, new_state)")
    y, new = out
    new_states = list(new) if isinstance(new, (tuple, list)) else [new]
    if len(new_states) != len(states):
        raise UserInputError(f"cell {where} ({name}) returns {len(new_states)} states, "
                             f"Recurrent declares {len(states)}")
    for n, s in zip(rec.state_names, new_states, strict=True):
        ctx.materialize(s)
        if not isinstance(s, TV):
            raise UserInputError(f"cell {where} ({name}) returns a non-tensor for state {n}")
    step = b.build([("y", y.value), *((n, s.value) for n, s in zip(rec.state_names, new_states, strict=True))])
    y_size = y.shape[-1]
    if y.rank != 2 or not isinstance(y_size, int):
        raise UserInputError(f"cell {where} ({name}) returns y_t of shape {list(y.shape)}; expected [B, size]")
    cell = Cell(f"user:{name}", rec.recurrence, rec.input_size,
                rec.state_shapes[0][-1] if rec.state_shapes[0] else 1, y_size,
                tuple(StateSpec(n, s, dt) for n, s in zip(rec.state_names, rec.state_shapes, strict=True)), step)
    return cell, dict(ctx.weights)


def convert_recurrent(ctx: Any, mod: Recurrent, qual: str, x: Any, state: Any = None) -> Any:
    """A ``Recurrent`` layer: one rnn node over the user's cell."""
    from rnnc.frontend.recurrent import emit_rnn

    cell, weights = build_user_cell(mod, qual, x.ex.dtype)
    states = list(state) if isinstance(state, (tuple, list)) else ([state] if state is not None else None)
    init = [ctx.emit("unsqueeze", s, axis=0) if s is not None and not s.zeros else None
            for s in states] if states else None
    y, finals = emit_rnn(ctx, x, [cell], [[weights]], prefix=f"{qual}.", batch_first=mod.batch_first, init=init)
    outs = [ctx.emit("select", f, axis=0, index=0) for f in finals]
    return y, mod._pack(outs)
