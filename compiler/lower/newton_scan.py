"""The linear recurrence of one Newton step as a chunked parallel scan over CPU threads (C dialect).

Why: each Newton iteration of ``rnnc.lower.newton`` solves ``s_t = A_t s_{t-1} + b_t`` for all
t (``A_t`` the cell's Jacobian, ``[D, D]``, or its diagonal).  The torch reference does that
with a Hillis-Steele scan (log T sweeps over the whole sequence); on a CPU with W cores the
work-efficient form is a chunked scan: each worker owns T/W consecutive steps and

1. folds its chunk with a zero initial state -- the chunk's end state ``e_w`` and its transition
   ``P_w = A_last ... A_first`` (full: ``[D, D]`` matrix products; diag: elementwise);
2. after one barrier, composes the chunks before it into its carry-in
   ``h_w = P_{w-1} (... (P_0 0 + e_0) ...) + e_{w-1}`` (W - 1 small steps, no second barrier);
3. reruns its chunk from ``h_w``, writing every ``s_t``.

Work: sequential solving costs T·D² (full) or T·D (diag); this costs T·D³/W + 2·T·D²/W (full) or
3·T·D/W (diag) per worker, so the full method gains only when W exceeds D -- the cost model in
``constraints/newton.py`` says when.  ``b_0`` already holds ``A_1 s_0`` (the solve's
initial state), so the scan starts from zero.  Buffers: ``a [T, B, D, D]`` or ``[T, B, D]``,
``b``/``s [T, B, D]``, scratch ``P [W, B, D, D or D]``, ``e [W, B, D]`` and ``M [W, D, D or D]``
passed in by the runner (heap, not the threads' stacks).
"""

from __future__ import annotations

from rnnc.lower.loopnest import (
    Alloc,
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
    Ref,
    Stmt,
    Store,
    Var,
    add,
    fconst,
    mul,
)

SCALARS = ("B", "T", "W")


def scan_kernel(name: str, full: bool, dim: int) -> Kernel:
    """The scan of one Newton step for states of ``dim`` floats (``full``: matrix Jacobians)."""
    d, j, k, i, r, c = (Var(n) for n in "djkirc")
    D = dim
    t = add(Var("t0"), i)

    def row(step: Expr) -> Expr:  # (step, batch row) -> index of the [T, B, ...] rows
        return add(mul(step, Var("B")), r)

    def wrow(worker: Expr) -> Expr:  # (worker, batch row) -> index of the [W, B, ...] scratch rows
        return add(mul(worker, Var("B")), r)

    def p_at(worker: Expr, di: Expr, dj: Expr | None = None) -> Expr:
        return add(mul(add(mul(wrow(worker), D), di), D), dj) if full else add(mul(wrow(worker), D), di)

    per = D * D if full else D
    m0 = mul(Var("w"), per)  # this worker's copy of A_t or P_c in the scratch M (a D x D array
    # would not fit a thread's stack for wide states)

    def vec(var: Var, body: tuple[Stmt, ...]) -> Stmt:
        return Loop(var.name, Const(D), body, "vector")

    def apply(src: str, src_at: Expr, out: str, plus: Expr | None) -> tuple[Stmt, ...]:
        """``out = M src + plus`` for the state vector ``src`` (M = A_t, P_c; diag: elementwise)."""
        if not full:
            mv = Bin("mul", Load("M", add(m0, d)), Load(src, add(src_at, d)))
            return (vec(d, (Store(out, d, mv if plus is None else Bin("add", mv, plus)),)),)
        acc = (Let("acc", fconst(0.0) if plus is None else plus),
               Loop("j", Const(D), (Let("acc", Bin("add", Ref("acc"), Bin("mul", Load("M", add(m0, add(mul(d, D), j))),
                                                                              Load(src, add(src_at, j))))),)),
               Store(out, d, Ref("acc")))
        return (Loop("d", Const(D), acc),)

    def load_m(from_a: Expr | None, from_p: Expr | None) -> Stmt:
        """Copy A_t (or P_c) into the local M, so ``apply`` reads one layout."""
        src = (Load("a", add(mul(row(from_a), per), d)) if from_a is not None
               else Load("P", add(mul(wrow(from_p), per), d)))
        return Loop("d", Const(per), (Store("M", add(m0, d), src),), "vector")

    def copy(dst: str, dst_at: Expr, src: str) -> Stmt:
        return vec(d, (Store(dst, add(dst_at, d), Load(src, d)),))

    e_at = mul(wrow(Var("w")), D)
    # phase 1: the chunk's end state and transition, from zero
    if full:  # P = I
        p_init: Stmt = Loop("d", Const(D), (Loop("k", Const(D), (Store("P", p_at(Var("w"), d, k), fconst(0.0)),)),
                                            Store("P", p_at(Var("w"), d, d), fconst(1.0))))
    else:
        p_init = vec(d, (Store("P", p_at(Var("w"), d), fconst(1.0)),))
    if full:  # P <- A_t P through the local Q (column k of the product at a time)
        p_step: tuple[Stmt, ...] = (
            Loop("k", Const(D), (
                Loop("d", Const(D), (Store("V", d, Load("P", p_at(Var("w"), d, k))),), "vector"),
                *apply("V", Const(0), "Q", None),
                Loop("d", Const(D), (Store("P", p_at(Var("w"), d, k), Load("Q", d)),), "vector"),
            )),)
    else:
        p_step = (vec(d, (Store("P", p_at(Var("w"), d),
                                Bin("mul", Load("M", add(m0, d)), Load("P", p_at(Var("w"), d)))),)),)
    phase1 = Loop("r", Var("B"), (
        vec(d, (Store("e", add(e_at, d), fconst(0.0)),)),
        p_init,
        Loop("i", Var("n"), (
            load_m(t, None),
            *apply("e", e_at, "V", Load("b", add(mul(row(t), D), d))),
            copy("e", e_at, "V"),
            *p_step,
        )),
    ))
    # phases 2 and 3: the carry-in from the chunks before, then the chunk again from it
    phase3 = Loop("r", Var("B"), (
        vec(d, (Store("H", d, fconst(0.0)),)),
        Loop("c", Var("w"), (
            load_m(None, c),
            *apply("H", Const(0), "V", Load("e", add(mul(wrow(c), D), d))),
            vec(d, (Store("H", d, Load("V", d)),)),
        )),
        Loop("i", Var("n"), (
            load_m(t, None),
            *apply("H", Const(0), "V", Load("b", add(mul(row(t), D), d))),
            vec(d, (Store("H", d, Load("V", d)), Store("s", add(mul(row(t), D), d), Load("V", d)))),
        )),
    ))
    per_worker = (
        Let("L", Bin("/", add(Var("T"), Bin("-", Var("W"), Const(1))), Var("W")), is_int=True),
        Let("t0", mul(Var("w"), Var("L")), is_int=True),
        Let("n", Bin("imin", Var("L"), Bin("-", Var("T"), Var("t0"))), is_int=True),  # <= 0: an idle worker
        *[Alloc(b) for b in ("V", "H", *(("Q",) if full else ()))],
        If(Bin("<", Const(0), Var("n")), (phase1,)),
        Barrier("grid"),
        If(Bin("<", Const(0), Var("n")), (phase3,)),
    )
    rows = mul(Var("T"), Var("B"))
    bufs = (Buffer("a", mul(rows, per), doc=f"Jacobians [T, B, {'D, D' if full else 'D'}]"),
            Buffer("b", mul(rows, D), doc="offsets [T, B, D] (b_0 includes A_1 s_0)"),
            Buffer("s", mul(rows, D), writable=True, doc="the states s_t [T, B, D]"),
            Buffer("P", mul(mul(Var("W"), Var("B")), per), writable=True, doc="chunk transitions [W, B, ...]"),
            Buffer("e", mul(mul(Var("W"), Var("B")), D), writable=True, doc="chunk end states [W, B, D]"),
            Buffer("M", mul(Var("W"), per), writable=True, doc="per-worker copy of A_t or P_c [W, ...]"),
            Buffer("V", Const(D), "local"), Buffer("H", Const(D), "local"),
            *((Buffer("Q", Const(D), "local"),) if full else ()))
    meta = {"path": "newton_scan", "full": full, "dim": D, "knobs": {}}
    return Kernel(name, SCALARS, bufs, (Loop("w", Var("W"), per_worker, "parallel"),), (), meta)
