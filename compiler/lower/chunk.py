"""The chunkwise form of a matrix-state layer as a loop nest, for CPUs (the C dialect renders it;
GPU targets never take it -- a CUDA block's threads would race on its per-chunk scalar work, and
GPUs run the Triton chunkwise kernel instead).

Why a loop nest and not the generic step path: stepping ``S_t = diag(e^{g_t}) S_{t-1} + k_t v_tᵀ``
reads and writes the whole ``[DK, DV]`` state every step; the chunk form (``rnnc.ir.chunkform``
has the equations) touches it twice per chunk of ``C`` steps and spends the rest in row-times-
tile products over contiguous value rows, which vectorise.  The operands q, k, v, g, β come in
precomputed (the cell's state-free pre-nodes, evaluated on all ``T*B`` rows by the runner) in
time-major ``[T, B, NH, D]`` rows; the kernel writes the readouts o in the same layout and
updates the state ``[B, NH, DK, DV]`` in place.  One worker walks (batch row, head) units.

Per chunk (``n <= C`` live steps from ``t0``; b the cumulative log decay within the chunk):

1. ``bc``: b per step (per key channel, or one per head);
2. ``O_i = (q_i ⊙ e^{b_i}) S`` for every step (the inter-chunk part, before S changes);
3. ``A_is = Σ_d q_id k_sd e^{b_id - b_sd}`` for s ≤ i (the decayed causal scores; for decays,
   g ≤ 0, every exponent is ≤ 0 however strong they are);
4. gla: ``O_i += Σ_s A_is v_s``; delta: ``U_i = β_i (v_i - e^{b_i} Sᵀ k_i)`` then forward
   substitution ``U_i -= Σ_{s<i} β_i (k_i·k_s) e^{b_i - b_s} U_s`` (the UT transform's triangular
   solve) and ``O_i += Σ_s A_is U_s``;
5. ``S = diag(e^{b_n}) S + Σ_s (k_s ⊙ e^{b_n - b_s}) (v_s or U_s)ᵀ``.
"""

from __future__ import annotations

from rnnc.lower.loopnest import (
    Alloc,
    Bin,
    Buffer,
    Call,
    Const,
    Expr,
    If,
    Kernel,
    Let,
    Load,
    Loop,
    Ref,
    Select,
    Stmt,
    Store,
    Var,
    add,
    fconst,
    mul,
)

SCALARS = ("B", "T", "W")


def _fmul(a: Expr, b: Expr) -> Expr:
    return Bin("mul", a, b)


def _exp(e: Expr) -> Expr:
    return Call("exp", e)


def chunk_kernel(name: str, form: str, heads: int, dk: int, dv: int, gate: int, chunk: int) -> Kernel:
    """The kernel of one layer direction; ``gate`` is 0 (no decay), 1 (one per head) or ``dk``."""
    nh, c = heads, chunk
    gw = gate
    delta = form == "delta"
    i, s, d, j = Var("i"), Var("s"), Var("d"), Var("j")
    n = Var("n")

    def row(t: Expr) -> Expr:  # operand row of step t: ((t * B + b) * NH + h)
        return add(mul(add(mul(t, Var("B")), Var("b")), nh), Var("h"))

    def live(idx: Expr, body: tuple[Stmt, ...]) -> Stmt:
        return If(Bin("<", idx, n), body)

    def vec(body: tuple[Stmt, ...]) -> Stmt:
        return Loop("j", Const(dv), body, "vector")

    per_channel = gw == dk and dk > 1  # one decay per key channel (else one per head, or none)

    def decay(step: Expr, ch: Expr) -> Expr:  # b of a step (and key channel)
        return Load("bc", add(mul(step, gw), ch if per_channel else Const(0)))

    def ld(buf: str, r: Expr, width: int, col: Expr) -> Expr:
        return Load(buf, add(mul(r, width), col))

    s_at = add(Var("sb"), add(mul(d, dv), j))  # S[d, j] of this unit
    body: list[Stmt] = [Let("t0", mul(Var("c"), c), is_int=True),
                        Let("n", Bin("imin", Const(c), Bin("-", Var("T"), Var("t0"))), is_int=True)]
    if gw:  # 1. cumulative decays
        prev = Select(Bin("<", Const(0), i), Load("bc", add(mul(Bin("-", i, Const(1)), gw), d)), fconst(0.0))
        body.append(Loop("i", Const(c), (live(i, (
            Let("ri", row(add(Var("t0"), i)), is_int=True),
            Loop("d", Const(gw), (Store("bc", add(mul(i, gw), d), Bin("add", prev, ld("g", Var("ri"), gw, d))),)),
        )),)))
    # 2. inter-chunk outputs
    qe = ld("q", Var("ri"), dk, d)
    if gw:
        qe = _fmul(qe, _exp(decay(i, d)))
    body.append(Loop("i", Const(c), (live(i, (
        Let("ri", row(add(Var("t0"), i)), is_int=True),
        vec((Store("O", add(mul(i, dv), j), fconst(0.0)),)),
        Loop("d", Const(dk), (Let("a", qe), vec((Store("O", add(mul(i, dv), j), _fmul(Ref("a"), Load("st", s_at)),
                                                       accumulate=True),)))),
    )),)))
    # 3. decayed causal scores A[i, s], s <= i
    if per_channel:  # the decay sits inside the dot product: one exponential per (i, s, d)
        term = _fmul(_fmul(ld("q", Var("ri"), dk, d), ld("k", Var("rs"), dk, d)),
                     _exp(Bin("sub", decay(i, d), decay(s, d))))
        body.append(Loop("i", Const(c), (live(i, (
            Let("ri", row(add(Var("t0"), i)), is_int=True),
            Loop("s", Const(c), (If(Bin("<", s, add(i, 1)), (
                Let("rs", row(add(Var("t0"), s)), is_int=True),
                Let("acc", fconst(0.0)),
                Loop("d", Const(dk), (Let("acc", Bin("add", Ref("acc"), term)),)),
                Store("A", add(mul(i, c), s), Ref("acc")),
            )),)),
        )),)))
    else:  # Q Kᵀ as row-times-tile products over a transposed key tile (vectorised over s)
        body.append(Loop("s", Const(c), (If(Bin("<", s, n), (
            Let("rs", row(add(Var("t0"), s)), is_int=True),
            Loop("d", Const(dk), (Store("KT", add(mul(d, c), s), ld("k", Var("rs"), dk, d)),)),
        ), (Loop("d", Const(dk), (Store("KT", add(mul(d, c), s), fconst(0.0)),)),)),)))
        gam_is = _exp(Bin("sub", decay(i, d), decay(s, d))) if gw else fconst(1.0)
        body.append(Loop("i", Const(c), (live(i, (
            Let("ri", row(add(Var("t0"), i)), is_int=True),
            Loop("s", Const(c), (Store("A", add(mul(i, c), s), fconst(0.0)),), "vector"),
            Loop("d", Const(dk), (Let("a", ld("q", Var("ri"), dk, d)), Loop("s", Const(c), (
                Store("A", add(mul(i, c), s), _fmul(Ref("a"), Load("KT", add(mul(d, c), s))), accumulate=True),),
                "vector"))),
            Loop("s", Const(c), (Store("A", add(mul(i, c), s), Select(
                Bin("<", s, add(i, 1)), _fmul(Load("A", add(mul(i, c), s)), gam_is), fconst(0.0))),), "vector"),
        )),)))
    if delta:  # 4. U = β (v - e^b Sᵀk), then the triangular solve
        eb = _exp(decay(i, d)) if gw else fconst(1.0)
        body.append(Loop("i", Const(c), (live(i, (
            Let("ri", row(add(Var("t0"), i)), is_int=True),
            vec((Store("U", add(mul(i, dv), j), ld("v", Var("ri"), dv, j)),)),
            Loop("d", Const(dk), (Let("a", _fmul(fconst(-1.0), _fmul(eb, ld("k", Var("ri"), dk, d)))),
                                  vec((Store("U", add(mul(i, dv), j), _fmul(Ref("a"), Load("st", s_at)),
                                             accumulate=True),)))),
            Let("bt", Load("beta", Var("ri"))),
            vec((Store("U", add(mul(i, dv), j), _fmul(Ref("bt"), Load("U", add(mul(i, dv), j)))),)),
        )),)))
        gam = _exp(Bin("sub", decay(i, d), decay(s, d))) if gw else fconst(1.0)
        body.append(Loop("i", Const(c), (live(i, (
            Let("ri", row(add(Var("t0"), i)), is_int=True),
            # R[s] = k_i · k_s for every s at once, from the transposed key tile
            Loop("s", Const(c), (Store("R", s, fconst(0.0)),), "vector"),
            Loop("d", Const(dk), (Let("a", ld("k", Var("ri"), dk, d)), Loop("s", Const(c), (
                Store("R", s, _fmul(Ref("a"), Load("KT", add(mul(d, c), s))), accumulate=True),), "vector"))),
            Loop("s", Const(c), (If(Bin("<", s, i), (
                Let("m", _fmul(fconst(-1.0), _fmul(Load("beta", Var("ri")), _fmul(Load("R", s), gam)))),
                vec((Store("U", add(mul(i, dv), j), _fmul(Ref("m"), Load("U", add(mul(s, dv), j))),
                           accumulate=True),)),
            )),)),
        )),)))
    # 4'. intra-chunk outputs, and the readouts out
    val = Load("U", add(mul(s, dv), j)) if delta else ld("v", Var("rs"), dv, j)
    body.append(Loop("i", Const(c), (live(i, (
        Let("ri", row(add(Var("t0"), i)), is_int=True),
        Loop("s", Const(c), (If(Bin("<", s, add(i, 1)), (
            Let("rs", row(add(Var("t0"), s)), is_int=True),
            Let("a", Load("A", add(mul(i, c), s))),
            vec((Store("O", add(mul(i, dv), j), _fmul(Ref("a"), val), accumulate=True),)),
        )),)),
        vec((Store("o", add(mul(Var("ri"), dv), j), Load("O", add(mul(i, dv), j))),)),
    )),)))
    # 5. the carried state
    last = Bin("-", n, Const(1))
    e_last = _exp(decay(last, d)) if gw else fconst(1.0)
    k_dec = ld("k", Var("rs"), dk, d)
    if gw:
        k_dec = _fmul(k_dec, _exp(Bin("sub", decay(last, d), decay(s, d))))
    body.append(Loop("d", Const(dk), (
        Let("e", e_last),
        vec((Store("st", s_at, _fmul(Ref("e"), Load("st", s_at))),)),
        Loop("s", Const(c), (live(s, (
            Let("rs", row(add(Var("t0"), s)), is_int=True),
            Let("a", k_dec),
            vec((Store("st", s_at, _fmul(Ref("a"), val), accumulate=True),)),
        )),)),
    )))
    units = mul(Var("B"), nh)
    per_unit = (
        Let("b", Bin("/", Var("p"), Const(nh)), is_int=True),
        Let("h", Bin("%", Var("p"), Const(nh)), is_int=True),
        Let("sb", mul(Var("p"), dk * dv), is_int=True),
        *[Alloc(b) for b in ("bc", "A", "KT", "O", *(("U", "R") if delta else ()))
          if (b != "bc" or gw) and (b != "KT" or not per_channel)],
        Loop("c", Bin("/", add(Var("T"), c - 1), Const(c)), tuple(body)),
    )
    per_worker = Loop("pp", Bin("/", add(units, Bin("-", Var("W"), Const(1))), Var("W")), (
        Let("p", add(Var("w"), mul(Var("pp"), Var("W"))), is_int=True),
        If(Bin("<", Var("p"), units), per_unit),
    ))
    rows_tb = mul(mul(Var("T"), Var("B")), nh)
    bufs = [Buffer("q", mul(rows_tb, dk), doc="queries [T, B, NH, DK]"),
            Buffer("k", mul(rows_tb, dk), doc="keys [T, B, NH, DK]"),
            Buffer("v", mul(rows_tb, dv), doc="values [T, B, NH, DV]"),
            Buffer("g", mul(rows_tb, max(gw, 1)), doc="log decays [T, B, NH, GW] (unused without a decay)"),
            Buffer("beta", rows_tb, doc="delta-rule step sizes [T, B, NH] (unused for gla)"),
            Buffer("st", mul(mul(Var("B"), nh), dk * dv), writable=True, doc="state [B, NH, DK, DV], in place"),
            Buffer("o", mul(rows_tb, dv), writable=True, doc="readouts [T, B, NH, DV]"),
            Buffer("bc", Const(c * max(gw, 1)), "local"), Buffer("A", Const(c * c), "local"),
            *(() if per_channel else (Buffer("KT", Const(dk * c), "local"),)),
            Buffer("O", Const(c * dv), "local")]
    if delta:
        bufs += [Buffer("U", Const(c * dv), "local"), Buffer("R", Const(c), "local")]
    meta = {"path": "chunk", "form": form, "chunk": c, "heads": nh, "dk": dk, "dv": dv, "gate": gw,
            "knobs": {"chunk": c}}
    return Kernel(name, SCALARS, tuple(bufs), (Loop("w", Var("W"), (per_worker,), "parallel"),), (), meta)

