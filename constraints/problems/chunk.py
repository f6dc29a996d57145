"""Chunkwise-parallel matrix-state recurrences (GLA, RetNet, HGRN2, DeltaNet, Mamba-2, mLSTM).

GPU kernel model (``chunkwise``, the Triton kernel ``rnnc.backends.triton.chunk``): one block owns
one (batch row, head, value tile) for the whole sequence; its state tile ``S [DK, VT]`` stays in
registers, and each chunk of ``C`` steps loads ``Q, K [C, DK]``, ``V [C, VT]`` and computes the
``[C, C]`` causal score tile, the intra-chunk output, the inter-chunk output and the state update
as tile matrix products.  ``DK`` (the key width per head) is ``state_size`` here, padded like the
value width to whole 16-wide dot tiles.

==================  ========================================================================
parameter           meaning
==================  ========================================================================
``chunk``           steps per chunk C (16, 32, 64)
``value_tile``      value columns per block VT (power of two, >= 16)
``warps``           warps per block
``blocks_per_sm``   resident blocks per SM the tiling is sized for
``waves``           rounds of resident blocks needed to cover the grid
==================  ========================================================================

Registers: the state tile, the Q/K/V/output chunk tiles and ``score_tiles`` ``[C, C]`` tiles
(2: scores and decays; 4 for the delta rule: K Kᵀ, the triangular system, its inverse, the
decays) in fp32, each held in ``TILE_COPIES`` layouts, plus a fixed per-thread overhead.
Shared memory: Triton stages ``tl.dot`` operands, the largest product's two operands
(``[C, DK] x [DK, VT]`` or ``[C, C] x [C, VT]``).
Work per chunk: the dense products (2 C² DK + 2 C² VT + 4 C DK VT, plus 2 C² DK + 2 C² VT +
C³/3 + 2 C DK VT for the delta rule; per-key-channel decays add C² DK exponentials).

CPU model (``cpu_chunkwise``): threads split (batch x heads); a chunk's Q/K/V tiles, its
``[C, C]`` tiles and the state ``[DK, DV]`` must fit L2 per core, the chunk tiles L1.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model import Model, Solution
from ..schedule import Resources, Schedule
from ..spec import ProblemSpec
from ..units import fmt_bytes
from .base import SCALE, TilingProblem, cost, divisors, pow2_between, round_up

OVERHEAD_REGISTERS = 60  #: registers per thread besides the tiles (indices, masks, pointers)
#: registers the kernel holds per tile word: Triton keeps a tile in its blocked layout and in the
#: dot-operand/accumulator layouts, plus the exponential temporaries.  Kernel-model constant,
#: fitted to ptxas on sm_90 for the five family cells at H=256, 4 heads, 8 warps (predictions
#: within ~25%; rnnc.backends.triton.aot.fit_schedule feeds the rest back)
TILE_COPIES = 5
CHUNK_OVERHEAD_CYCLES = 300  #: barriers, cumulative sums and the carried state per chunk (estimate)
EXP_FLOPS = 8  #: an exponential, in FLOPs (estimate)
MIN_TILE = 16  #: tl.dot's smallest tile side


def _pad(n: int) -> int:
    return max(MIN_TILE, 1 << max(0, (n - 1).bit_length()))


class _ChunkShape:
    """Sizes shared by the GPU and CPU models: head widths, padded tiles, per-chunk FLOPs."""

    def shape(self) -> None:
        """Set the sizes; ``build`` calls it first (the base class builds in ``__init__``), so every
        later method reads them."""
        s = self.spec
        self.delta = s.info.scan == "delta"
        self.per_channel = s.info.scan == "gla_channel"
        # mLSTM: keys as wide as the head, and the normaliser rides along as one more value column
        # (rnnc.lower.chunkwise.kernel_shape)
        mlstm = s.info.scan == "mlstm"
        self.dk, self.dv = (s.head_dim, s.head_dim + 1) if mlstm else (s.state_size, s.head_dim)
        self.bk, self.bv = _pad(self.dk), _pad(self.dv)
        self.score_tiles = 4 if self.delta else 2

    def chunk_flops(self, c: int, vt: int) -> int:
        """FLOPs of one chunk of ``c`` steps for one value tile of ``vt`` columns."""
        dk = self.bk
        f = 2 * c * c * dk + 2 * c * c * vt + 4 * c * dk * vt
        if self.delta:
            f += 2 * c * c * dk + 2 * c * c * vt + c * c * c // 3 + 2 * c * dk * vt
        if self.per_channel:
            f += EXP_FLOPS * c * c * dk
        return f


class ChunkGpu(_ChunkShape, TilingProblem):
    kernel = "chunkwise"

    def build(self) -> Model:
        s, t = self.spec, self.target
        g = t.gpu
        self.shape()
        sz, B, T = s.dtype_bytes, s.batch, s.seq_len
        m = Model(f"chunk_{s.cell}")
        chunks = [c for c in (16, 32, 64) if c <= max(16, _pad(T))]
        L = m.decision("chunk", chunks, prefer="max")
        vt = m.decision("value_tile", pow2_between(MIN_TILE, self.bv), prefer="max")
        # warps do not change the modelled work (the block's tiles are split among them), so ties go
        # to more warps: fewer registers per thread for the same tiles
        w = m.decision("warps", pow2_between(1, min(8, g.max_threads_per_block // g.warp_size)), prefer="max")
        if s.min_warps > 1:  # compiler feedback: fewer warps were seen to spill (an explained infeasibility past 8)
            m.add_ge(w, s.min_warps, name="at least min_warps warps (compiler feedback)")
        bps = m.decision("blocks_per_sm", sorted({*pow2_between(1, g.max_blocks_per_sm), g.max_blocks_per_sm}))
        vtiles = m.quotient("value_tiles", self.bv, vt)
        blocks = m.define("blocks", B * s.heads * vtiles)
        waves = m.decision("waves", pow2_between(1, 2 * max(1, -(-B * s.heads * self.bv // MIN_TILE // g.sm_count))))
        # register bytes: state tile, Q/K tiles, V/output tiles, the [C, C] tiles, per-thread overhead
        cvt = m.product("chunk_value", L, vt)
        cc = m.product("scores", L, L)
        overhead = max(0, OVERHEAD_REGISTERS + s.register_overhead)
        tile_words = self.bk * vt + 2 * self.bk * L + 2 * cvt + self.score_tiles * cc
        regs = m.define("reg_bytes", 4 * TILE_COPIES * tile_words + 4 * overhead * g.warp_size * w)
        smem = m.maximum("smem_bytes", 4 * self.bk * L + 4 * self.bk * vt, 4 * cc + 4 * cvt)
        reserved = g.shared_memory_reserved_per_block_bytes
        m.add_resource("shared_memory", smem, g.shared_memory_per_block_optin_bytes, "bytes", "shared memory per block")
        m.add_resource("registers", regs, 4 * g.registers_per_block, "bytes",
                       "register file per block (32-bit registers x 4 bytes)")
        m.add_le(regs - 4 * g.registers_per_thread * g.warp_size * w, 0, name="registers per thread")
        m.add_resource("sm_shared_memory", m.product("sm_smem", bps, m.define("smem_total", smem + reserved)),
                       g.shared_memory_per_sm_bytes, "bytes", "shared memory per SM (resident blocks incl. reserved)",
                       group="shared_memory")
        m.add_resource("sm_registers", m.product("sm_regs", bps, regs), 4 * g.registers_per_sm, "bytes",
                       "register file per SM", group="registers")
        m.add_le(g.warp_size * m.product("sm_warps", bps, w), g.max_threads_per_sm, name="threads per SM")
        m.add_ge(g.sm_count * m.product("slots", bps, waves), blocks, name="waves cover the grid")
        clock = t.clock_mhz * 1e6
        fpc = self.peak_flops(s.dtype) / (g.sm_count * clock)  # per SM and cycle (tensor cores)
        nchunks = m.quotient("chunks", round_up(T, 64), L)
        # FLOPs per chunk = k_cc C² + k_cv C VT + k_ccv C² VT (+ C³/3 for the delta rule's solve),
        # run on the block's share of its SM (``bps`` blocks share it)
        k_cc = 2 * self.bk * (2 if self.delta else 1) + (EXP_FLOPS * self.bk if self.per_channel else 0)
        k_cv = 4 * self.bk + (2 * self.bk if self.delta else 0)
        k_ccv = 4 if self.delta else 2
        n_bps = m.product("chunks_sm", nchunks, bps)
        work = (cost(k_cc / fpc) * m.product("cc_work", cc, n_bps) + cost(k_cv / fpc) * m.product("cv_work", cvt, n_bps)
                + cost(k_ccv / fpc) * m.product("ccv_work", cc, vt, n_bps))
        if self.delta:
            work = work + cost(1 / (3 * fpc)) * m.product("ccc_work", cc, L, n_bps)
        latency = m.define("latency", cost(CHUNK_OVERHEAD_CYCLES) * nchunks + work)
        wl = m.product("wave_latency", waves, latency)
        mem = cost(self._bytes(1) / (t.memory_bandwidth_gbs * 1e9 / clock))
        qk = cost(B * s.heads * T * 2 * self.dk * sz / (t.memory_bandwidth_gbs * 1e9 / clock))
        total = m.maximum("total", mem + qk * vtiles, wl)
        m.minimize(total, wl)
        return m

    def _bytes(self, value_tiles: int) -> float:
        """DRAM bytes per sequence: q, k (re-read per value tile), v, o, decays."""
        s = self.spec
        return float(s.batch * s.heads * s.seq_len * s.dtype_bytes
                     * (2 * self.dk * value_tiles + 2 * self.dv + 2))

    def schedule(self, sol: Solution, source: str) -> Schedule:
        s, t = self.spec, self.target
        v = sol.values
        params = {"chunk": v["chunk"], "value_tile": v["value_tile"], "warps": v["warps"],
                  "blocks_per_sm": v["blocks_per_sm"], "waves": v["waves"], "value_tiles": v["value_tiles"],
                  "padded_key_dim": self.bk, "padded_value_dim": self.bv}
        res = self.block_resources(v)
        nchunks = -(-s.seq_len // v["chunk"])
        flops = float(s.batch * s.heads * v["value_tiles"] * nchunks * self.chunk_flops(v["chunk"], v["value_tile"]))
        nbytes = self._bytes(v["value_tiles"])
        est = self._estimate(compute_s=flops / self.peak_flops(s.dtype),
                             memory_s=nbytes / (t.memory_bandwidth_gbs * 1e9),
                             latency_s=v["wave_latency"] / SCALE / (t.clock_mhz * 1e6), flops=flops, nbytes=nbytes)
        return self._make(params, res, est, source)

    def demand(self) -> list[str]:
        g = self.target.gpu
        per = 4 * self.bk * MIN_TILE + 4 * self.score_tiles * MIN_TILE * MIN_TILE
        return [f"the smallest chunk (16 steps, one 16-wide value tile) keeps {fmt_bytes(per)} of state and "
                f"score tiles per block (DK={self.dk} padded to {self.bk})",
                f"{self.target.tag} has {fmt_bytes(g.shared_memory_per_block_optin_bytes)} shared memory and "
                f"{fmt_bytes(4 * g.registers_per_block)} of registers per block"]

    def relaxations(self) -> Iterable[tuple[str, str, ProblemSpec]]:
        s = self.spec
        key_widths = () if s.info.scan == "mlstm" else range(s.state_size - 1, 0, -1)  # mLSTM: DK is the head's
        for n in (d for d in key_widths if d % MIN_TILE == 0 or d < MIN_TILE):
            yield "state_size", f"key width {n} per head", s.replace(state_size=n)
        for nh in divisors(s.hidden):
            if nh > s.heads:
                yield "heads", f"heads={nh} (value width {s.hidden // nh})", s.replace(heads=nh)


class ChunkCpu(_ChunkShape, TilingProblem):
    kernel = "cpu_chunkwise"

    def build(self) -> Model:
        s, t = self.spec, self.target
        c = t.cpu
        self.shape()
        units = s.batch * s.heads
        m = Model(f"cpu_chunk_{s.cell}")
        th = m.decision("threads", [d for d in divisors(units) if d <= c.cores], prefer="max")
        chunks = [n for n in (16, 32, 64, 128) if n <= max(16, _pad(s.seq_len))]
        L = m.decision("chunk", chunks, prefer="max")
        dk, dv = self.dk, self.dv
        tile = m.define("l1_bytes", 4 * (2 * dk + 2 * dv) * L + 4 * self.score_tiles * m.product("scores", L, L))
        m.add_resource("l1d", tile, c.l1d_bytes, "bytes", "L1 data cache per core")
        m.add_resource("l2", m.define("l2_bytes", tile + 4 * dk * dv), c.l2_bytes, "bytes", "L2 cache per core")
        per_thread = m.quotient("rows_per_thread", units, th)
        nchunks = m.quotient("chunks", round_up(s.seq_len, 128), L)
        lanes = c.lanes("fp32")
        fpc = lanes * 2 * c.fma_units_per_core
        # per chunk: C x (DK x DV) products (inter-chunk), C x C x (DK + DV) (intra-chunk)
        work = (cost((4 + (2 if self.delta else 0)) * dk * dv / fpc) * m.product("c_n", L, nchunks)
                + cost((2 * dk + 2 * dv) * (2 if self.delta else 1) / fpc * (EXP_FLOPS if self.per_channel else 1))
                * m.product("cc_n", m.product("ccn", L, L), nchunks)
                + cost(CHUNK_OVERHEAD_CYCLES) * nchunks)
        m.minimize(m.product("total", m.define("work", work), per_thread))
        return m

    def schedule(self, sol: Solution, source: str) -> Schedule:
        s, t = self.spec, self.target
        v = sol.values
        res = Resources(threads=v["threads"], cache_footprint=(("l1d", v["l1_bytes"]), ("l2", v["l2_bytes"])))
        flops = float(s.batch * s.heads * -(-s.seq_len // v["chunk"]) * self.chunk_flops(v["chunk"], self.dv))
        nbytes = float(s.batch * s.heads * s.seq_len * s.dtype_bytes * (2 * self.dk + 2 * self.dv))
        est = self._estimate(compute_s=flops / self.peak_flops("fp32"),
                             memory_s=nbytes / (t.memory_bandwidth_gbs * 1e9),
                             latency_s=sol.objective[0] / SCALE / (t.clock_mhz * 1e6), flops=flops, nbytes=nbytes)
        return self._make({"threads": v["threads"], "chunk": v["chunk"], "chunks": v["chunks"]}, res, est, source)

    def demand(self) -> list[str]:
        c = self.target.cpu
        return [f"a 16-step chunk and the {self.dk} x {self.dv} state need "
                f"{fmt_bytes(4 * ((2 * self.dk + 2 * self.dv) * 16 + self.score_tiles * 256 + self.dk * self.dv))}",
                f"{self.target.tag} has {fmt_bytes(c.l1d_bytes)} L1d and {fmt_bytes(c.l2_bytes)} L2 per core"]
