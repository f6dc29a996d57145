"""Lowering one recurrent layer (a Cell and its Knobs) to a :class:`Kernel`.

Every layer kernel has the same calling convention, whatever path built it, so one runtime
drives them all:

* scalars ``B, T, W`` (batch, steps, workers), ``reverse`` (run t = T-1 .. 0), ``has_len``,
  ``xs_t, xs_b`` / ``ys_t, ys_b`` (element strides of x and y: the runtime passes views, so
  batch-first layouts and the two halves of a bidirectional output need no copies);
* buffers ``x``, ``y`` (with ``y_off``, the feature offset of this direction), ``lengths``,
  one ``s_<state>`` per cell state (``[B, *shape]``, read as the initial state and overwritten
  with the final one), one ``p_<param>`` per cell parameter, packed weights and work buffers.

Two paths build the body: :mod:`rnnc.lower.fused` when the step graph has the gate structure
(linears of x and of the state feeding gate-wise elementwise math: LSTM, GRU, Elman, minGRU, ...)
and the generic per-sample path below for every other cell.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from rnnc.errors import InfeasibleError, UnsupportedError
from rnnc.ir.graph import Cell
from rnnc.lower.knobs import DTYPE_BYTES, Knobs, knobs_for, predict_smem
from rnnc.lower.loopnest import (
    Barrier,
    Bin,
    Buffer,
    Const,
    Expr,
    If,
    Kernel,
    Let,
    Load,
    Loop,
    Select,
    Stmt,
    Store,
    Var,
    add,
    mul,
)
from rnnc.lower.stepgraph import StepLowerer, View, contiguous_strides, dense, loop_nest
from rnnc.passes import plan_layer
from rnnc.passes.plan import INPUT, STATE

SCALARS = ("B", "T", "W", "reverse", "has_len", "xs_t", "xs_b", "ys_t", "ys_b", "y_off")


def time_index(s: Expr) -> Expr:
    """The time step processed at loop position ``s`` (reverse layers walk backwards)."""
    return Select(Var("reverse"), Bin("-", Bin("-", Var("T"), Const(1)), s), s)


def live(t: Expr, b: Expr) -> Expr:
    """Whether sample ``b`` is inside its sequence at step ``t`` (packed-sequence semantics)."""
    return Bin("||", Bin("==", Var("has_len"), Const(0)), Bin("<", t, Load("lengths", b)))


def common_buffers(cell: Cell) -> list[Buffer]:
    """x, y, lengths, states and the cell's own parameters (unpacked, torch layout)."""
    bufs = [
        Buffer("x", Const(0), dtype="param", doc="input, element strides xs_t/xs_b"),
        Buffer("y", Const(0), dtype="param", writable=True, doc="output, element strides ys_t/ys_b, offset y_off"),
        Buffer("lengths", Var("B"), dtype="int64", doc="valid steps per sample (if has_len)"),
    ]
    for s in cell.states:
        bufs.append(Buffer(f"s_{s.name}", mul(Var("B"), math.prod(s.shape)), dtype="float", writable=True,
                           doc=f"state {s.name}: initial in, final out"))
    for name, t in cell.step.params:
        # int8 codes of quantized weights keep their element type (see ``Buffer.dtype``)
        kind = "int8" if t.dtype == "int8" else "param"
        bufs.append(Buffer(f"p_{name}", Const(math.prod(int(d) for d in t.shape)), dtype=kind))
    return bufs


def lower_layer(cell: Cell, target: object = None, schedule: object = None, dtype: str = "float32",
                name: str = "rnnc_layer", force_generic: bool = False) -> Kernel:
    """The loop nest of one layer; the fused path when the cell has gate structure."""
    from rnnc.lower.fused import lower_fused
    from rnnc.lower.gates import in_kernel_projections

    if cell.attr("xquant") is not None:
        raise UnsupportedError(f"the C-style backends cannot lower {cell.kind} with int8 input activations "
                               f"(xquant={cell.attr('xquant')!r}); quantize with scheme 'w8'/'w4'")
    layer = plan_layer(cell)
    chunk = chunk_length(layer, target, schedule)
    if chunk and not force_generic:
        from rnnc.lower.chunk import chunk_kernel
        from rnnc.lower.chunkwise import kernel_shape

        ks = kernel_shape(cell, layer.chunk)
        return chunk_kernel(name, ks.form, ks.heads, ks.dk, ks.dv, ks.gate, chunk)
    plan = None if force_generic else layer.gate_plan
    gates = plan.gates if plan is not None else 1
    int8 = plan is not None and any(lin.scale for lin in plan.linears)
    knobs = knobs_for(cell.hidden_size, gates, target, schedule, dtype, int8_weights=int8)
    if plan is not None:
        check_feasible(cell, plan.gates, knobs, target, in_kernel_projections(plan, knobs))
        return lower_fused(cell, plan, knobs, name)
    return lower_generic(cell, knobs, name, target)


#: steps per chunk of the C chunkwise form when no Schedule says (``rnnc.lower.chunk``)
DEFAULT_CHUNK = 64


def chunk_length(layer: Any, target: object, schedule: object) -> int:
    """Steps per chunk for a layer with a verified chunk form on a CPU (0: step by step): the
    Schedule's or knobs' ``chunk`` (the tuner searches it, 0 included), else
    :data:`DEFAULT_CHUNK`.  GPU targets never take it here: the CUDA dialect's threads would race
    on the chunk's scalar work, and on a GPU the Triton chunkwise kernel runs instead."""
    from rnnc.lower.knobs import CPU_KNOBS_KERNEL

    if layer.chunk is None or getattr(target, "gpu", None) is not None:
        return 0
    if isinstance(schedule, dict):  # knobs: a manifest's or the tuner's; no "chunk" = the step path
        return int(schedule.get("chunk", 0))
    kernel = getattr(schedule, "kernel", "untuned_default")
    if kernel == "untuned_default":
        return DEFAULT_CHUNK
    if kernel in ("cpu_chunkwise", CPU_KNOBS_KERNEL):  # the solver's tiling or a tuner's knob variant
        return int(schedule.param("chunk", DEFAULT_CHUNK))
    return 0


def check_feasible(cell: Cell, gates: int, knobs: Knobs, target: object, projections: int = 1) -> None:
    """Raise a readable :class:`InfeasibleError` when the fused kernel cannot fit ``target``
    (``projections``: input projections the kernel computes itself, ``fused.in_kernel_projections``)."""
    gpu = getattr(target, "gpu", None)
    if gpu is None or not knobs.resident:
        return
    need = predict_smem(cell.hidden_size, gates, knobs.tile_hidden, knobs.batch_block,
                        DTYPE_BYTES.get(knobs.dtype, 4), projections, register_k=knobs.register_k)
    have = gpu.shared_memory_per_block_optin_bytes - gpu.shared_memory_reserved_per_block_bytes
    tag = getattr(target, "tag", "the target")
    if need > have:
        raise InfeasibleError(
            f"the fused {cell.kind} kernel (hidden {cell.hidden_size}, {gates} gates, {knobs.dtype}) needs "
            f"{need / 1024:.1f} KiB shared memory per block for its resident weight tile of "
            f"{knobs.tile_hidden} units, {tag} has {have / 1024:.1f} KiB; use a smaller hidden size, "
            f"fp16/bf16 weights or a GPU with more shared memory")
    blocks = cell.hidden_size // knobs.tile_hidden
    if blocks > gpu.sm_count * gpu.max_blocks_per_sm:
        raise InfeasibleError(f"the fused {cell.kind} kernel needs {blocks} co-resident blocks for its grid "
                              f"sync, {tag} can hold {gpu.sm_count * gpu.max_blocks_per_sm}")


def lower_generic(cell: Cell, knobs: Knobs, name: str, target: object = None) -> Kernel:
    """One worker per batch sample; the step graph lowered node by node, states copied at the end.

    The step reads the caller's state buffers and writes fresh locals, so no node can observe a
    half-updated state; the masked copy-out implements ``lengths``.
    """
    g = cell.step
    batched = set(plan_layer(cell).values_of(INPUT, STATE))  # values that carry the batch dim
    b, s = Var("b"), Var("s")
    t = time_index(s)
    env: dict[str, View] = {"x": View("x", add(mul(t, Var("xs_t")), mul(b, Var("xs_b"))), (cell.input_size,), (1,))}
    for st in cell.states:
        env[st.name] = dense(f"s_{st.name}", st.shape, mul(b, math.prod(st.shape)))
    for pname, ptype in g.params:
        shape = tuple(int(d) for d in ptype.shape)
        env[pname] = View(f"p_{pname}", Const(0), shape, contiguous_strides(shape))
    lowerer = StepLowerer(g, env, batched, "v_")
    shared = tuple(n for n in g.nodes if not any(o in batched for o in n.outputs))
    per_step = tuple(n for n in g.nodes if any(o in batched for o in n.outputs))
    prologue = lowerer.lower(shared)
    step = lowerer.lower(per_step)
    outs = dict(g.outputs)
    ok = live(t, b)
    copy_out: list[Stmt] = []
    y = lowerer.aligned(lowerer.env[outs["y"]], (cell.output_size,))
    ydst = add(add(mul(t, Var("ys_t")), mul(b, Var("ys_b"))), Var("y_off"))
    copy_out += loop_nest((cell.output_size,), "o", lambda ix: [
        Store("y", add(ydst, ix[0]), Select(ok, y.load(ix), Const(0.0, True)))])
    for st in cell.states:
        src = lowerer.aligned(lowerer.env[outs[st.name]], st.shape)
        dst = dense(f"s_{st.name}", st.shape, mul(b, math.prod(st.shape)))
        copy_out += loop_nest(st.shape, "o", lambda ix, src=src, dst=dst: [
            If(ok, (Store(dst.buf, dst.load(ix).index, src.load(ix)),))])
    time_loop = Loop("s", Var("T"), (*step, *copy_out, Barrier("block")))
    per_worker = Loop("bb", Bin("/", add(Var("B"), Bin("-", Var("W"), Const(1))), Var("W")), (
        Let("b", add(Var("w"), mul(Var("bb"), Var("W"))), is_int=True),
        If(Bin("<", b, Var("B")), (*prologue, time_loop)),))
    body = (Loop("w", Var("W"), (per_worker,), "parallel"),)
    bufs = common_buffers(cell) + lowerer.buffers
    # its own register budget: a fused Schedule's __maxnreg__ cap was predicted for another loop nest
    # (sLSTM under the fused cap of 56 spilled), so the generic kernel leaves registers to ptxas
    knobs = replace(knobs, max_registers=0)
    meta = {"path": "generic", "knobs": knobs.to_dict(), "gates": 1, "cell": cell.kind, "hidden": cell.hidden_size,
            "local_bytes": sum(int(bf.size.value) * 4 for bf in lowerer.buffers)}
    return Kernel(name, SCALARS, tuple(bufs), body, (), meta)
