"""One recurrent layer (a Cell, one direction) as a TIR PrimFunc.

Signature (``T`` steps and ``B`` samples are symbolic, so one build serves every shape)::

    fn(X[T, B, I], Y[T, B, Ytot], lengths[B] int64, S_<state>[2, B, *shape] ..., <params> ...)

``X`` and ``Y`` are time-major; this direction writes ``Y[..., y_off : y_off + O]``.  States are
ping-pong buffers: the caller puts the initial state in ``S[0]``, step ``s`` reads ``S[s % 2]``
and writes ``S[1 - s % 2]`` (so no node ever sees a half-updated state) and the final state is
``S[T % 2]``.  A sample past its length keeps its state and outputs zeros (packed sequences; a
reverse layer therefore starts at each sample's last valid step).  Params named in
``plan.packed`` are passed packed for the linear micro-kernel (see :func:`pack_weight`).

Stages (``plan.py``): prologue (weight-only values), then per chunk of ``C`` steps
(:func:`time_chunk`) the hoisted input projection as one matmul over the chunk's ``C*B`` rows
followed by the chunk's serial steps; each materialized value is one loop nest from the emitter
(``nests.py``), everything else is inlined into its readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from rnnc.backends.tvm.exprs import Lazy, Renderer, buffer_value, static
from rnnc.backends.tvm.knobs import Knobs, linear_tile
from rnnc.backends.tvm.nests import LinearNest
from rnnc.backends.tvm.plan import REDUCTIONS, VIEWS, StepPlan
from rnnc.ir.graph import Node

PACKED_SUFFIX = "__t"


def param_arg_name(plan: StepPlan, name: str) -> str:
    """The function argument carrying param ``name`` (packed params get a suffix)."""
    return name + PACKED_SUFFIX if name in plan.packed else name


def pack_weight(weight: Any, jt: int) -> Any:
    """A linear weight (torch ``[out, in]``) as ``[out / jt, in, jt]``: one output-feature tile
    is a contiguous ``in x jt`` panel, so the micro-kernel streams it without a page (TLB)
    change per reduction step; ``jt`` is :func:`knobs.linear_tile`."""
    out_f, in_f = weight.shape
    return weight.t().reshape(in_f, out_f // jt, jt).permute(1, 0, 2).contiguous()


def packed_tiles(plan: StepPlan, knobs: Knobs) -> dict[str, int]:
    """The tile width each packed param is laid out in."""
    types = dict(plan.cell.step.params)
    return {p: linear_tile(int(types[p].shape[0]), knobs) for p in plan.packed}


class _Stage:
    """Renders the nodes of one stage: inlines, materializes, and emits the nests."""

    def __init__(self, plan: StepPlan, emitter: Any, renderer: Renderer, buffers: dict[str, Any],
                 to_buf: Any, params: dict[str, Any]) -> None:
        self.plan, self.emit, self.r = plan, emitter, renderer
        self.tiles = packed_tiles(plan, emitter.k)
        self.buffers = buffers  # value name -> allocated buffer of this stage
        self.to_buf = to_buf  # value index -> buffer index (adds the time row in the hoisted stage)
        self.params = params  # param name -> function argument buffer

    def run(self, nodes: tuple[Node, ...], sink: Any = None) -> None:
        """``sink(value_name, lazy) -> bool``: lets the caller store a value itself (step outputs)."""
        for n in nodes:
            if n.op in REDUCTIONS:
                self.reduction(n)
            else:
                self.r.node(n)
            for v in n.outputs:
                if sink is not None and n.op not in VIEWS and sink(v, self.r.env[v]):
                    continue
                if v in self.plan.materialized and v in self.buffers and n.op not in REDUCTIONS:
                    self.materialize(v)

    def store_fn(self, v: str) -> Any:
        buf = self.buffers[v]
        return lambda idx, value: T.buffer_store(buf, value, list(self.to_buf(idx)))

    def materialize(self, v: str) -> None:
        lazy = self.r.env[v]
        self.emit.elementwise(lazy.shape, lazy.at, self.store_fn(v))
        self.r.env[v] = buffer_value(self.buffers[v], lazy.shape, lazy.dtype, self.to_buf)

    def reduction(self, n: Node) -> None:
        out = n.outputs[0]
        shape, dtype = self.r.shape(out), self.r.types[out].dtype
        ins = [self.r.env[i] if i else None for i in n.inputs]
        zero = tirx.const(0.0, dtype)
        if n.op == "linear":
            x, w = ins[0], ins[1]
            bias = ins[2] if len(ins) > 2 else None
            packed = n.inputs[1] in self.plan.packed
            wbuf = self.params[n.inputs[1]] if packed else None
            wt = self.tiles.get(n.inputs[1], 1)
            lin = LinearNest(
                rows=shape[:-1], J=static(shape[-1]), K=static(x.shape[-1]),
                inp=lambda rows, k: x.at((*rows, k)),
                weight=(lambda k, j: wbuf[tirx.floordiv(j, wt), k, tirx.floormod(j, wt)])
                if packed else (lambda k, j: w.at((j, k))),
                bias=(lambda j: bias.at((j,))) if bias is not None else None, dtype=dtype,
                out=lambda idx, b=self.buffers[out]: b[self.to_buf(idx)])
            self.emit.linear(lin, self.store_fn(out))
        elif n.op == "matmul":
            a, b = ins[0], ins[1]
            a1, b1 = len(a.shape) == 1, len(b.shape) == 1
            a = Lazy((1, *a.shape), a.dtype, lambda i, a=a: a.at(i[1:])) if a1 else a
            b = Lazy((*b.shape, 1), b.dtype, lambda i, b=b: b.at(i[:-1])) if b1 else b
            rank = max(len(a.shape), len(b.shape))

            def term(idx: Any, k: Any, a: Lazy = a, b: Lazy = b) -> Any:
                fi = list(idx)
                if b1:
                    fi.append(0)
                if a1:
                    fi.insert(len(fi) - 1, 0)
                fi = [0] * (rank - len(fi)) + fi
                lead = fi[:-2]
                return a.at((*_bcast(lead, a.shape[:-2]), fi[-2], k)) * b.at((*_bcast(lead, b.shape[:-2]), k, fi[-1]))

            self.emit.reduction(shape, static(a.shape[-1]), lambda idx: zero, term, self.store_fn(out), dtype)
        else:  # sum
            src = ins[0]
            rank = len(src.shape)
            axes = sorted({a % rank for a in (n.attr("axes") or range(rank))})
            keep = bool(n.attr("keepdim", False))
            sizes = [static(src.shape[a]) for a in axes]

            def term(idx: Any, r: Any, src: Lazy = src) -> Any:
                red: dict[int, Any] = {}
                for a, size in reversed(list(zip(axes, sizes, strict=True))):
                    red[a] = tirx.floormod(r, size)
                    r = tirx.floordiv(r, size)
                rest = iter(i for d, i in enumerate(idx) if not (keep and d in red))
                return src.at(tuple(red[d] if d in red else next(rest) for d in range(rank)))

            self.emit.reduction(shape, math.prod(sizes), lambda idx: zero, term, self.store_fn(out), dtype)
        self.r.env[out] = buffer_value(self.buffers[out], shape, dtype, self.to_buf)


def _bcast(lead: tuple, dims: tuple) -> tuple:
    """Right-aligned batch index of a matmul operand with batch dims ``dims``."""
    pad = len(lead) - len(dims)
    return tuple(0 if static(d) == 1 else lead[pad + i] for i, d in enumerate(dims))


def build_layer(plan: StepPlan, emitter: Any, *, reverse: bool, y_total: int, y_off: int, name: str) -> Any:
    """The PrimFunc of one layer direction (module docstring)."""
    cell = plan.cell
    tiles = packed_tiles(plan, emitter.k)
    g = cell.step
    dtype = g.inputs[0][1].dtype
    types = g.value_types()
    with IRBuilder() as ib, T.prim_func():
        T.func_name(name)
        steps, batch = tirx.Var("T", "int32"), tirx.Var("B", "int32")
        x_buf = T.arg("X", T.buffer((steps, batch, cell.input_size), dtype))
        y_buf = T.arg("Y", T.buffer((steps, batch, y_total), dtype))
        len_buf = T.arg("lengths", T.buffer((batch,), "int64"))
        s_bufs = {s.name: T.arg(f"S_{s.name}", T.buffer((2, batch, *s.shape), s.dtype)) for s in cell.states}
        params: dict[str, Any] = {}
        for pname, ptype in g.params:
            shape = tuple(int(d) for d in ptype.shape)
            if pname in plan.packed:
                shape = (shape[0] // tiles[pname], shape[1], tiles[pname])
            params[pname] = T.arg(param_arg_name(plan, pname), T.buffer(shape, ptype.dtype))
        rows = steps * batch
        x_rows = T.decl_buffer((rows, cell.input_size), dtype, data=x_buf.data)

        # ---- prologue: weight-only values, once per call
        pro = Renderer(types, {})
        for pname, pbuf in params.items():
            if pname in plan.packed:
                pro.env[pname] = Lazy(pro.shape(pname), dtype, lambda i, b=pbuf, t=tiles[pname]: b[
                    tirx.floordiv(i[0], t), i[1], tirx.floormod(i[0], t)])
            else:
                pro.env[pname] = buffer_value(pbuf, pro.shape(pname), dtype)
        pro_nodes = plan.nodes("prologue")
        pro_bufs = {v: T.alloc_buffer(pro.shape(v), types[v].dtype) for n in pro_nodes for v in n.outputs
                    if v in plan.materialized}
        _Stage(plan, emitter.for_stage("prologue"), pro, pro_bufs, lambda i: i, params).run(pro_nodes)

        # ---- chunks of C steps: the input projection of a chunk (one batched matmul over its
        # C*B rows), then its C serial steps; the projection stays in cache for the steps
        h_nodes = plan.nodes("hoisted")
        chunk = time_chunk(plan, emitter.k)
        step = Renderer(types, {"B": batch})
        step.env.update(pro.env)
        st_nodes = plan.nodes("step")
        st_bufs = {v: T.alloc_buffer(step.shape(v), types[v].dtype) for n in st_nodes for v in n.outputs
                   if v in plan.materialized and n.op not in VIEWS}
        hoist_rows = Renderer(types, {"B": chunk * batch})
        h_bufs = {v: T.alloc_buffer(hoist_rows.shape(v), types[v].dtype) for n in h_nodes for v in n.outputs
                  if v in plan.materialized}
        ctx = _StepContext(plan, step, emitter.for_stage("step"), st_bufs, h_bufs, s_bufs, params, x_buf, y_buf,
                           len_buf, batch, y_off)
        with T.serial(0, tirx.floordiv(steps + chunk - 1, chunk)) as c:
            s0 = c * chunk
            length = tirx.min(chunk, steps - s0)
            t_lo = steps - s0 - length if reverse else s0  # first time step of the chunk
            hoist = Renderer(types, {"B": length * batch})
            hoist.env.update(pro.env)
            hoist.env["x"] = Lazy((length * batch, cell.input_size), dtype,
                                  lambda i, t_lo=t_lo: x_rows[t_lo * batch + i[0], i[1]])
            _Stage(plan, emitter.for_stage("hoisted"), hoist, h_bufs, lambda i: i, params).run(h_nodes)
            with T.serial(0, length) as sl:
                s = s0 + sl
                t = steps - 1 - s if reverse else s
                _time_step(ctx, s, t, (t - t_lo) * batch)
    return ib.get()


def time_chunk(plan: StepPlan, knobs: Knobs) -> int:
    """Steps per chunk: the chunk's projection rows (for the Schedule's batch) fill at most half
    of L2, between 4 and 256 steps (a power of two)."""
    types = plan.cell.step.value_types()
    row_bytes = 4 * sum(math.prod(int(d) for d in types[v].shape[1:]) for n in plan.nodes("hoisted")
                        for v in n.outputs if v in plan.materialized)
    if not row_bytes:
        return 256
    fit = knobs.l2_bytes // 2 // (row_bytes * max(1, knobs.batch))
    return max(4, min(256, 1 << max(0, fit.bit_length() - 1)))


@dataclass
class _StepContext:
    """What every step of the time loop reads: buffers, renderers and the step's emitter."""

    plan: StepPlan
    step: Renderer
    emitter: Any
    st_bufs: dict[str, Any]
    h_bufs: dict[str, Any]
    s_bufs: dict[str, Any]
    params: dict[str, Any]
    x_buf: Any
    y_buf: Any
    len_buf: Any
    batch: Any
    y_off: int


def _time_step(ctx: _StepContext, s: Any, t: Any, h_row: Any) -> None:
    """One step of the time loop: bind x, the states and the chunk's projection rows, render the
    step nodes, write the masked states and y."""
    plan, step, emitter, s_bufs = ctx.plan, ctx.step, ctx.emitter, ctx.s_bufs
    cell, g = plan.cell, plan.cell.step
    types = g.value_types()
    dtype = g.inputs[0][1].dtype
    outs = list(g.outputs)
    state_of = {v: o for o, v in outs if o != "y"}
    h_nodes = plan.nodes("hoisted")
    cur, nxt = tirx.floormod(s, 2), 1 - tirx.floormod(s, 2)
    step.env["x"] = Lazy((ctx.batch, cell.input_size), dtype, lambda i: ctx.x_buf[t, i[0], i[1]])
    for sname, sbuf in s_bufs.items():
        step.env[sname] = Lazy(step.shape(sname), dtype, lambda i, b=sbuf, c=cur: b[(c, *i)])
    for n in h_nodes:
        for v in n.outputs:
            if v in ctx.h_bufs:
                step.env[v] = Lazy(step.shape(v), types[v].dtype,
                                   lambda i, b=ctx.h_bufs[v]: b[(h_row + i[0], *i[1:])])
    for n in h_nodes:  # views of hoisted buffers are re-rendered against the step's env
        if n.op in VIEWS:
            step.node(n)

    def live(b: Any, t: Any = t) -> Any:
        return tirx.Cast("int64", t) < ctx.len_buf[b]

    stored: set[str] = set()

    def store_state(v: str, lazy: Lazy) -> bool:
        if v not in state_of or v in stored:
            return False
        sbuf = s_bufs[state_of[v]]
        emitter.elementwise(lazy.shape, lazy.at, lambda i, val, b=sbuf: T.buffer_store(
            b, tirx.Select(live(i[0]), val, b[(cur, *i)]), [nxt, *i]))
        step.env[v] = Lazy(lazy.shape, lazy.dtype, lambda i, b=sbuf: b[(nxt, *i)])
        stored.add(v)
        return True

    _Stage(plan, emitter, step, ctx.st_bufs, lambda i: i, ctx.params).run(plan.nodes("step"), store_state)
    for oname, v in outs:  # states produced outside the step stage (or shared values)
        if oname != "y" and oname not in {state_of[w] for w in stored}:
            lazy = step.env[v]
            sbuf = s_bufs[oname]
            emitter.elementwise(lazy.shape, lazy.at, lambda i, val, b=sbuf: T.buffer_store(
                b, tirx.Select(live(i[0]), val, b[(cur, *i)]), [nxt, *i]))
    yv = step.env[dict(outs)["y"]]
    zero = tirx.const(0.0, dtype)
    emitter.elementwise(yv.shape, yv.at, lambda i, val: T.buffer_store(
        ctx.y_buf, tirx.Select(live(i[0]), val, zero), [t, i[0], ctx.y_off + i[1]]))

