"""Run one direction of a matrix-state layer chunkwise, from its IR and its verified chunk form.

Why: the step graph of a GLA/RetNet/HGRN2/DeltaNet/Mamba-2 cell does T dependent rank-one
updates; its chunk form (``rnnc.passes.chunk``, checked against the step graph) splits it into

1. ``pre``: the state-free nodes that compute q, k, v, g, β (and what the readout needs from x),
   evaluated once on all ``T*B`` rows;
2. the recurrence, chunkwise: the C loop nest of ``rnnc.lower.chunk``, the Triton kernel of
   ``rnnc.backends.triton.chunk`` or onnxruntime's ``LinearAttention`` (each tested against
   ``rnnc.ir.chunkform.chunkwise`` and the step loop);
3. ``post``: the nodes that turn o into y, again on all rows at once.

Only step 2 is sequential, and only over T/C chunks; :func:`prepare` and :func:`finish` are
steps 1 and 3 for the C and Triton runners (the ONNX export renders the same nodes in the graph).
Nothing here knows a cell by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnnc.ir.graph import Cell
from rnnc.passes.chunk import ChunkForm


def operands(cf: ChunkForm, values: Mapping[str, Any], steps: int, batch: int, s_shape: tuple[int, ...]) -> Any:
    """The family's operands ``[B, T, NH, ...]`` from the pre-nodes' row values (broadcast where
    the cell shares them: RetNet's decay is a weight, Mamba-2's B and C are shared by heads)."""
    from rnnc.ir.chunkform import Projected

    nh, dk, dv = s_shape

    def get(op: str, last: int | None) -> Any:
        name = cf.value(op)
        if name is None:
            return None
        t = values[name]
        width = t.shape[-1] if last is None else last
        return t.expand(steps * batch, nh, width).reshape(steps, batch, nh, width).transpose(0, 1)

    return Projected(get("q", dk), get("k", dk), get("v", dv), get("g", None), get("beta", 1))


def prepare(cell: Cell, cf: ChunkForm, params: Mapping[str, Any], x_tm: Any, s_shape: tuple[int, ...],
            lengths: Any = None, reverse: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Step 1 for every chunk kernel: the pre-nodes on all ``T*B`` rows of ``x_tm [T, B, I]``
    and the operands, time-major ``[T, B, NH, D]`` fp32 contiguous (None where the cell has
    none), time-reversed for the backward direction; steps past a sequence's length get
    k = v = g = β = 0, which leaves the state untouched.  Returns (row values, operands)."""
    import torch

    from rnnc.ir.interp import run_nodes

    steps, batch = int(x_tm.shape[0]), int(x_tm.shape[1])
    values: dict[str, Any] = {cell.step.input_names[0]: x_tm.reshape(steps * batch, -1).float(),
                              **{k: v.float() for k, v in params.items()}}
    run_nodes(cf.pre, values)
    p = operands(cf, values, steps, batch, s_shape)
    ops = {"q": p.q, "k": p.k, "v": p.v, "g": p.g, "beta": p.beta}
    if lengths is not None:
        live = (torch.arange(steps, device=x_tm.device)[None, :] < lengths.to(x_tm.device)[:, None])[..., None, None]
        ops = {n: t if t is None or n == "q" else t * live for n, t in ops.items()}
    return values, {n: None if t is None else (t.flip(1) if reverse else t).transpose(0, 1).contiguous().float()
                    for n, t in ops.items()}


def finish(cell: Cell, cf: ChunkForm, values: dict[str, Any], o_tm: Any, lengths: Any = None,
           reverse: bool = False) -> Any:
    """Step 3: the post-nodes on the readouts ``o_tm [T, B, NH, DV]`` -> y ``[T, B, F]`` (zeros
    past each sequence's length, like the step loop)."""
    import torch

    from rnnc.ir.interp import run_nodes

    steps, batch = int(o_tm.shape[0]), int(o_tm.shape[1])
    if reverse:
        o_tm = o_tm.flip(0)
    values[cf.out] = o_tm.reshape(steps * batch, *o_tm.shape[2:])
    run_nodes(cf.post, values)
    y = values[cell.step.outputs[0][1]].reshape(steps, batch, -1)
    if lengths is not None:
        y = y * (torch.arange(steps, device=y.device)[:, None] < lengths.to(y.device)[None, :])[..., None]
    return y
