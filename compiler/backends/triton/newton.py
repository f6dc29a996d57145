"""The linear recurrence of one Newton step as Triton kernels (``rnnc.lower.newton``'s ``scan``).

The same work-efficient chunked scan as the C kernel (``rnnc.lower.newton_scan`` has the
derivation), in three launches because programs of one launch cannot wait for each other:

1. ``fold``, one program per (row, chunk) -- and, for full Jacobians, per 16-column tile of the
   transition ``P = A_last ... A_first`` plus one for the chunk's end state from zero (``tl.dot``
   of ``[BD, BD]`` x ``[BD, 16]``); elementwise for their diagonals;
2. ``carry``, one program per row: the carry-in of every chunk, ``h_{c+1} = P_c h_c + e_c``;
3. ``apply``, one program per (row, chunk): the chunk again from its carry-in, writing ``s_t``.

A program's loop runs over its chunk's steps only (the last chunk may be short).  Products run in
IEEE fp32 (``input_precision="ieee"``).  Rows are the batch rows (times the blocks of the
``block`` method, which runs as many small full scans).
"""

from __future__ import annotations

from typing import Any

from rnnc.backends.triton.render import pow2

SOURCE = '''"""rnnc: the chunked scan of a Newton step (rendered by rnnc.backends.triton.newton)."""
import triton
import triton.language as tl


@triton.jit
def rnnc_newton_fold(a_ptr, b_ptr, p_ptr, e_ptr, T, R, D: tl.constexpr, BD: tl.constexpr, CH: tl.constexpr,
                     FULL: tl.constexpr):
    r = tl.program_id(0)
    c = tl.program_id(1)
    i = tl.arange(0, BD)
    mi = i < D
    at = (c * R + r).to(tl.int64)
    n = tl.minimum(CH, T - c * CH)  # the chunk's steps (the last chunk may be short)
    if FULL:
        # program q < BD/16 folds columns [16q, 16q + 16) of P; the last one folds e, as column 0
        # of a [BD, 16] tile -- every product is a [BD, BD] x [BD, 16] tl.dot, so the tiles a
        # program holds stay small whatever D is
        q = tl.program_id(2)
        j = tl.arange(0, 16)
        col = q * 16 + j
        is_e = (tl.zeros([16], dtype=tl.int32) + q) == BD // 16
        x = tl.where((i[:, None] == col[None, :]) & mi[:, None] & ~is_e[None, :], 1.0, 0.0)
        for k in range(0, n):
            row = ((c * CH + k) * R + r).to(tl.int64)  # T*R*D*D may pass 2^31
            a = tl.load(a_ptr + row * D * D + i[:, None] * D + i[None, :], mask=mi[:, None] & mi[None, :], other=0.0)
            b = tl.load(b_ptr + row * D + i, mask=mi, other=0.0)
            x = tl.dot(a, x, input_precision="ieee") + tl.where(is_e[None, :] & (j[None, :] == 0), b[:, None], 0.0)
        tl.store(p_ptr + at * D * D + i[:, None] * D + col[None, :], x,
                 mask=mi[:, None] & (col[None, :] < D) & ~is_e[None, :])
        tl.store(e_ptr + at * D + i[:, None] + j[None, :] * 0, x, mask=mi[:, None] & is_e[None, :] & (j[None, :] == 0))
    else:
        e = tl.zeros([BD], dtype=tl.float32)
        p = tl.where(mi, 1.0, 0.0)
        for k in range(0, n):
            row = ((c * CH + k) * R + r).to(tl.int64)  # T*R*D*D may pass 2^31
            a = tl.load(a_ptr + row * D + i, mask=mi, other=0.0)
            e = a * e + tl.load(b_ptr + row * D + i, mask=mi, other=0.0)
            p = a * p
        tl.store(p_ptr + at * D + i, p, mask=mi)
        tl.store(e_ptr + at * D + i, e, mask=mi)


@triton.jit
def rnnc_newton_carry(p_ptr, e_ptr, h_ptr, R, NC, D: tl.constexpr, BD: tl.constexpr, FULL: tl.constexpr):
    r = tl.program_id(0)
    i = tl.arange(0, BD)
    mi = i < D
    h = tl.zeros([BD], dtype=tl.float32)
    for c in range(0, NC):
        at = (c * R + r).to(tl.int64)
        tl.store(h_ptr + at * D + i, h, mask=mi)
        e = tl.load(e_ptr + at * D + i, mask=mi, other=0.0)
        if FULL:
            p = tl.load(p_ptr + at * D * D + i[:, None] * D + i[None, :], mask=mi[:, None] & mi[None, :], other=0.0)
            h = tl.sum(p * h[None, :], axis=1) + e
        else:
            p = tl.load(p_ptr + at * D + i, mask=mi, other=0.0)
            h = p * h + e


@triton.jit
def rnnc_newton_apply(a_ptr, b_ptr, h_ptr, s_ptr, T, R, D: tl.constexpr, BD: tl.constexpr, CH: tl.constexpr,
                      FULL: tl.constexpr):
    r = tl.program_id(0)
    c = tl.program_id(1)
    i = tl.arange(0, BD)
    mi = i < D
    v = tl.load(h_ptr + (c * R + r) * D + i, mask=mi, other=0.0)
    for k in range(0, tl.minimum(CH, T - c * CH)):
        row = ((c * CH + k) * R + r).to(tl.int64)  # T*R*D*D may pass 2^31
        b = tl.load(b_ptr + row * D + i, mask=mi, other=0.0)
        if FULL:
            a = tl.load(a_ptr + row * D * D + i[:, None] * D + i[None, :], mask=mi[:, None] & mi[None, :], other=0.0)
            v = tl.sum(a * v[None, :], axis=1) + b
        else:
            a = tl.load(a_ptr + row * D + i, mask=mi, other=0.0)
            v = a * v + b
        tl.store(s_ptr + row * D + i, v, mask=mi)
'''

KERNELS = ("rnnc_newton_fold", "rnnc_newton_carry", "rnnc_newton_apply")


def consts(full: bool, dim: int, chunk: int) -> dict[str, Any]:
    """The kernels' constexprs (``BD``: the state width padded to a power of two, at least the
    16 that ``tl.dot`` needs)."""
    return {"D": dim, "BD": max(16, pow2(dim)), "CH": max(1, chunk), "FULL": full}


def warps_for(full: bool, dim: int) -> int:
    """Warps per program: the full fold holds a ``[BD, BD]`` Jacobian tile, so wider states get
    more threads to spread it over (ptxas on sm_90: D=48 spills at 4 warps, not at 8; D=128
    still spills at 16 -- see ``tests/backends/triton/test_triton_newton.py``)."""
    bd = consts(full, dim, 1)["BD"]
    return 4 if not full or bd <= 32 else 8 if bd <= 64 else 16


class TritonScan:
    """``scan(a, b, full)`` like ``rnnc.backends.cstyle.newton_scan.CScan``, on the tensors'
    device (the interpreter with ``TRITON_INTERPRET=1``); ``chunk`` steps per program, warps
    from :func:`warps_for` unless given."""

    name = "triton"

    def __init__(self, chunk: int = 64, warps: int | None = None) -> None:
        self.chunk, self.warps = chunk, warps

    def __call__(self, a: Any, b: Any, full: bool) -> Any:
        import os

        import torch

        from rnnc.backends.triton.runtime import load_module
        from rnnc.errors import UnsupportedError

        if b.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise UnsupportedError(f"the Triton Newton scan needs CUDA tensors (these are on {b.device}) or "
                                   "TRITON_INTERPRET=1 to run in Triton's interpreter")

        steps, rows, dim = (int(n) for n in b.shape)
        warps = self.warps or warps_for(full, dim)
        chunk = max(1, min(self.chunk, steps))
        chunks = -(-steps // chunk)
        c = consts(full, dim, chunk)
        mod = load_module(SOURCE)
        a32, b32 = a.float().contiguous(), b.float().contiguous()
        per = dim * dim if full else dim
        p = torch.empty(chunks * rows * per, dtype=torch.float32, device=b.device)
        e = torch.empty(chunks * rows * dim, dtype=torch.float32, device=b.device)
        h = torch.empty_like(e)
        s = torch.empty_like(b32)
        tiles = c["BD"] // 16 + 1 if full else 1  # full: P's column tiles and e (see the kernel)
        mod.rnnc_newton_fold[(rows, chunks, tiles)](a32, b32, p, e, steps, rows, num_warps=warps, **c)
        mod.rnnc_newton_carry[(rows,)](p, e, h, rows, chunks, num_warps=warps, D=c["D"], BD=c["BD"],
                                       FULL=full)
        mod.rnnc_newton_apply[(rows, chunks)](a32, b32, h, s, steps, rows, num_warps=warps, **c)
        return s.to(b.dtype)


def resources(full: bool, dim: int, chunk: int, capability: int, warps: int | None = None) -> Any:
    """ptxas's resources of the three kernels for ``sm_<capability>`` (largest registers and shared
    memory, summed spills; ``rnnc.backends.triton.aot.compile_source``), compiled without a GPU."""
    from rnnc.backends.triton.aot import compile_source

    c = consts(full, dim, chunk)
    carry = {k: v for k, v in c.items() if k != "CH"}
    kernels = [(KERNELS[0], c, "fp32"), (KERNELS[1], carry, "fp32"), (KERNELS[2], c, "fp32")]
    return compile_source(SOURCE, kernels, warps or warps_for(full, dim), capability,
                          what=f"the Newton scan (D={dim})")
