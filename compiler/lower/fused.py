"""The fused path: gate-structured cells as tiled GEMMs with the gate math in their epilogue.

For the cells :func:`rnnc.lower.gates.analyse_gates` recognises (LSTM, GRU, Elman, minGRU,
minLSTM and user cells of the same gate shape) the hidden units are cut into tiles of ``J``; a tile owns rows
``g*H + j`` of every gate, so its weight slice is packed contiguously (``[tiles, K, G, J]``) and
the whole step of a tile needs only the previous hidden state:

    for each time chunk:  xp[tile] = x[chunk] @ Wx[tile]        (blocked GEMM, all steps at once)
      for each step:      acc = h_prev @ Wh[tile]; gate math; write h_next, y, other states
                          grid barrier (h_next is read by every tile at the next step)

The recurrent hidden state is double-buffered (``hb[2, B, H]``), so one barrier per step is
enough.  Weight-only ``qlinear`` (``act="none"``, per-channel scales) counts as a gate linear:
its int8 codes are packed as int8 (or widened once to floats, ``Knobs.widen_codes``) and its row
scale is applied in the epilogue;
other ``qlinear`` forms make the cell take the generic path.

``Knobs.reduce_inner`` picks the GPU loop order (one output per thread, reduction
inside) or the CPU one (reduction outside, a register tile of outputs inside).  On the GPU the
recurrent GEMM is :mod:`rnnc.lower.warp_gemm` (warps own weight rows, lanes split K, the
Schedule's ``register_k`` columns of each row in registers, the rest in shared memory).
"""

from __future__ import annotations

from rnnc.errors import InfeasibleError
from rnnc.ir.graph import Cell
from rnnc.lower.gates import GateLinear, GatePlan, hosted, in_kernel_projections
from rnnc.lower.knobs import Knobs
from rnnc.lower.layer import SCALARS, common_buffers, live, time_index
from rnnc.lower.loopnest import (
    Alloc,
    Barrier,
    Bin,
    Buffer,
    Comment,
    Const,
    Expr,
    If,
    Kernel,
    Let,
    Load,
    Loop,
    MicroGemm,
    Pack,
    Ref,
    Select,
    Stmt,
    Store,
    Var,
    add,
    linear_index,
    mul,
)
from rnnc.lower.stepgraph import scalar_op
from rnnc.lower.warp_gemm import WarpSplit, load_registers, load_shared, split_for, warp_gemm

#: partial sums of the one-row GEMV: 4 output vectors x 2 partials = 8 independent FMA chains,
#: enough for 2 FMA pipes x 4 cycles latency, and 8 of 32 (16 AVX2) vector registers
_GEMV_PARTS = 2
#: accumulator sets of the int8 one-row micro-kernel (its widening adds two instructions per
#: weight vector, so more independent chains are needed to keep the FMA units busy)
_INT8_GEMV_PARTS = 4


def _sum(terms: list[Expr]) -> Expr:
    total = terms[0]
    for t in terms[1:]:
        total = Bin("add", total, t)
    return total


def lower_fused(cell: Cell, plan: GatePlan, kn: Knobs, name: str) -> Kernel:
    return _Fused(cell, plan, kn).kernel(name)


class _Fused:
    def __init__(self, cell: Cell, plan: GatePlan, kn: Knobs) -> None:
        self.cell, self.plan, self.kn = cell, plan, kn
        self.h, self.j = plan.hidden, kn.tile_hidden
        self.nt = self.h // self.j
        self.bufs: list[Buffer] = common_buffers(cell)
        self.packs: list[Pack] = []
        self.splits: dict[str, WarpSplit] = {}  # GPU: recurrent linear -> register/shared split
        #: float input projections the host computes (``Knobs.host_gemm``): buffer -> weight param
        #: (CPU: oneDNN/MKL through torch; GPU: cuBLAS through torch, off the recurrent critical path)
        self.hosted: dict[str, str] = {}
        for lin in plan.linears:
            if hosted(lin, kn):
                self.hosted[lin.out] = lin.weight
                self.bufs.append(Buffer(f"xg_{lin.out}", mul(mul(Var("T"), Var("B")), Const(lin.gates * self.h)),
                                        doc=f"x @ {lin.weight}.T for all steps, [T, B, G*H], computed by the host"))
                continue
            # weights packed per tile: [tiles, K, G, J]
            shape = (lin.gates, self.nt, self.j, lin.k)
            self.packs.append(Pack(f"w_{lin.out}", f"p_{lin.weight}", shape, (1, 3, 0, 2)))
            self.bufs.append(Buffer(f"w_{lin.out}", Const(lin.gates * self.h * lin.k), dtype=self.wdtype(lin),
                                    doc=f"{lin.weight} packed [tiles, K, G, J]"))

    # ------------------------------------------------------------------ helpers
    def wdtype(self, lin: GateLinear) -> str:
        """Element type of a packed weight: int8 codes for quantized linears (unless the knobs
        widen them once at packing, ``Knobs.widen_codes``), else storage."""
        return "int8" if lin.scale and not self.kn.widen_codes else "param"

    def local(self, name: str, size: int, dtype: str = "float") -> Alloc:
        self.bufs.append(Buffer(name, Const(size), "local", dtype, writable=True))
        return Alloc(name)

    def acc_rows(self, mb: int) -> int:
        """Rows of a GEMM accumulator array: the one-row GEMV keeps ``_GEMV_PARTS`` partial rows (CPU)."""
        return mb if self.kn.reduce_inner else max(mb, _GEMV_PARTS)

    def tiles_loop(self, body: tuple[Stmt, ...], serpentine: Expr | None = None) -> Stmt:
        """This worker's tiles: ``tile = w + k * W`` (static, so a tile's weights stay in one
        core's cache, or in one block's shared memory, for the whole sequence).

        ``serpentine`` (CPU steps): when it is 1 the tiles run in reverse order.  A worker whose
        recurrent slice is larger than its L2 streams it every step; with LRU caches a pass in
        the same order finds nothing left, while alternating the direction starts each step on
        the tiles the previous one touched last, so about one L2 of weights is reused per step
        (LSTM H=512 on two 1 MiB-L2 cores: -20% time per step, measured)."""
        per = Bin("/", add(Const(self.nt), Bin("-", Var("W"), Const(1))), Var("W"))
        kt: Expr = Var("kt")
        if serpentine is not None:
            kt = Select(serpentine, Bin("-", Bin("-", per, Const(1)), kt), kt)
        tile = add(Var("w"), mul(kt, Var("W")))
        return Loop("kt", per, (Let("tile", tile, is_int=True), If(Bin("<", Var("tile"), Const(self.nt)), body)))

    def gemm(self, acc: str, rows: int, gj: int, kdim: int, a_of, w_of, int8: bool = False) -> list[Stmt]:
        """``acc[m, q] = sum_k a(m, k) * w(k, q)`` for ``m < rows``, ``q < gj``.

        ``int8``: ``w`` loads int8 codes; the CPU micro-kernels widen each vector of codes once
        in registers (the loop forms, ``ukernel=0`` or 16-bit storage, widen per use).  ``acc``
        must hold ``max(rows, _GEMV_PARTS) * gj`` floats.
        """
        m, q, k = Var("m"), Var("q"), Var("k")
        if self.kn.reduce_inner:  # GPU: one output per thread, the reduction inside
            mq = Var("mq")
            return [Loop("mq", Const(rows * gj), (
                Let("m", Bin("/", mq, Const(gj)), is_int=True), Let("q", Bin("%", mq, Const(gj)), is_int=True),
                Let("dot", Const(0.0, True)),
                Loop("k", Const(kdim), (Let("dot", Bin("add", Ref("dot"), Bin("mul", a_of(m, k), w_of(k, q)))),)),
                Store(acc, mq, Ref("dot"))), "vector")]
        cpu_micro = self.kn.ukernel and self.kn.dtype == "float32"
        if cpu_micro and int8 and rows == 1:
            # int8 GEMV: the micro-kernel widens each code vector once in registers; gcc's loop
            # form below widens through memory-sized steps (0.6-0.9x the fp32 kernel at B=1)
            parts = next(p for p in (_INT8_GEMV_PARTS, 2, 1) if kdim % p == 0)
            return [self.micro(acc, rows, gj, kdim, a_of, w_of, "int8", parts)]
        if rows == 1:
            # one row (B=1 GEMV): the weights must stream as one contiguous pass, so the vector of
            # outputs is innermost; a single accumulator per output vector is FMA-latency bound, so
            # ``parts`` partial sums over interleaved k (register arrays of ``gj``) hide the latency
            parts = next(p for p in (_GEMV_PARTS, 2, 1) if kdim % p == 0)
            if parts > 1:
                return [*self._gemm_rows(acc, parts, gj, kdim // parts,
                                         lambda p, k: a_of(Const(0), add(mul(k, parts), p)),
                                         lambda k, q, p: w_of(add(mul(k, parts), p), q), "kk"),
                        Loop("q", Const(gj), (Store(acc, q, _sum([Load(acc, add(p * gj, q)) for p in range(parts)])),),
                             "vector")]
        # several rows: a register tile of ``rows x gj`` accumulators.  As loops, gcc keeps the
        # array in vector registers but reloads each weight vector once per row (loading it once
        # for all rows spills the accumulators or stops vectorising, 1.4-6x slower), so float
        # tiles are one micro-kernel call (``Knobs.ukernel``, rnnc.backends.cstyle.ukernels).
        if cpu_micro:
            return [self.micro(acc, rows, gj, kdim, a_of, w_of, "int8" if int8 else "float")]
        return self._gemm_rows(acc, rows, gj, kdim, a_of, lambda k, q, _m: w_of(k, q), "k")

    @staticmethod
    def micro(acc: str, rows: int, gj: int, kdim: int, a_of, w_of, wtype: str = "float", parts: int = 1) -> MicroGemm:
        """The :class:`MicroGemm` of ``acc = a @ w``.  Every caller's ``a_of(m, k)`` reads
        ``buf[row_m + k]`` and ``w_of(k, q)`` reads ``buf[base + k*gj + q]``, so the loads at
        ``k = q = 0`` give the row offsets and the weight panel's base."""
        firsts = [a_of(Const(m), Const(0)) for m in range(rows)]
        w0 = w_of(Const(0), Const(0))
        assert all(isinstance(f, Load) and f.buf == firsts[0].buf for f in firsts) and isinstance(w0, Load)
        return MicroGemm(acc, rows, gj, kdim, firsts[0].buf, tuple(f.index for f in firsts), w0.buf, w0.index,
                         wtype, parts)

    @staticmethod
    def _gemm_rows(acc: str, rows: int, gj: int, kdim: int, a_of, w_of, kvar: str, init=None) -> list[Stmt]:
        """``acc[m, :] = init(m, :) + sum_k a(m, k) * w(k, :, m)``: a register tile of ``rows x gj``
        outputs (gcc keeps the array in vector registers when it is at most ~16 of them), the
        reduction outside, one broadcast per row and step of k.  ``init``: 0 when None."""
        m, q, k = Var("m"), Var("q"), Var(kvar)
        start = init(m, q) if init is not None else Const(0.0, True)
        return [
            Loop("m", Const(rows), (Loop("q", Const(gj), (Store(acc, add(mul(m, gj), q), start),),
                                         "vector"),), "unroll"),
            Loop(kvar, Const(kdim), (Loop("m", Const(rows), (
                Let("a", a_of(m, k)),
                Loop("q", Const(gj), (Store(acc, add(mul(m, gj), q), Bin("mul", Ref("a"), w_of(k, q, m)), True),),
                     "vector")), "unroll"),)),
        ]

    # ------------------------------------------------------------------ GPU resident weights
    def warp_resident(self, lin: GateLinear) -> list[Stmt]:
        """Declare the register part (``g_``) and shared part (``r_``) of a recurrent weight tile;
        int8 codes stay in shared memory (the register path widens storage floats only)."""
        kn = self.kn
        sp = split_for(lin.gates * self.j, lin.k, kn.threads, 0 if lin.scale else kn.register_k)
        self.splits[lin.out] = sp
        out: list[Stmt] = []
        if sp.shared_k:
            out.append(self.local(f"r_{lin.out}", sp.rows * sp.shared_k, self.wdtype(lin)))
        if sp.register_k:
            self.bufs.append(Buffer(f"g_{lin.out}", Const(sp.threads * sp.slots), "register", "param",
                                    writable=True, doc="register-resident weights [thread, slot]"))
            out.append(Alloc(f"g_{lin.out}"))
        return out

    def warp_copy_in(self, lin: GateLinear) -> list[Stmt]:
        sp, gj = self.splits[lin.out], lin.gates * self.j

        def w_of(k: Expr, q: Expr) -> Expr:
            return Load(f"w_{lin.out}", add(mul(Var("tile"), lin.k * gj), add(mul(k, gj), q)))

        return [*load_registers(sp, f"g_{lin.out}", w_of), *load_shared(sp, f"r_{lin.out}", w_of)]

    # ------------------------------------------------------------------ phases
    def kernel(self, name: str) -> Kernel:
        kn, plan, h, j, nt = self.kn, self.plan, self.h, self.j, self.nt
        mb, tc = kn.batch_block, kn.time_chunk
        gmax = plan.gates
        if kn.resident and kn.workers < nt:
            # one resident copy per worker holds one tile's weights: a worker that looped over two
            # tiles would run the second with the first's weights (a wrong kernel, not a slow one)
            raise InfeasibleError(f"the fused {self.cell.kind} kernel keeps each tile's recurrent weights "
                                  f"resident in its worker: {nt} tiles of {j} units need {nt} workers "
                                  f"(blocks), the schedule gives {kn.workers}")
        b_var = Var("B")
        body: list[Stmt] = []
        # double-buffered recurrent states: hb_<s>[2, B, H]
        for s in plan.recurrent_states:
            self.bufs.append(Buffer(f"hb_{s}", mul(Const(2 * h), b_var), "work", writable=True))
        xlin = [lin for lin in plan.linears if lin.src == "x" and lin.out not in self.hosted]
        rows_pad = Bin("*", Bin("/", add(mul(Const(tc), b_var), Const(mb - 1)), Const(mb)), Const(mb))
        for lin in xlin:
            self.bufs.append(Buffer(f"xp_{lin.out}", mul(Const(nt * lin.gates * j), rows_pad),
                                    "work", writable=True, doc="input projection of one time chunk, per tile"))
        resident: dict[str, str] = {}
        prologue: list[Stmt] = []
        if kn.resident:
            for lin in plan.linears:
                if lin.src != "x":
                    buf = f"r_{lin.out}"
                    resident[lin.out] = buf
                    if kn.reduce_inner:  # GPU: registers + shared memory, split per the Schedule
                        prologue += self.warp_resident(lin)
                    else:
                        prologue.append(self.local(buf, lin.k * lin.gates * j, self.wdtype(lin)))
        # copy initial recurrent states into hb[0] (own tiles' columns), then the resident weights
        copy_in: list[Stmt] = []
        for s in plan.recurrent_states:
            copy_in.append(Loop("bj", mul(b_var, Const(j)), (
                Let("bi", Bin("/", Var("bj"), Const(j)), is_int=True),
                Let("jj", Bin("%", Var("bj"), Const(j)), is_int=True),
                Store(f"hb_{s}", add(mul(Var("bi"), h), add(mul(Var("tile"), j), Var("jj"))),
                      Load(f"s_{s}", add(mul(Var("bi"), h), add(mul(Var("tile"), j), Var("jj")))))), "vector"))
        for lin in plan.linears:
            if lin.out in self.splits:
                copy_in += self.warp_copy_in(lin)
            elif lin.out in resident:
                size = lin.k * lin.gates * j
                copy_in.append(Loop("e", Const(size), (Store(resident[lin.out], Var("e"), Load(
                    f"w_{lin.out}", add(mul(Var("tile"), size), Var("e")))),), "vector"))
        prologue.append(self.tiles_loop(tuple(copy_in)))
        prologue.append(Barrier("grid"))
        # per chunk: input projections of this worker's tiles
        c = Var("c")
        nsteps = Bin("imin", Const(tc), Bin("-", Var("T"), mul(c, tc)))
        proj: list[Stmt] = []
        for lin in xlin:
            gj = lin.gates * j
            acc = f"ax_{lin.out}"
            proj.append(self.local(acc, self.acc_rows(mb) * gj))
            nrows = mul(nsteps, b_var)

            def x_row(m: Expr, nrows: Expr = nrows) -> Expr:
                """Element offset of projection row ``r0 + m`` (clamped) in x."""
                r = Bin("imin", add(Var("r0"), m), Bin("-", nrows, Const(1)))
                t = time_index(add(mul(c, tc), Bin("/", r, b_var)))
                return add(mul(t, Var("xs_t")), mul(Bin("%", r, b_var), Var("xs_b")))

            def x_of(m: Expr, k: Expr, x_row=x_row) -> Expr:
                return Load("x", add(x_row(m), k))

            def x_one(_m: Expr, k: Expr) -> Expr:  # single row: offset bound once as ``xr``
                return Load("x", add(Var("xr"), k))

            wbase = mul(Var("tile"), lin.k * gj)
            xbase = mul(mul(Var("tile"), gj), rows_pad)

            def w_x(k: Expr, q: Expr, wb: Expr = wbase, gj: int = gj, w: str = f"w_{lin.out}") -> Expr:
                return Load(w, add(wb, add(mul(k, gj), q)))

            def rows_of(rows: int, acc: str = acc, gj: int = gj, xbase: Expr = xbase, x_of=x_of, w_x=w_x,
                        lin: GateLinear = lin) -> list[Stmt]:
                return [*self.gemm(acc, rows, gj, lin.k, x_of if rows > 1 else x_one, w_x, self.wdtype(lin) == "int8"),
                        Loop("mq", Const(rows * gj), (Store(f"xp_{lin.out}", add(xbase, add(mul(Var("r0"), gj),
                                                                                            Var("mq"))),
                                                            Load(acc, Var("mq"))),), "vector")]

            # full blocks of ``mb`` rows, then single rows (T=1, B=1 must not compute 4 rows)
            full = Bin("/", nrows, Const(mb))
            one = [Let("xr", x_row(Const(0)), is_int=True)] if mb == 1 else []  # rows_of(1) reads ``xr``
            proj.append(Loop("rb", full, (Let("r0", mul(Var("rb"), mb), is_int=True), *one, *rows_of(mb))))
            if mb > 1:
                proj.append(Loop("rr", Bin("-", nrows, mul(full, mb)), (
                    Let("r0", add(mul(full, mb), Var("rr")), is_int=True),
                    Let("xr", x_row(Const(0)), is_int=True), *rows_of(1))))
        # per step: recurrent GEMMs of this worker's tiles, then the gate math
        s_pos = add(mul(c, tc), Var("tt"))
        par = Bin("&", s_pos, Const(1))
        step: list[Stmt] = [Let("t", time_index(s_pos), is_int=True)]
        tile_step: list[Stmt] = []
        for lin in plan.linears:
            if lin.src == "x":
                continue
            gj = lin.gates * j
            acc = f"acc_{lin.out}"
            tile_step.append(self.local(acc, self.acc_rows(mb) * gj))
        # full batch blocks of ``mb`` rows, then single rows: B=1 must not pay for a 4-row tile
        nfull = Bin("/", b_var, Const(mb))
        kb = self.k_block(mb, resident)
        if kb:
            tile_step += self.kblocked_rows(mb, kb, rows_pad, par)
        else:
            tile_step.append(Loop("bq", nfull, (Let("b0", mul(Var("bq"), mb), is_int=True),
                                                *self.row_block(mb, rows_pad, par, resident))))
        if mb > 1:
            tile_step.append(Loop("br", Bin("-", b_var, mul(nfull, mb)), (
                Let("b0", add(mul(nfull, mb), Var("br")), is_int=True), *self.row_block(1, rows_pad, par, resident))))
        step.append(self.tiles_loop(tuple(tile_step), None if kn.reduce_inner else par))
        step.append(Barrier("grid"))
        chunk = Loop("c", Bin("/", add(Var("T"), Const(tc - 1)), Const(tc)), (
            self.tiles_loop(tuple(proj)) if proj else Comment("no input projection"),
            Barrier("block"),  # CUDA: the gate math reads projections other threads wrote
            Loop("tt", nsteps, tuple(step))))
        body = [Loop("w", Var("W"), (*prologue, chunk), "parallel")]
        meta = {"path": "fused", "knobs": kn.to_dict(), "gates": gmax, "tiles": nt, "cell": self.cell.kind,
                "hidden": h, "recurrent_states": list(plan.recurrent_states),
                "host_gemm": {f"xg_{out}": f"p_{w}" for out, w in self.hosted.items()},
                "projections": in_kernel_projections(plan, kn)}
        return Kernel(name, SCALARS, tuple(self.bufs), tuple(body), tuple(self.packs), meta)

    def row_block(self, mb: int, rows_pad: Expr, par: Expr, resident: dict[str, str]) -> list[Stmt]:
        """Recurrent GEMMs and gate math for batch rows ``b0 .. b0+mb`` of the current tile."""
        h, b_var, bb = self.h, Var("B"), Var("b0")
        blk: list[Stmt] = [Let("bmax", Bin("-", b_var, Const(1)), is_int=True)]
        for lin in self.plan.linears:
            if lin.src == "x":
                continue
            gj = lin.gates * self.j

            def h_of(m: Expr, k: Expr, hsrc: str = f"hb_{lin.src}") -> Expr:
                bi = Bin("imin", add(bb, m), Var("bmax"))
                return Load(hsrc, add(mul(par, mul(b_var, h)), add(mul(bi, h), k)))

            if lin.out in self.splits:
                sp = self.splits[lin.out]
                blk += warp_gemm(sp, f"acc_{lin.out}", mb, f"g_{lin.out}", resident[lin.out], h_of)
                continue
            if lin.out in resident:
                def w_of(k: Expr, q: Expr, buf: str = resident[lin.out], gj: int = gj) -> Expr:
                    return Load(buf, add(mul(k, gj), q))
            else:
                def w_of(k: Expr, q: Expr, lin: GateLinear = lin, gj: int = gj) -> Expr:
                    return Load(f"w_{lin.out}", add(mul(Var("tile"), lin.k * gj), add(mul(k, gj), q)))
            blk += self.gemm(f"acc_{lin.out}", mb, gj, lin.k, h_of, w_of, self.wdtype(lin) == "int8")
        if self.kn.reduce_inner:
            blk.append(Barrier("block"))
        blk.append(self.epilogue(mb, rows_pad, par))
        if self.kn.reduce_inner:
            blk.append(Barrier("block"))
        return blk

    def k_block(self, mb: int, resident: dict[str, str]) -> int:
        """The recurrent GEMMs' K block (CPU, full row blocks of ``mb > 1`` rows), 0 = none.

        ``Knobs.k_block`` (the Schedule's ``k_block``) smaller than K makes the loop over K blocks
        the outermost of a tile's step: every row block then reuses one L1-sized panel of the
        tile's weights, instead of re-reading the whole tile from L2 per row block; partial sums
        wait in ``kacc_`` (a [tiles, B, G*J] work buffer) between blocks.  One row has nothing
        to reuse, so B=1 (and GPU kernels) never block."""
        kn = self.kn
        rec = [lin for lin in self.plan.linears if lin.src != "x"]
        if kn.reduce_inner or resident or mb < 2 or not rec or not 0 < kn.k_block:
            return 0
        kb = min(kn.k_block, min(lin.k for lin in rec))
        return kb if all(lin.k % kb == 0 and lin.k > kb for lin in rec) else 0

    def kblocked_rows(self, mb: int, kb: int, rows_pad: Expr, par: Expr) -> list[Stmt]:
        """Full row blocks of this tile with K blocked by ``kb`` (see :meth:`k_block`), then
        their gate math from ``kacc_``."""
        h, b_var, bb, m, q = self.h, Var("B"), Var("b0"), Var("m"), Var("q")
        kblk = Var("kb")
        inner: list[Stmt] = [Let("bmax", Bin("-", b_var, Const(1)), is_int=True)]
        for lin in self.plan.linears:
            if lin.src == "x":
                continue
            gj, acc, kacc = lin.gates * self.j, f"acc_{lin.out}", f"kacc_{lin.out}"
            self.bufs.append(Buffer(kacc, mul(Const(self.nt * gj), b_var), "work", writable=True,
                                    doc="partial sums of the K-blocked recurrent GEMM [tiles, B, G*J]"))

            def kacc_at(mm: Expr, qq: Expr, kacc: str = kacc, gj: int = gj) -> Expr:
                return add(mul(add(mul(Var("tile"), b_var), add(bb, mm)), gj), qq)

            def h_of(mm: Expr, k: Expr, hsrc: str = f"hb_{lin.src}") -> Expr:
                bi = Bin("imin", add(bb, mm), Var("bmax"))
                return Load(hsrc, add(mul(par, mul(b_var, h)), add(mul(bi, h), add(mul(kblk, kb), k))))

            def w_of(k: Expr, qq: Expr, _m: Expr, lin: GateLinear = lin, gj: int = gj) -> Expr:
                return Load(f"w_{lin.out}", add(mul(Var("tile"), lin.k * gj), add(mul(add(mul(kblk, kb), k), gj), qq)))

            def init(mm: Expr, qq: Expr, kacc: str = kacc, kacc_at=kacc_at) -> Expr:
                return Select(Bin("==", kblk, Const(0)), Const(0.0, True), Load(kacc, kacc_at(mm, qq)))

            inner += self._gemm_rows(acc, mb, gj, kb, h_of, w_of, "k", init)
            inner.append(Loop("m", Const(mb), (Loop("q", Const(gj), (
                Store(kacc, kacc_at(m, q), Load(acc, add(mul(m, gj), q))),), "vector"),), "unroll"))
        nfull = Bin("/", b_var, Const(mb))
        rows = Loop("bq", nfull, (Let("b0", mul(Var("bq"), mb), is_int=True), *inner))
        gate = Loop("bq", nfull, (Let("b0", mul(Var("bq"), mb), is_int=True),
                                  self.epilogue(mb, rows_pad, par, kacc=True)))
        k_total = min(lin.k for lin in self.plan.linears if lin.src != "x")
        return [Loop("kb", Const(k_total // kb), (rows,)), gate]

    def epilogue(self, mb: int, rows_pad: Expr, par: Expr, kacc: bool = False) -> Stmt:
        """Gate math for rows ``b0 .. b0+mb`` and this tile's units, fused into one loop
        (``kacc``: the recurrent sums are in ``kacc_``, see :meth:`kblocked_rows`)."""
        cell, plan, h, j = self.cell, self.plan, self.h, self.j
        b_var, bb = Var("B"), Var("b0")
        m, jj = Var("m"), Var("jj")
        b = add(bb, m)
        unit = add(mul(Var("tile"), j), jj)
        stmts: list[Stmt] = []
        env: dict[str, list[Expr]] = {}
        lins = {lin.out: lin for lin in plan.linears}
        for s in cell.states:
            src = f"hb_{s.name}" if s.name in plan.recurrent_states else f"s_{s.name}"
            off = mul(par, mul(b_var, h)) if s.name in plan.recurrent_states else Const(0)
            env[s.name] = [Load(src, add(off, add(mul(b, h), unit)))]
        params = dict(cell.step.params)
        for p, pt in params.items():
            if pt.shape == (h,):
                env[p] = [Load(f"p_{p}", unit)]
        n_let = 0

        def bind(e: Expr) -> Expr:
            nonlocal n_let
            n_let += 1
            stmts.append(Let(f"e{n_let}", e))
            return Ref(f"e{n_let}")

        for n in cell.step.nodes:
            if n.op in ("linear", "qlinear"):
                lin = lins[n.outputs[0]]
                vals = []
                for g in range(lin.gates):
                    if lin.out in self.hosted:  # [T, B, G*H] in the weight's own row order
                        row = add(mul(Var("t"), b_var), b)
                        v: Expr = Load(f"xg_{lin.out}", add(mul(row, lin.gates * h), add(g * h, unit)))
                    elif lin.src == "x":
                        gj = lin.gates * j
                        row = add(mul(Var("tt"), b_var), b)
                        v = Load(f"xp_{lin.out}", linear_index([(Var("tile"), mul(gj, rows_pad)), (row, gj),
                                                                      (g, j)], jj))
                    else:
                        gj = lin.gates * j
                        v = Load(f"kacc_{lin.out}", add(mul(add(mul(Var("tile"), b_var), b), gj), add(g * j, jj))) \
                            if kacc else Load(f"acc_{lin.out}", add(mul(m, gj), add(g * j, jj)))
                    if lin.scale:
                        v = Bin("mul", v, Load(f"p_{lin.scale}", add(g * h, unit)))
                    if lin.bias:
                        v = Bin("add", v, Load(f"p_{lin.bias}", add(g * h, unit)))
                    vals.append(bind(v))
                env[n.outputs[0]] = vals
            elif n.op == "const":
                env[n.outputs[0]] = [Const(float(n.attr("value")), True)]
            elif n.op == "split":
                src, start = env[n.inputs[0]], 0
                for o, sz in zip(n.outputs, n.attr("sizes"), strict=True):
                    env[o] = src[start:start + sz // h]
                    start += sz // h
            else:
                ins = [env[i] for i in n.inputs]
                width = max(len(v) for v in ins)
                env[n.outputs[0]] = [bind(scalar_op(n, [v[g] if len(v) > 1 else v[0] for v in ins]))
                                     for g in range(width)]
        outs = dict(cell.step.outputs)
        ydst = add(add(mul(Var("t"), Var("ys_t")), mul(b, Var("ys_b"))), add(Var("y_off"), unit))
        nxt = Bin("-", Const(1), par)

        def stores(alive: Expr | None) -> list[Stmt]:
            """The step's writes: new values where ``alive`` (None: known alive), old ones past a
            sequence's length (``y`` zero, states kept)."""
            out: list[Stmt] = []
            for dst, val, old in [("y", env[outs["y"]][0], Const(0.0, True))] + [
                    (s.name, env[outs[s.name]][0], env[s.name][0]) for s in cell.states]:
                v = val if alive is None else Select(alive, val, old)
                if dst == "y":
                    out.append(Store("y", ydst, v))
                    continue
                out.append(Store(f"s_{dst}", add(mul(b, h), unit), v))
                if dst in plan.recurrent_states:
                    out.append(Store(f"hb_{dst}", add(mul(nxt, mul(b_var, h)), add(mul(b, h), unit)), v))
            return out

        if self.kn.reduce_inner:
            inner: Stmt = Loop("mj", Const(mb * j), (
                Let("m", Bin("/", Var("mj"), Const(j)), is_int=True), Let("jj", Bin("%", Var("mj"), Const(j)),
                                                                           is_int=True),
                If(Bin("<", b, b_var), (*stmts, *stores(live(Var("t"), b))))), "vector")
            return inner
        # CPU: liveness is uniform over the vector loop of one row, so it picks one of two loops
        # instead of a select per store: gcc if-converts ``s = alive ? new : s`` into masked
        # stores, and the masked reloads behind them miss store forwarding (LSTM B=16 H=256:
        # ~15 % of the kernel's cycles, measured with perf); rows past their length only copy
        dead = [Store("y", ydst, Const(0.0, True))] + [
            Store(f"hb_{s.name}", add(mul(nxt, mul(b_var, h)), add(mul(b, h), unit)), env[s.name][0])
            for s in cell.states if s.name in plan.recurrent_states]
        return Loop("m", Const(mb), (If(Bin("<", b, b_var), (If(live(Var("t"), b), (
            Loop("jj", Const(j), (*stmts, *stores(None)), "vector"),), (
            Loop("jj", Const(j), tuple(dead), "vector"),)),)),), "unroll")
