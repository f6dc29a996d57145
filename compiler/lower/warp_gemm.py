"""The GPU recurrent GEMM of the fused path: warps own weight rows, lanes split K (FlashRNN-style).

Per step a tile needs ``acc[m, q] = sum_k h[b0 + m, k] * R[k, q]`` for its ``gj = gates * J``
rows ``q`` of R.  One output per thread (the old form) makes a thread hold a whole row of R,
which no register file can keep for the Schedule's tiles (a row is ``K`` weights).  Here each
of the block's ``warps`` owns ``wr = ceil(gj / warps)`` rows; its 32 lanes split every row's
``K`` columns, so a lane holds ``wr * register_k / 32`` weights and a warp-shuffle sum finishes
each dot product.  That is the register model of ``rnnc.constraints`` (``reg_elems / threads``),
so ptxas's register count can be held against the Schedule's prediction.

Of each row, columns ``k < register_k`` live in the per-thread ``register`` buffer (loaded once
before the time loop; every index is a compile-time constant after unrolling, so nvcc keeps
them in registers) and columns ``k >= register_k`` in shared memory, laid out ``[row, k]`` so
the 32 lanes of a warp read 32 consecutive words (no bank conflicts).

The register block of a warp is its ``wr * register_k`` weights flattened row-major and dealt
round-robin to the lanes (element ``e`` -> lane ``e % 32``, slot ``e // 32``), so a thread's
slots are dense even when ``register_k`` is not a multiple of 32 (the Schedule's split is in
K-chunks of the solver's, not of 32).  Rows are unrolled here, in Python, because a row's slot
range must be a constant for the slot index to be one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rnnc.lower.loopnest import Bin, Const, Expr, If, Let, Load, Loop, Ref, Stmt, Store, Var, add, mul

LANES = 32


@dataclass(frozen=True)
class WarpSplit:
    """How one recurrent linear's ``rows x k`` weight tile is spread over a block's threads."""

    rows: int
    k: int
    warps: int
    register_k: int

    @property
    def wr(self) -> int:
        """Rows per warp (the last warp may own fewer: rows are guarded)."""
        return -(-self.rows // self.warps)

    @property
    def shared_k(self) -> int:
        return self.k - self.register_k

    @property
    def slots(self) -> int:
        """Register-resident weights per thread."""
        return -(-(self.wr * self.register_k) // LANES)

    @property
    def threads(self) -> int:
        return self.warps * LANES


def split_for(rows: int, k: int, threads: int, register_k: int) -> WarpSplit:
    return WarpSplit(rows, k, max(1, threads // LANES), min(max(register_k, 0), k))


def _row(sp: WarpSplit, r: int) -> Expr:
    return add(mul(Var("wv"), sp.wr), r)


def _guard_row(sp: WarpSplit, r: int, body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
    """Rows past ``rows`` exist only when warps do not divide them."""
    if sp.wr * sp.warps == sp.rows:
        return body
    return (If(Bin("<", _row(sp, r), Const(sp.rows)), body),)


def _slot_index(sp: WarpSplit, slot: Expr) -> Expr:
    thread = add(mul(Var("wv"), LANES), Var("lane"))
    return add(mul(thread, sp.slots), slot)


def _row_slots(sp: WarpSplit, r: int, body: Callable[[Expr], tuple[Stmt, ...]]) -> Stmt:
    """The unrolled loop over row ``r``'s register slots: ``kk`` is the row's column a lane holds
    in slot ``i + lo`` (guarded where the row starts or ends inside a slot)."""
    lo, hi = r * sp.register_k // LANES, -(-(r + 1) * sp.register_k // LANES)
    kk = Bin("-", add(mul(add(Var("i"), lo), LANES), Var("lane")), Const(r * sp.register_k))
    inner = body(add(Var("i"), lo))
    if (r * sp.register_k) % LANES or ((r + 1) * sp.register_k) % LANES:
        inner = (If(Bin("<", Var("kk"), Const(sp.register_k)), (If(Bin("<", Const(-1), Var("kk")), inner),)),)
    return Loop("i", Const(hi - lo), (Let("kk", kk, is_int=True), *inner), "unroll")


def load_registers(sp: WarpSplit, reg: str, w_of: Callable[[Expr, Expr], Expr]) -> list[Stmt]:
    """Fill the register buffer from the packed weights (``w_of(k, q)``), once per sequence.

    Row by row with the GEMM's own slot loops: one flat loop over all slots would have hundreds
    of iterations, more than nvcc fully unrolls, and a register array indexed by a loop variable
    lives in local memory."""
    if sp.register_k == 0:
        return []
    rows: list[Stmt] = []
    for r in range(sp.wr):
        row = _row(sp, r)
        rows += _guard_row(sp, r, (_row_slots(sp, r, lambda slot, row=row: (
            Store(reg, _slot_index(sp, slot), w_of(Var("kk"), row)),)),))
    return [Loop("wv", Const(sp.warps), (Loop("lane", Const(LANES), tuple(rows), "lanes"),), "warps")]


def load_shared(sp: WarpSplit, smem: str, w_of: Callable[[Expr, Expr], Expr]) -> list[Stmt]:
    """Copy columns ``register_k ..`` of every row into shared memory, ``[row, k - register_k]``."""
    if sp.shared_k == 0:
        return []
    e = Var("e")
    return [Loop("e", Const(sp.rows * sp.shared_k), (
        Store(smem, e, w_of(add(Bin("%", e, Const(sp.shared_k)), sp.register_k), Bin("/", e, Const(sp.shared_k)))),),
        "vector")]


def warp_gemm(sp: WarpSplit, acc: str, mb: int, reg: str, smem: str,
              a_of: Callable[[Expr, Expr], Expr]) -> list[Stmt]:
    """``acc[m * rows + q] = sum_k a_of(m, k) * R[k, q]`` for ``m < mb`` and every row ``q``."""
    sums = tuple(f"d{m}" for m in range(mb))
    per_row: list[Stmt] = []
    for r in range(sp.wr):
        row = _row(sp, r)
        lane_body: list[Stmt] = []
        if sp.register_k:
            lane_body.append(_row_slots(sp, r, lambda slot: (
                Let("wgt", Load(reg, _slot_index(sp, slot))),
                *(Let(d, Bin("add", Ref(d), Bin("mul", a_of(Const(m), Var("kk")), Ref("wgt"))))
                  for m, d in enumerate(sums)))))
        if sp.shared_k:
            kk = add(add(mul(Var("i"), LANES), Var("lane")), sp.register_k)
            fma = (Let("wgt", Load(smem, add(mul(row, sp.shared_k), Bin("-", Var("kk"), Const(sp.register_k))))),
                   *(Let(d, Bin("add", Ref(d), Bin("mul", a_of(Const(m), Var("kk")), Ref("wgt"))))
                     for m, d in enumerate(sums)))
            if sp.shared_k % LANES:
                fma = (If(Bin("<", Var("kk"), Const(sp.k)), fma),)
            lane_body.append(Loop("i", Const(-(-sp.shared_k // LANES)), (Let("kk", kk, is_int=True), *fma)))
        body: tuple[Stmt, ...] = (
            *(Let(d, Const(0.0, True)) for d in sums),
            Loop("lane", Const(LANES), tuple(lane_body), "lanes", reduce=sums),
            *(Store(acc, add(m * sp.rows, row), Ref(d)) for m, d in enumerate(sums)))
        per_row += _guard_row(sp, r, body)
    return [Loop("wv", Const(sp.warps), tuple(per_row), "warps")]
