"""Lowering a whole Program, at concrete shapes, to one loop nest: every op, the recurrent layers
as calls of their own kernels.

Why: a model is more than its recurrent layers.  Run op by op through the interpreter, a small
streaming model spends its time in Python dispatch (Silero VAD: a few hundred microseconds per
32 ms chunk for about a million multiply-adds).  Here the top-level graph is lowered with the
step lowering's machinery (views are index arithmetic, elementwise ops broadcast by stride 0,
``linear``/``matmul``/``sum`` reduce in registers) plus the whole-model ops a step never has
(``conv1d``, ``pad``, ``mean``, ``stack``, ``embedding``), every shape a constant of the call's
signature -- so a call is one native function: no Python between ops, buffers planned once per
shape (``work`` buffers the runtime allocates when it first sees the shape).

Each ``rnn`` node is handed to a callback that lays out its buffers and returns the statements
for it (copies of its input and initial states into the kernels' buffers, one
:class:`~rnnc.lower.loopnest.Invoke` per layer and direction); ``rnnc.backends.cstyle.whole``
supplies it with the layer kernels the C backend built and packed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from rnnc.errors import UnsupportedError
from rnnc.ir.graph import Graph, Node
from rnnc.ir.ops import BINARY_OPS, UNARY_OPS
from rnnc.lower.loopnest import (
    Alloc,
    Bin,
    Buffer,
    Const,
    Expr,
    If,
    Kernel,
    Let,
    Load,
    Loop,
    MicroGemm,
    Ref,
    Select,
    Stmt,
    Store,
    Var,
    add,
    linear_index,
    mul,
)
from rnnc.lower.stepgraph import StepLowerer, View, dense, loop_nest, scalar_op

#: the register tile of ``gemm``: rows of A per micro-kernel call and outputs per weight panel
#: (16 floats: one AVX-512 vector, two AVX2, four NEON; 6 x 16 keeps 12 AVX2 accumulators)
GEMM_ROWS, GEMM_COLS = 6, 16
#: views that never copy: an integer input may reach ``embedding`` through them
_INDEX_VIEWS = {"transpose", "slice", "select", "split", "flip"}
#: ops lowered as one scalar expression per element (what a fused chain may hold)
_ELEMENTWISE = UNARY_OPS | BINARY_OPS | {"where", "clamp"}
#: multiply-adds (or elements) from which an op's rows are split across the program's threads.
#: Waking an idle OpenMP team costs microseconds, but when another thread pool keeps the other
#: cores busy (onnxruntime's and torch's spin after each run) the woken worker can wait for a
#: scheduler tick: Silero VAD's 0.26M-MAC STFT split in two ran 28 us per chunk alone and 4.8 ms
#: right after an onnxruntime run.  So only ops long enough to absorb that are split (as the
#: layer kernels' single steps, ``cstyle.runtime._PARALLEL_ONE_STEP_MACS``)
_PARALLEL_WORK = 1 << 20

#: ``rnn(lowerer, node) -> statements``: lays out the node's buffers (``lowerer.work_buffer``),
#: binds its outputs in ``lowerer.env`` and returns what runs it
RnnLowering = Callable[["ProgramLowerer", Node], list[Stmt]]


def copy(dst: View, src: View) -> tuple[Stmt, ...]:
    """Loops storing every element of ``src`` into ``dst`` (same shape, any strides)."""
    return loop_nest(src.shape, "c", lambda ix: [Store(dst.buf, dst.load(ix).index, src.load(ix))])


class ProgramLowerer(StepLowerer):
    """A top-level graph at concrete shapes (``shapes``: value -> shape, from one recorded run).
    New values get ``work`` buffers (allocated once per shape by the runtime), not stack arrays."""

    def __init__(self, graph: Graph, env: dict[str, View], shapes: Mapping[str, tuple[int, ...]],
                 rnn: RnnLowering, prefix: str = "v_", threads: int = 1, gpu: bool = False,
                 constant: Callable[[str], Any] | None = None) -> None:
        """``threads``: the CPU threads large ops are split across (1: none); ``gpu``: lower for a
        GPU's grid (``rnnc.backends.cstyle.whole_cuda``): every row loop is a grid of blocks, the
        outputs of a row are the block's threads, and no CPU micro-kernels.  ``constant(value)``:
        the recorded tensor of a value, for those that depend on sizes only (``full_dyn``,
        ``arange``, integer constants and anything computed from them alone), which are stored
        as constants of the plan."""
        super().__init__(graph, env, set(), prefix)
        self.gpu = gpu
        self.constant = constant
        #: (buffer, value) of every plan constant, for the runtime to fill from the recorded run
        self.constants: list[tuple[str, str]] = []
        self.folded: set[str] = set()  # the values stored as plan constants
        self.shapes = dict(shapes)
        self.rnn = rnn
        self.threads = threads
        self.readers: dict[str, list[Node]] = {}
        for node in graph.nodes:
            for i in node.inputs:
                self.readers.setdefault(i, []).append(node)
        self.outputs = {v for _, v in graph.outputs}
        #: fused elementwise values: the expression at an index, stored by their one reader
        self.lazy: dict[str, Callable[[tuple[Expr, ...]], Expr]] = {}
        #: (buffer of indices, rows of the table) of every embedding
        self.index_bounds: list[tuple[str, int]] = []
        #: weight panels ``gemm`` reads: (buffer, stored weight, offset, columns, K, panel width)
        self.packs: list[tuple[str, str, int, int, int, int]] = []

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def work_buffer(self, name: str, shape: tuple[int, ...], shared: bool = False, dtype: str = "float") -> View:
        """A buffer allocated once per shape (``shared``: a called kernel writes it too)."""
        buf = f"{self.prefix}{name}"
        self.buffers.append(Buffer(buf, Const(max(1, math.prod(shape))), "work", dtype, writable=True,
                                   shared=shared))
        return dense(buf, shape)

    def fresh(self, name: str, shape: tuple[int, ...]) -> View:
        return self.work_buffer(f"{name}_{self._next()}", shape)

    def node(self, n: Node) -> None:
        """No barriers between nodes (one thread runs the program, or one launch per statement on
        a GPU).  For a GPU, each run of a node's statements outside its row loops is kept together
        (``If(1)``): they may share a scalar (a reduction's accumulator) and must be one kernel."""
        before = len(self.out_stmts)
        self.node_body(n)
        if not self.gpu or n.op == "rnn":
            return
        grouped: list[Stmt] = []
        run: list[Stmt] = []
        for st in self.out_stmts[before:]:
            if isinstance(st, Loop) and st.kind == "parallel":
                grouped += [If(Const(1), tuple(run))] if run else []
                grouped.append(st)
                run = []
            else:
                run.append(st)
        grouped += [If(Const(1), tuple(run))] if run else []
        self.out_stmts[before:] = grouped

    def node_body(self, n: Node) -> None:
        if self.constant is not None and n.op != "rnn" and (
                n.op in ("full_dyn", "arange") or (n.op == "const" and self.types[n.outputs[0]].dtype != "float32")
                or (any(n.inputs) and all(i in self.folded for i in n.inputs if i))):
            self.plan_constant(n)  # sizes only: a constant of this plan (folded through int arithmetic too)
            return
        self.check_dtypes(n)
        lower = {"conv1d": self.conv1d, "pad": self.pad, "mean": self.mean, "stack": self.stack,
                 "embedding": self.embedding, "flip": self.flip, "reshape_dyn": self.reshape_dyn,
                 "expand_dyn": self.expand_dyn}.get(n.op)
        if n.op == "rnn":
            self.out_stmts.extend(self.rnn(self, n))
        elif lower is not None:
            lower(n)
        elif n.op == "cast" and self.types[n.outputs[0]].dtype == self.types[n.inputs[0]].dtype:
            self.env[n.outputs[0]] = self.env[n.inputs[0]]
        else:
            try:
                super().node_body(n)
            except UnsupportedError:
                raise UnsupportedError(f"the native whole-model program cannot lower op {n.op!r} ({n.label}) "
                                       f"yet") from None

    def check_dtypes(self, n: Node) -> None:
        """The program computes in float32: an integer or boolean result (an index computed by an
        op, a comparison's mask) is refused, not stored in a float buffer.  Integer inputs pass
        through views into ``embedding`` (index arithmetic on the input's own buffer)."""
        odd = [o for o in n.outputs if self.types[o].dtype != "float32"]
        if not odd or n.op == "rnn":
            return
        src = self.env.get(n.inputs[0]) if n.inputs else None
        if n.op in _INDEX_VIEWS or (n.op in ("reshape", "unsqueeze", "squeeze") and src is not None
                                    and src.contiguous):
            return
        raise UnsupportedError(f"the native whole-model program computes float32 values; {n.label} makes "
                               f"{self.types[odd[0]].dtype}")

    # ---------------------------------------------------------------- parallel loops, fusion
    def rows(self, count: int, work: int, body: Callable[[Expr], list[Stmt]]) -> list[Stmt]:
        """``body(r)`` for ``r < count``: split across the program's threads (in contiguous blocks,
        over the team the runtime gives) when the op's ``work`` (multiply-adds or elements) pays
        for waking them."""
        r = Var(f"r{self._next()}")
        if not self.gpu and (self.threads < 2 or count < 2 or work < _PARALLEL_WORK):
            return [Loop(r.name, Const(count), tuple(body(r)))]
        w, i = Var(f"pw{self._n}"), Var(f"ri{self._n}")
        per_worker = Bin("/", Bin("+", Const(count - 1), Var("W")), Var("W"))
        # contiguous blocks of rows: cyclic rows would share the cache lines at every row boundary
        # (an output row accumulated in place then bounces between the cores' caches)
        inner = Loop(i.name, per_worker, (Let(r.name, add(mul(w, per_worker), i), is_int=True),
                                          If(Bin("<", r, Const(count)), tuple(body(r)))))
        return [Loop(w.name, Var("W"), (inner,), "parallel")]  # W: the kernel's scalar (threads, or blocks)

    def elementwise(self, n: Node) -> None:
        """One loop per chain of elementwise ops: a value read once, by an elementwise op of the
        same shape, is not stored but inlined into its reader's expression."""
        out = n.outputs[0]
        shape = self.shape_of(out)
        operands = [self.operand(i, shape) for i in n.inputs]

        def expr(ix: tuple[Expr, ...]) -> Expr:
            return scalar_op(n, [f(ix) for f in operands])

        readers = self.readers.get(out, [])
        if (out not in self.outputs and len(readers) == 1 and readers[0].op in _ELEMENTWISE
                and self.shape_of(readers[0].outputs[0]) == shape):
            self.lazy[out] = expr
            return
        view = self.fresh(out, shape)
        if shape and (self.gpu or (math.prod(shape) >= _PARALLEL_WORK and self.threads > 1)):
            inner = shape[1:]
            self.out_stmts.extend(self.rows(shape[0], math.prod(shape), lambda r: list(loop_nest(
                inner, "i", lambda ix: [Store(view.buf, view.load((r, *ix)).index, expr((r, *ix)))]))))
        else:
            self.out_stmts.extend(loop_nest(shape, "i", lambda ix: [Store(view.buf, view.load(ix).index, expr(ix))]))
        self.env[out] = view

    def operand(self, name: str, shape: tuple[int, ...]) -> Callable[[tuple[Expr, ...]], Expr]:
        if name in self.lazy:
            return self.lazy.pop(name)
        return self.aligned(self.env[name], shape).load

    def linear(self, n: Node) -> None:
        """``y[r, o] = b[o] + x[r, :] . w[o, :]``: a dot product of two contiguous rows (vectorised
        as a reduction), rows split across threads when large."""
        x = self.materialize(self.env[n.inputs[0]], n.outputs[0])
        w = self.materialize(self.env[n.inputs[1]], n.outputs[0])
        bias = self.env[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] else None
        shape = self.shape_of(n.outputs[0])
        k_dim, outs = x.shape[-1], shape[-1]
        count = math.prod(shape[:-1])
        out = self.fresh(n.outputs[0], shape)
        if self.gemm(x.buf, x.offset, count, k_dim, w, outs, bias,
                     lambda m, col: add(out.offset, add(mul(m, outs), col)), out.buf):
            self.env[n.outputs[0]] = out
            return
        acc, o, k = f"acc{self._next()}", Var(f"o{self._n}"), Var(f"k{self._n}")

        def row(r: Expr) -> list[Stmt]:
            xk = Load(x.buf, add(add(x.offset, mul(r, k_dim)), k))
            wk = Load(w.buf, add(add(w.offset, mul(o, k_dim)), k))
            return [Loop(o.name, Const(outs), (  # a GPU block's threads take the outputs
                Let(acc, bias.load((o,)) if bias is not None else Const(0.0, True)),
                Loop(k.name, Const(k_dim), (Let(acc, Bin("add", Ref(acc), Bin("mul", xk, wk))),)),
                Store(out.buf, add(out.offset, add(mul(r, outs), o)), Ref(acc))), "vector" if self.gpu else "serial")]

        self.out_stmts.extend(self.rows(count, count * outs * k_dim, row))
        self.env[n.outputs[0]] = out

    def gemm(self, a_buf: str, a_off: Expr, rows: int, k_dim: int, w: View, cols: int, bias: View | None,
             out_index: Callable[[Expr, Expr], Expr], out_buf: str) -> bool:
        """``out[m, c] = bias[c] + A[m, :] . w[c, :]`` (``A`` rows contiguous from ``a_off``, ``w``
        a stored ``[cols, K]`` weight) as register-tile micro-kernels (``MicroGemm``) over a
        weight panel packed once per plan, ``GEMM_ROWS`` rows of A per tile; ``out_index(m, c)``
        places each result.  Returns False (nothing emitted) where the loop form must do: small
        products, or a weight that is computed rather than stored."""
        if self.gpu or not self.gemm_fits(rows, k_dim, w, cols):
            return False
        panels = -(-cols // GEMM_COLS)
        packed = self.pack(w.buf, int(w.offset.value), cols, k_dim)
        tiles, tail = divmod(rows, GEMM_ROWS)
        p, m, q = Var(f"gp{self._next()}"), Var(f"gm{self._n}"), Var(f"gq{self._n}")
        acc = f"gacc{self._n}"
        self.buffers.append(Buffer(acc, Const(GEMM_ROWS * GEMM_COLS), "local", writable=True))

        def tile(first: Expr, height: int) -> list[Stmt]:
            col = add(mul(p, GEMM_COLS), q)
            value: Expr = Load(acc, add(mul(m, GEMM_COLS), q))
            if bias is not None:
                value = Bin("add", value, bias.load((col,)))
            offs = tuple(add(a_off, mul(add(first, i), k_dim)) for i in range(height))
            return [Loop(p.name, Const(panels), (
                MicroGemm(acc, height, GEMM_COLS, k_dim, a_buf, offs, packed, mul(p, k_dim * GEMM_COLS)),
                Loop(m.name, Const(height), (Loop(q.name, Const(GEMM_COLS), (
                    If(Bin("<", col, Const(cols)), (Store(out_buf, out_index(add(first, m), col), value),)),)),)),
            ))]

        def body(t: Expr) -> list[Stmt]:
            return [Alloc(acc), *tile(mul(t, GEMM_ROWS), GEMM_ROWS)]

        self.out_stmts.extend(self.rows(tiles, rows * cols * k_dim, body))
        if tail:
            self.out_stmts.extend([Alloc(acc), *tile(Const(tiles * GEMM_ROWS), tail)])
        return True

    def im2col(self, x: View, shape: tuple[int, ...], stride: int, dil: int) -> View:
        """``col[b, l, g, c, k] = x[b, g*Cg + c, l*stride + k*dil]``: each output position's
        receptive field as one contiguous row (per group)."""
        col = self.fresh("col", shape)
        cg = shape[3]
        self.out_stmts.extend(loop_nest(shape, "i", lambda ix: [Store(col.buf, col.load(ix).index, x.load(
            (ix[0], add(mul(ix[2], cg), ix[3]), add(mul(ix[1], stride), mul(ix[4], dil)))))]))
        return col

    def gemm_fits(self, rows: int, k_dim: int, w: View, cols: int) -> bool:
        """Whether :meth:`gemm` takes the product: enough rows for a tile, enough columns and
        depth to fill vectors, and a stored, contiguous ``[cols, K]`` weight it can pack."""
        return (rows >= GEMM_ROWS and cols >= 8 and k_dim >= 8 and w.contiguous and w.buf.startswith("wt")
                and w.shape == (cols, k_dim) and isinstance(w.offset, Const))

    def pack(self, src: str, offset: int, cols: int, k_dim: int) -> str:
        """A weight panel for ``gemm``: ``packed[p, k, q] = w[p*GEMM_COLS + q, k]``, zero past
        ``cols``, where ``w`` is the ``[cols, K]`` window at ``offset`` of the stored weight ``src``
        -- built by the runtime (``packs``), once per distinct window."""
        key = (src, offset, cols, k_dim)
        for name, *rest in self.packs:
            if tuple(rest[:4]) == key:
                return name
        name = f"pk{len(self.packs)}_{src}"
        self.packs.append((name, src, offset, cols, k_dim, GEMM_COLS))
        self.buffers.append(Buffer(name, Const(-(-cols // GEMM_COLS) * GEMM_COLS * k_dim), "arg"))
        return name

    # ---------------------------------------------------------------- whole-model ops
    def conv1d(self, n: Node) -> None:
        """``y[b, o, l] = bias[o] + sum_{c, k} xp[b, g*Cg + c, l*stride + k*dil] w[o, c, k]`` over
        a zero-padded contiguous copy ``xp`` of the input (no bounds tests in the inner loop).

        Ungrouped convs with enough outputs are an im2col matrix times the weight in register
        tiles (:meth:`gemm`).  Otherwise two loop orders, by shape: long outputs accumulate whole
        output rows (``l`` innermost: contiguous, vectorised loads at stride 1); short outputs
        with long kernels (an STFT's frames) are dot products of im2col rows."""
        x, w = self.env[n.inputs[0]], self.materialize(self.env[n.inputs[1]], n.outputs[0])
        bias = self.env[n.inputs[2]] if len(n.inputs) > 2 and n.inputs[2] else None
        stride, pad, dil, groups = (int(n.attr(a)) for a in ("stride", "padding", "dilation", "groups"))
        shape = self.shape_of(n.outputs[0])
        cg, taps = w.shape[1], w.shape[2]
        per_group = shape[1] // groups
        if pad or not x.contiguous:
            x = self.pad_last(x, pad, pad)
        out = self.fresh(n.outputs[0], shape)
        b, o, c, k, pos = (Var(f"{v}{self._next()}") for v in "bockl")
        chan = add(mul(Bin("/", o, Const(per_group)), cg), c) if groups > 1 else c
        init = bias.load((o,)) if bias is not None else Const(0.0, True)
        span = cg * taps
        positions = shape[0] * shape[2]
        flat_w = View(w.buf, w.offset, (shape[1], span), (span, 1))
        if groups == 1 and not self.gpu and self.gemm_fits(positions, span, flat_w, shape[1]):
            col = self.im2col(x, (shape[0], shape[2], 1, cg, taps), stride, dil)

            def place(m: Expr, ch: Expr) -> Expr:  # row m = (b, l) of the im2col matrix -> y[b, ch, l]
                bb, ll = Bin("/", m, Const(shape[2])), Bin("%", m, Const(shape[2]))
                return add(out.offset, linear_index([(bb, out.strides[0]), (ch, out.strides[1]), (ll, out.strides[2])]))

            self.gemm(col.buf, col.offset, positions, span, flat_w, shape[1], bias, place, out.buf)
            self.env[n.outputs[0]] = out
            return
        if shape[2] >= 8:
            wv = f"wv{self._n}"
            row = (Loop(pos.name, Const(shape[2]), (Store(out.buf, out.load((b, o, pos)).index, init),), "vector"),
                   Loop(c.name, Const(cg), (Loop(k.name, Const(taps), (
                       Let(wv, w.load((o, c, k))),
                       Loop(pos.name, Const(shape[2]), (Store(
                           out.buf, out.load((b, o, pos)).index,
                           Bin("mul", Ref(wv), x.load((b, chan, add(mul(pos, stride), mul(k, dil))))), True),),
                           "vector"))),)))
        else:  # im2col: each output a dot product of two contiguous rows of Cg*K
            col = self.im2col(x, (shape[0], shape[2], groups, cg, taps), stride, dil)
            acc, j = f"acc{self._n}", Var(f"j{self._n}")
            grp = Bin("/", o, Const(per_group)) if groups > 1 else Const(0)
            row_base = linear_index([(b, col.strides[0]), (pos, col.strides[1]), (grp, col.strides[2])])
            row = (Loop(pos.name, Const(shape[2]), (
                Let(acc, init),
                Loop(j.name, Const(span), (Let(acc, Bin("add", Ref(acc), Bin(
                    "mul", Load(w.buf, add(add(w.offset, mul(o, w.strides[0])), j)),
                    Load(col.buf, add(row_base, j))))),)),
                Store(out.buf, out.load((b, o, pos)).index, Ref(acc)))),)
        macs = math.prod(shape) * cg * taps

        def per_output_channel(r: Expr) -> list[Stmt]:
            return [Let(b.name, Bin("/", r, Const(shape[1])), is_int=True),
                    Let(o.name, Bin("%", r, Const(shape[1])), is_int=True), *row]

        self.out_stmts.extend(self.rows(shape[0] * shape[1], macs, per_output_channel))
        self.env[n.outputs[0]] = out

    def pad(self, n: Node) -> None:
        left, right = n.attr("pads")
        self.env[n.outputs[0]] = self.pad_last(self.env[n.inputs[0]], left, right, n.attr("mode"),
                                               float(n.attr("value") or 0.0))

    def pad_last(self, x: View, left: int, right: int, mode: str = "constant", value: float = 0.0) -> View:
        """A dense copy of ``x`` padded on its last axis: a constant, its reflection or its edge
        value (the ``pad`` op, and the zero-padded input of a conv)."""
        length = x.shape[-1]
        out = self.fresh("pad", (*x.shape[:-1], length + left + right))

        def body(ix: tuple[Expr, ...]) -> list[Stmt]:
            j = add(ix[-1], -left)
            before, after = Bin("<", j, Const(0)), Bin("<", Const(length - 1), j)
            if mode == "constant":
                inside = Bin("&", Bin("<", Const(-1), j), Bin("<", j, Const(length)))
                return [Store(out.buf, out.load(ix).index, Select(inside, x.load((*ix[:-1], j)), Const(value, True)))]
            if mode == "reflect":
                src = Select(before, Bin("-", Const(0), j), Select(after, Bin("-", Const(2 * length - 2), j), j))
            else:  # replicate
                src = Select(before, Const(0), Select(after, Const(length - 1), j))
            return [Store(out.buf, out.load(ix).index, x.load((*ix[:-1], src)))]

        self.out_stmts.extend(loop_nest(out.shape, "i", body))
        return out

    def mean(self, n: Node) -> None:
        src = self.types[n.inputs[0]]
        axes = n.attr("axes")
        axes = range(src.rank) if axes is None else ((axes,) if isinstance(axes, int) else axes)
        self.reduce_sum(n, scale=1.0 / math.prod(self.shape_of(n.inputs[0])[a % src.rank] for a in axes))

    def stack(self, n: Node) -> None:
        shape = self.shape_of(n.outputs[0])
        axis = n.attr("axis") % len(shape)
        out = self.fresh(n.outputs[0], shape)
        strides = out.strides[:axis] + out.strides[axis + 1:]
        for i, name in enumerate(n.inputs):
            dst = View(out.buf, add(out.offset, i * out.strides[axis]), shape[:axis] + shape[axis + 1:], strides)
            self.out_stmts.extend(copy(dst, self.aligned(self.env[name], dst.shape)))
        self.env[n.outputs[0]] = out

    def reshape_dyn(self, n: Node) -> None:
        """At the plan's shapes, a reshape to the recorded output shape (a view of a dense input)."""
        src = self.materialize(self.env[n.inputs[0]], n.outputs[0])
        self.env[n.outputs[0]] = dense(src.buf, self.shape_of(n.outputs[0]), src.offset)

    def expand_dyn(self, n: Node) -> None:
        """At the plan's shapes, a broadcast view (stride 0 on the expanded axes)."""
        self.env[n.outputs[0]] = self.aligned(self.env[n.inputs[0]], self.shape_of(n.outputs[0]))

    def plan_constant(self, n: Node) -> None:
        """Values that depend on sizes only (``torch.full(x.shape[:1], T - 1)``, a range, integer
        arithmetic on them): at the plan's shapes they are constants, stored once from the
        recorded run (integer ones too, e.g. sequence lengths)."""
        assert self.constant is not None
        for out in n.outputs:
            dtype = self.types[out].dtype
            if dtype not in ("int64", "float32"):
                raise UnsupportedError(f"{n.label}: a {dtype} constant")
            buf, shape = f"k{len(self.constants)}_{self.prefix}", self.shape_of(out)
            self.buffers.append(Buffer(buf, Const(max(1, math.prod(shape))), "arg",
                                       "int64" if dtype == "int64" else "float"))
            self.constants.append((buf, out))
            self.env[out] = dense(buf, shape)
            self.folded.add(out)

    def flip(self, n: Node) -> None:
        src = self.env[n.inputs[0]]
        axis = n.attr("axis") % len(src.shape)
        strides = list(src.strides)
        strides[axis] = -strides[axis]
        self.env[n.outputs[0]] = View(src.buf, add(src.offset, (src.shape[axis] - 1) * src.strides[axis]),
                                      src.shape, tuple(strides))

    def embedding(self, n: Node) -> None:
        """``y[..., j] = table[idx[...], j]``: the index is an integer load inside the address."""
        idx, table = self.env[n.inputs[0]], self.env[n.inputs[1]]
        shape = self.shape_of(n.outputs[0])
        out = self.fresh(n.outputs[0], shape)
        self.index_bounds.append((idx.buf, table.shape[0]))  # checked by the runtime: C cannot raise

        def body(ix: tuple[Expr, ...]) -> list[Stmt]:
            row = Load(idx.buf, linear_index(list(zip(ix[:-1], idx.strides, strict=True)), idx.offset))
            src = Load(table.buf, linear_index([(row, table.strides[0]), (ix[-1], table.strides[1])], table.offset))
            return [Store(out.buf, out.load(ix).index, src)]

        self.out_stmts.extend(loop_nest(shape, "i", body))
        self.env[n.outputs[0]] = out


def program_kernel(name: str, buffers: list[Buffer], body: list[Stmt]) -> Kernel:
    """The whole-model kernel: one scalar argument, ``W`` (the threads its parallel ops may use;
    every size is a constant of the shape it was built for); ``arg`` buffers first (inputs,
    outputs, weights, the kernel-call table, weight panels), then ``work``, then per-thread
    ``local`` tiles."""
    ordered = [b for space in ("arg", "work", "local") for b in buffers if b.space == space]
    return Kernel(name, ("W",), tuple(ordered), tuple(body), meta={"path": "program"})
