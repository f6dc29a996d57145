"""Run one direction of a matrix-state layer chunkwise, from its IR and its verified chunk form.

Why: the step graph of a GLA/RetNet/HGRN2/DeltaNet/Mamba-2 cell does T dependent rank-one
updates; its chunk form (``rnnc.passes.chunk``, checked against the step graph) splits it into

1. ``pre``: the state-free nodes that compute q, k, v, g, β (and what the readout needs from x),
   evaluated once on all ``T*B`` rows;
2. the recurrence, chunkwise: ``core(form, operands, S0, chunk_size) -> (o, S_T)`` -- torch's
   ``rnnc.kernels.chunk.chunkwise`` by default, or a backend's compiled kernel of the same
   contract;
3. ``post``: the nodes that turn o into y, again on all rows at once.

Only step 2 is sequential, and only over T/C chunks.  Nothing here knows a cell by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rnnc.ir.graph import Cell
from rnnc.passes.chunk import ChunkForm

Core = Callable[..., tuple[Any, Any]]


def operands(cf: ChunkForm, values: Mapping[str, Any], steps: int, batch: int, s_shape: tuple[int, ...]) -> Any:
    """The family's operands ``[B, T, NH, ...]`` from the pre-nodes' row values (broadcast where
    the cell shares them: RetNet's decay is a weight, Mamba-2's B and C are shared by heads)."""
    from rnnc.kernels.linattn import Projected

    nh, dk, dv = s_shape

    def get(op: str, last: int | None) -> Any:
        name = cf.value(op)
        if name is None:
            return None
        t = values[name]
        width = t.shape[-1] if last is None else last
        return t.expand(steps * batch, nh, width).reshape(steps, batch, nh, width).transpose(0, 1)

    return Projected(get("q", dk), get("k", dk), get("v", dv), get("g", None), get("beta", 1))


def run_direction(cell: Cell, cf: ChunkForm, params: Mapping[str, Any], x_tm: Any, s0: Any, chunk_size: int,
                  core: Core | None = None) -> tuple[Any, Any]:
    """``x_tm [T, B, I]``, S0 ``[B, NH, DK, DV]`` -> (y ``[T, B, F]``, S_T)."""
    from rnnc.ir.interp import run_nodes
    from rnnc.kernels.chunk import chunkwise

    steps, batch = int(x_tm.shape[0]), int(x_tm.shape[1])
    values: dict[str, Any] = {cell.step.input_names[0]: x_tm.reshape(steps * batch, -1), **params}
    run_nodes(cf.pre, values)
    p = operands(cf, values, steps, batch, tuple(s0.shape[1:]))
    o, s = (core or chunkwise)(cf.form, p, s0, chunk_size)
    values[cf.out] = o.transpose(0, 1).reshape(steps * batch, *o.shape[2:])
    run_nodes(cf.post, values)
    y = values[cell.step.outputs[0][1]]
    return y.reshape(steps, batch, -1), s
