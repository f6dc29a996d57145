"""Lowering a cell's step graph, node by node, to loop-nest statements for one batch sample.

This is the path every cell takes (user cells included): each IR node becomes a small loop nest
over its per-sample output shape.  Shape ops (reshape, squeeze, unsqueeze, split, slice, select,
transpose) are views, i.e. index arithmetic, not copies; elementwise ops broadcast by stride 0;
``linear``/``matmul``/``sum`` reduce with a scalar accumulator; weight-only ``qlinear`` does the
same over widened int8 codes and applies the row (or group) scale once per accumulator.  Values that depend only on
weights (LRU's eigenvalues, Mamba's ``-exp(A_log)``) carry no batch dimension and are computed
once per kernel call by the caller's prologue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnc.errors import UnsupportedError
from rnnc.ir.graph import Graph, Node
from rnnc.ir.ops import BINARY_OPS, UNARY_OPS
from rnnc.lower.loopnest import (
    Alloc,
    Barrier,
    Bin,
    Buffer,
    Call,
    Const,
    Expr,
    Let,
    Load,
    Loop,
    Ref,
    Select,
    Stmt,
    Store,
    Var,
    add,
    linear_index,
    mul,
)

#: the loop nest takes every scalar op of the IR (its C-style renderers spell them all)
_UNARY = UNARY_OPS
_BINARY = BINARY_OPS
_VIEWS = {"reshape", "unsqueeze", "squeeze", "split", "slice", "select", "transpose", "cast"}


@dataclass(frozen=True)
class View:
    """A strided window on a buffer (or a scalar constant when ``buf`` is empty)."""

    buf: str
    offset: Expr
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    const: float = 0.0

    @property
    def is_const(self) -> bool:
        return self.buf == ""

    def load(self, idx: tuple[Expr, ...]) -> Expr:
        if self.is_const:
            return Const(self.const, True)
        return Load(self.buf, linear_index(list(zip(idx, self.strides, strict=True)), self.offset))

    @property
    def contiguous(self) -> bool:
        return self.strides == contiguous_strides(self.shape)


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def dense(buf: str, shape: tuple[int, ...], offset: Expr | int = 0) -> View:
    return View(buf, Const(offset) if isinstance(offset, int) else offset, shape, contiguous_strides(shape))


def loop_nest(shape: tuple[int, ...], prefix: str, body_fn, vector_inner: bool = True) -> tuple[Stmt, ...]:
    """Loops over ``shape`` (innermost ``vector``) around ``body_fn(index_vars)``."""
    vars_ = tuple(Var(f"{prefix}{i}") for i in range(len(shape)))
    body: tuple[Stmt, ...] = tuple(body_fn(vars_))
    for i in reversed(range(len(shape))):
        kind = "vector" if vector_inner and i == len(shape) - 1 else "serial"
        body = (Loop(vars_[i].name, Const(shape[i]), body, kind),)
    return body


class StepLowerer:
    """Emits statements for the nodes of one step graph; ``env`` maps value names to views.

    ``batched`` says which values carry the batch dim in the IR (their per-sample shape drops
    it).  New per-sample values get ``local`` buffers named ``<prefix><value>``.
    """

    def __init__(self, graph: Graph, env: dict[str, View], batched: set[str], prefix: str) -> None:
        self.graph = graph
        self.types = graph.value_types()
        self.env = dict(env)
        self.batched = batched
        self.prefix = prefix
        self.buffers: list[Buffer] = []
        self._n = 0

    # ---------------------------------------------------------------- helpers
    def shape_of(self, name: str) -> tuple[int, ...]:
        shape = self.types[name].shape
        shape = shape[1:] if name in self.batched else shape
        if not all(isinstance(d, int) for d in shape):
            raise UnsupportedError(f"value %{name} of the step graph has symbolic shape {shape}")
        return tuple(int(d) for d in shape)

    def fresh(self, name: str, shape: tuple[int, ...]) -> View:
        buf = f"{self.prefix}{name}"
        self.buffers.append(Buffer(buf, Const(max(1, math.prod(shape))), "local", writable=True))
        self.out_stmts.append(Alloc(buf))
        return dense(buf, shape)

    def aligned(self, v: View, out_shape: tuple[int, ...]) -> View:
        """Broadcast view of ``v`` for an output of ``out_shape`` (right-aligned, stride 0)."""
        if v.is_const:
            return v
        shape, strides = list(v.shape), list(v.strides)
        while len(shape) > len(out_shape):  # a weight-only value whose leading 1 met the batch dim
            if shape[0] != 1:
                raise UnsupportedError(f"cannot broadcast {v.shape} to per-sample shape {out_shape}")
            shape.pop(0)
            strides.pop(0)
        pad = len(out_shape) - len(shape)
        shape, strides = [1] * pad + shape, [0] * pad + strides
        strides = [0 if s == 1 and o != 1 else st for s, o, st in zip(shape, out_shape, strides, strict=True)]
        return View(v.buf, v.offset, tuple(out_shape), tuple(strides))

    # ---------------------------------------------------------------- driver
    def lower(self, nodes: tuple[Node, ...]) -> list[Stmt]:
        self.out_stmts: list[Stmt] = []
        for node in nodes:
            self.node(node)
        return self.out_stmts

    def node(self, n: Node) -> None:
        before = len(self.out_stmts)
        self.node_body(n)
        if len(self.out_stmts) > before:  # CUDA: the next node may read what other threads wrote
            self.out_stmts.append(Barrier("block"))

    def node_body(self, n: Node) -> None:
        op = n.op
        if op == "const":
            self.env[n.outputs[0]] = View("", Const(0), (), (), float(n.attr("value")))
        elif op in _VIEWS:
            self.view_op(n)
        elif op in _UNARY or op in _BINARY or op in ("where", "clamp"):
            self.elementwise(n)
        elif op == "linear":
            self.linear(n)
        elif op == "qlinear":
            self.qlinear(n)
        elif op == "matmul":
            self.matmul(n)
        elif op == "sum":
            self.reduce_sum(n)
        elif op == "concat":
            self.concat(n)
        else:
            raise UnsupportedError(f"the C-style backends cannot lower op {op!r} ({n.label}) in a cell step yet")

    # ---------------------------------------------------------------- views
    def materialize(self, v: View, hint: str) -> View:
        if v.is_const or v.contiguous:
            return v
        out = self.fresh(f"{hint}_c{self._next()}", v.shape)
        self.out_stmts.extend(loop_nest(v.shape, "i", lambda ix: [Store(out.buf, out.load(ix).index, v.load(ix))]))
        return out

    def _next(self) -> int:
        self._n += 1
        return self._n

    def view_op(self, n: Node) -> None:
        src = self.env[n.inputs[0]]
        out_shapes = [self.shape_of(o) for o in n.outputs]
        op = n.op
        if op in ("reshape", "unsqueeze", "squeeze", "cast"):
            if op == "cast" and self.types[n.outputs[0]].dtype != self.types[n.inputs[0]].dtype:
                raise UnsupportedError(f"{n.label}: casts inside a cell step are not supported by the C backend")
            src = self.materialize(src, n.outputs[0])
            self.env[n.outputs[0]] = dense(src.buf, out_shapes[0], src.offset) if not src.is_const else src
            return
        rank_shift = 1 if n.inputs[0] in self.batched else 0
        full_rank = len(self.types[n.inputs[0]].shape)
        if op == "transpose":
            perm = [p % full_rank - rank_shift for p in n.attr("perm")]
            if rank_shift and n.attr("perm")[0] % full_rank != 0:
                raise UnsupportedError(f"{n.label}: transposing the batch dim inside a cell step")
            perm = perm[rank_shift:]
            self.env[n.outputs[0]] = View(src.buf, src.offset, tuple(src.shape[p] for p in perm),
                                          tuple(src.strides[p] for p in perm))
            return
        axis = n.attr("axis") % full_rank - rank_shift
        if axis < 0:
            raise UnsupportedError(f"{n.label}: {op} along the batch dim inside a cell step")
        if op == "split":
            start = 0
            for out, size in zip(n.outputs, n.attr("sizes"), strict=True):
                shape = list(src.shape)
                shape[axis] = size
                self.env[out] = View(src.buf, add(src.offset, start * src.strides[axis]), tuple(shape), src.strides)
                start += size
        elif op == "slice":
            start, step = n.attr("start") or 0, n.attr("step") or 1
            start = min(max(start + src.shape[axis] if start < 0 else start, 0), src.shape[axis])  # torch clamps
            strides = list(src.strides)
            strides[axis] *= step
            self.env[n.outputs[0]] = View(src.buf, add(src.offset, start * src.strides[axis]), out_shapes[0],
                                          tuple(strides))
        elif op == "select":
            index = n.attr("index") % src.shape[axis]
            strides = src.strides[:axis] + src.strides[axis + 1:]
            self.env[n.outputs[0]] = View(src.buf, add(src.offset, index * src.strides[axis]), out_shapes[0], strides)

    # ---------------------------------------------------------------- compute
    def elementwise(self, n: Node) -> None:
        shape = self.shape_of(n.outputs[0])
        ins = [self.aligned(self.env[i], shape) for i in n.inputs]
        out = self.fresh(n.outputs[0], shape)

        def body(ix: tuple[Expr, ...]) -> list[Stmt]:
            vals = [v.load(ix) for v in ins]
            return [Store(out.buf, out.load(ix).index, scalar_op(n, vals))]

        self.out_stmts.extend(loop_nest(shape, "i", body))
        self.env[n.outputs[0]] = out

    def linear(self, n: Node) -> None:
        x = self.materialize(self.env[n.inputs[0]], n.outputs[0])
        w = self.env[n.inputs[1]]
        bias = self.env[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] else None
        shape = self.shape_of(n.outputs[0])
        k_dim = x.shape[-1]
        out = self.fresh(n.outputs[0], shape)
        acc = f"acc{self._next()}"

        def body(ix: tuple[Expr, ...]) -> list[Stmt]:
            k = Var(f"k{len(ix)}")
            xi = x.load((*ix[:-1], k)) if x.shape[:-1] else x.load((k,))
            prod = Bin("mul", xi, w.load((ix[-1], k)))
            init = bias.load((ix[-1],)) if bias is not None else Const(0.0, True)
            return [Let(acc, init), Loop(k.name, Const(k_dim), (Let(acc, Bin("add", Ref(acc), prod)),), "serial"),
                    Store(out.buf, out.load(ix).index, Ref(acc))]

        self.out_stmts.extend(loop_nest(shape, "i", body))
        self.env[n.outputs[0]] = out

    def qlinear(self, n: Node) -> None:
        """Weight-only int8 ``qlinear``: ``y[o] = sum_g scale[o, g] * sum_{k in g} x[k] * wq[o, k] + b[o]``.

        The codes are loaded as int8 and widened to float in the product, so the weights stay a
        quarter of the bytes of the float kernel (the whole reason to quantize a memory-bound
        recurrence); the scale multiplies each accumulator once instead of every weight.
        Integer activations (``act`` dynamic/static) and float outlier channels are declined
        with the reason, so ``supports()`` can name them.
        """
        act = n.attr("act")
        ins = list(n.inputs) + [""] * (7 - len(n.inputs))
        if act != "none":
            raise UnsupportedError(f"the C-style backends lower qlinear ({n.label}) with act='none' (weight-only "
                                   f"int8) only, not act={act!r} (int8 activations); quantize with scheme 'w8'/'w4'")
        if ins[5] or ins[6]:
            raise UnsupportedError(f"the C-style backends cannot lower qlinear ({n.label}) with float outlier "
                                   f"channels (keep_idx/keep_w) yet; quantize with outliers='none'")
        x = self.materialize(self.env[n.inputs[0]], n.outputs[0])
        wq, scale = self.env[ins[1]], self.env[ins[2]]
        bias = self.env[ins[3]] if ins[3] else None
        if wq.is_const or scale.is_const or len(wq.shape) != 2:
            raise UnsupportedError(f"{n.label}: qlinear weights must be stored 2-d parameters")
        groups = scale.shape[1] if len(scale.shape) == 2 else 1
        k_dim = x.shape[-1]
        if k_dim % groups:
            raise UnsupportedError(f"{n.label}: {k_dim} input features do not split into {groups} scale groups")
        size = k_dim // groups
        shape = self.shape_of(n.outputs[0])
        out = self.fresh(n.outputs[0], shape)
        acc, tot = f"acc{self._next()}", f"acc{self._next()}"

        def body(ix: tuple[Expr, ...]) -> list[Stmt]:
            row = ix[-1]
            k, g = Var(f"k{len(ix)}"), Var(f"g{len(ix)}")
            kk = add(mul(g, size), k) if groups > 1 else k
            xi = x.load((*ix[:-1], kk)) if x.shape[:-1] else x.load((kk,))
            inner = Loop(k.name, Const(size), (Let(acc, Bin("add", Ref(acc), Bin("mul", xi, wq.load((row, kk))))),),
                         "serial")
            init = bias.load((row,)) if bias is not None else Const(0.0, True)
            if groups == 1:
                res: Expr = Bin("add", Bin("mul", Ref(acc), scale.load((row,))), init)
                return [Let(acc, Const(0.0, True)), inner, Store(out.buf, out.load(ix).index, res)]
            group = Loop(g.name, Const(groups), (
                Let(acc, Const(0.0, True)), inner,
                Let(tot, Bin("add", Ref(tot), Bin("mul", Ref(acc), scale.load((row, g)))))), "serial")
            return [Let(tot, init), group, Store(out.buf, out.load(ix).index, Ref(tot))]

        self.out_stmts.extend(loop_nest(shape, "i", body))
        self.env[n.outputs[0]] = out

    def matmul(self, n: Node) -> None:
        a, b = self.env[n.inputs[0]], self.env[n.inputs[1]]
        shape = self.shape_of(n.outputs[0])
        a1, b1 = len(a.shape) == 1, len(b.shape) == 1
        a = View(a.buf, a.offset, (1, *a.shape), (0, *a.strides)) if a1 else a
        b = View(b.buf, b.offset, (*b.shape, 1), (*b.strides, 0)) if b1 else b
        if a1 and b1:
            mat_shape: tuple[int, ...] = (1, 1)
        elif b1:
            mat_shape = (*shape, 1)
        elif a1:
            mat_shape = (*shape[:-1], 1, shape[-1])
        else:
            mat_shape = shape
        av, bv = self.aligned_batch(a, mat_shape), self.aligned_batch(b, mat_shape)
        out = self.fresh(n.outputs[0], shape)
        out_full = View(out.buf, out.offset, mat_shape, contiguous_strides(mat_shape))
        k_dim = a.shape[-1]
        acc = f"acc{self._next()}"

        def body(ix: tuple[Expr, ...]) -> list[Stmt]:
            k = Var(f"k{len(ix)}")
            prod = Bin("mul", av.load((*ix[:-1], k)), bv.load((*ix[:-2], k, ix[-1])))
            return [Let(acc, Const(0.0, True)), Loop(k.name, Const(k_dim), (Let(acc, Bin("add", Ref(acc), prod)),)),
                    Store(out.buf, out_full.load(ix).index, Ref(acc))]

        self.out_stmts.extend(loop_nest(mat_shape, "i", body))
        self.env[n.outputs[0]] = out

    def aligned_batch(self, v: View, mat_shape: tuple[int, ...]) -> View:
        """Broadcast the batch dims of a matmul operand (its last two dims stay)."""
        lead = self.aligned(View(v.buf, v.offset, v.shape[:-2], v.strides[:-2]), mat_shape[:-2]) \
            if len(mat_shape) > 2 else View(v.buf, v.offset, (), ())
        return View(v.buf, v.offset, (*lead.shape, *v.shape[-2:]), (*lead.strides, *v.strides[-2:]))

    def reduce_sum(self, n: Node, scale: float = 1.0) -> None:
        """``sum`` over the node's axes (``scale``: a factor applied as each result is stored --
        ``mean`` -- so no second pass rewrites the output in place)."""
        src = self.env[n.inputs[0]]
        shift = 1 if n.inputs[0] in self.batched else 0
        rank = len(self.types[n.inputs[0]].shape)
        axes = sorted({a % rank - shift for a in (n.attr("axes") or range(rank))})
        if any(a < 0 for a in axes):
            raise UnsupportedError(f"{n.label}: summing over the batch dim inside a cell step")
        kept = [d for d in range(len(src.shape)) if d not in axes]
        red = [src.shape[a] for a in axes]
        out = self.fresh(n.outputs[0], tuple(src.shape[d] for d in kept))
        acc = f"acc{self._next()}"
        total = math.prod(red)

        def body(ix: tuple[Expr, ...]) -> list[Stmt]:
            r = Var(f"r{len(ix)}")
            full: list[Expr] = [Const(0)] * len(src.shape)
            for d, v in zip(kept, ix, strict=True):
                full[d] = v
            rem: Expr = r
            for a, size in reversed(list(zip(axes, red, strict=True))):
                full[a] = Bin("%", rem, Const(size)) if size != total else rem
                rem = Bin("/", rem, Const(size))
            return [Let(acc, Const(0.0, True)),
                    Loop(r.name, Const(total), (Let(acc, Bin("add", Ref(acc), src.load(tuple(full)))),)),
                    Store(out.buf, out.load(ix).index,
                          Ref(acc) if scale == 1.0 else Bin("mul", Ref(acc), Const(scale, True)))]

        self.out_stmts.extend(loop_nest(out.shape, "i", body))
        self.env[n.outputs[0]] = dense(out.buf, self.shape_of(n.outputs[0]))  # keepdim keeps 1s

    def concat(self, n: Node) -> None:
        shape = self.shape_of(n.outputs[0])
        shift = 1 if n.outputs[0] in self.batched else 0
        axis = n.attr("axis") % len(self.types[n.outputs[0]].shape) - shift
        out = self.fresh(n.outputs[0], shape)
        start = 0
        for name in n.inputs:
            v = self.aligned(self.env[name], tuple(self.shape_of(name)))
            dst = View(out.buf, add(out.offset, mul(start, out.strides[axis])), v.shape, out.strides)
            self.out_stmts.extend(loop_nest(v.shape, "i", lambda ix, v=v, dst=dst: [
                Store(dst.buf, dst.load(ix).index, v.load(ix))]))
            start += v.shape[axis]
        self.env[n.outputs[0]] = out


def scalar_op(n: Node, vals: list[Expr]) -> Expr:
    """The float expression of one elementwise node applied to loaded operands."""
    op = n.op
    if op in _UNARY:
        return Call(op, vals[0])
    if op in _BINARY:
        return Bin(op, vals[0], vals[1])
    if op == "where":
        return Select(vals[0], vals[1], vals[2])
    lo, hi = n.attr("min"), n.attr("max")
    v = vals[0]
    if lo is not None:
        v = Bin("max", v, Const(float(lo), True))
    if hi is not None:
        v = Bin("min", v, Const(float(hi), True))
    return v
