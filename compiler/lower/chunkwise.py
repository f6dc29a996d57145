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
mLSTM's form runs through the same kernels as "gla" (:func:`kernel_shape`): :func:`prepare`
computes its stabilisers and rescaled keys, :func:`finish` divides by its normaliser.  Nothing
here knows a cell by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rnnc.ir.graph import Cell
from rnnc.passes.chunk import ChunkForm


@dataclass(frozen=True)
class KernelShape:
    """What a chunk kernel runs for a layer: its form ("gla" or "delta"), heads, key and value
    widths and decay width (0 none, 1 per head, DK per key channel).  mLSTM runs as "gla" with
    one decay per head and one more value column (its normaliser; ``rnnc.ir.chunkform``)."""

    form: str
    heads: int
    dk: int
    dv: int
    gate: int


def kernel_shape(cell: Cell, cf: ChunkForm) -> KernelShape:
    """The kernel's sizes for ``cell`` (the one place that knows how a form maps onto a kernel)."""
    if cf.form == "mlstm":  # C [NH, DV, DK]
        nh, dv, dk = (int(d) for d in cell.states[cell.state_names.index(cf.state)].shape)
        return KernelShape("gla", nh, dk, dv + 1, 1)
    nh, dk, dv = (int(d) for d in cell.states[cell.state_names.index(cf.state)].shape)
    gname = cf.value("g")
    gate = 0 if gname is None else int(cell.step.value_types()[gname].shape[-1])
    return KernelShape(cf.form, nh, dk, dv, gate)


def operands(cf: ChunkForm, values: Mapping[str, Any], steps: int, batch: int, nh: int, dk: int, dv: int) -> Any:
    """The form's operands ``[B, T, NH, ...]`` from the pre-nodes' row values (broadcast where
    the cell shares them: RetNet's decay is a weight, Mamba-2's B and C are shared by heads;
    mLSTM's per-head g and i come as ``[rows, NH]``)."""
    from rnnc.ir.chunkform import Projected

    def get(op: str, last: int | None) -> Any:
        name = cf.value(op)
        if name is None:
            return None
        t = values[name]
        if cf.form == "mlstm" and op in ("g", "i"):
            t = t[..., None]
        width = t.shape[-1] if last is None else last
        return t.expand(steps * batch, nh, width).reshape(steps, batch, nh, width).transpose(0, 1)

    return Projected(get("q", dk), get("k", dk), get("v", dv), get("g", None), get("beta", 1), get("i", 1))


@dataclass
class Prepared:
    """Step 1's results: the pre-nodes' row values, the kernel's operands (time-major ``[T, B,
    NH, D]`` fp32 contiguous, None where absent), its initial state ``[B, NH, DK, DV]`` (fp32
    contiguous; the caller's own tensor when that already is) and mLSTM's stabilisers ``[T, B, NH]``."""

    values: dict[str, Any]
    ops: dict[str, Any]
    s0: Any
    stab: Any = None


def prepare(cell: Cell, cf: ChunkForm, params: Mapping[str, Any], x_tm: Any, states: Sequence[Any],
            lengths: Any = None, reverse: bool = False) -> Prepared:
    """Step 1 for every chunk kernel: the pre-nodes on all ``T*B`` rows of ``x_tm [T, B, I]``
    and the operands, time-reversed for the backward direction; steps past a sequence's length
    get k = v = g = β = 0 (and i = -inf), which leaves the states untouched.  ``states``: the
    layer's initial states in the cell's order."""
    import torch

    from rnnc.ir.chunkform import mlstm_as_gla
    from rnnc.ir.interp import run_nodes

    steps, batch = int(x_tm.shape[0]), int(x_tm.shape[1])
    values: dict[str, Any] = {cell.step.input_names[0]: x_tm.reshape(steps * batch, -1).float(),
                              **{k: v.float() for k, v in params.items()}}
    run_nodes(cf.pre, values)
    ks = kernel_shape(cell, cf)
    mine = dict(zip(cell.state_names, states, strict=True))
    dv = ks.dv - 1 if cf.form == "mlstm" else ks.dv
    p = operands(cf, values, steps, batch, ks.heads, ks.dk, dv)
    if lengths is not None:
        live = (torch.arange(steps, device=x_tm.device)[None, :] < lengths.to(x_tm.device)[:, None])[..., None, None]
        fields = {n: getattr(p, n) for n in ("q", "k", "v", "g", "beta", "i")}
        dead = {n: t if t is None or n == "q" else t * live for n, t in fields.items()}
        if p.i is not None:
            dead["i"] = p.i.masked_fill(~live, float("-inf"))
        p = type(p)(**dead)
    if reverse:
        p = type(p)(**{n: None if t is None else t.flip(1) for n, t in vars(p).items()})
    stab = None
    if cf.form == "mlstm":
        ordered = tuple(mine[n].float() for n in cf.states.values())
        p, s0, stab = mlstm_as_gla(p, ordered)
        stab = stab.transpose(0, 1)
    else:
        s0 = mine[cf.state]
    s0 = s0 if s0.dtype == torch.float32 and s0.is_contiguous() else s0.float().contiguous()
    ops = {n: None if t is None else t.transpose(0, 1).contiguous().float()
           for n, t in vars(p).items() if n != "i"}
    return Prepared(values, ops, s0, stab)


def finish(cell: Cell, cf: ChunkForm, prep: Prepared, o_tm: Any, s_out: Any, lengths: Any = None,
           reverse: bool = False) -> tuple[Any, list[Any]]:
    """Step 3: the post-nodes on the kernel's readouts ``o_tm [T, B, NH, DV]`` -> (y ``[T, B, F]``
    (zeros past each sequence's length, like the step loop), the final states in the cell's
    order) from the kernel's final state ``s_out``."""
    import torch

    from rnnc.ir.chunkform import mlstm_readout, mlstm_states
    from rnnc.ir.interp import run_nodes

    steps, batch = int(o_tm.shape[0]), int(o_tm.shape[1])
    if cf.form == "mlstm":
        o_tm = mlstm_readout(o_tm, prep.stab)
        new = dict(zip(cf.states.values(), mlstm_states(s_out, prep.stab[-1]), strict=True))
    else:
        new = {cf.state: s_out}
    if reverse:
        o_tm = o_tm.flip(0)
    values = prep.values
    values[cf.out] = o_tm.reshape(steps * batch, *o_tm.shape[2:])
    run_nodes(cf.post, values)
    y = values[cell.step.outputs[0][1]].reshape(steps, batch, -1)
    if lengths is not None:  # where, not a product: a padded step's readout may be 0/0 (mLSTM, q = 0)
        live = (torch.arange(steps, device=y.device)[:, None] < lengths.to(y.device)[None, :])[..., None]
        y = torch.where(live, y, torch.zeros((), dtype=y.dtype, device=y.device))
    return y, [new[n] for n in cell.state_names]
