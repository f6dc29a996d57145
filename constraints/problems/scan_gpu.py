"""Linear/diagonal recurrence on a GPU as a chunked parallel scan: minGRU, minLSTM, LRU, Mamba
(S6 selective scan) and mLSTM (chunkwise-parallel matrix memory).

The sequence is cut into chunks of ``chunk`` steps; within a chunk the recurrence is evaluated
in parallel, across chunks a carried state links them.  A block owns ``channel_tile`` channels
of one batch row (for mLSTM: ``channel_tile`` columns of the value dimension of one head) for
the whole sequence and keeps their state in registers:

==================  ========================================================================
parameter           meaning
==================  ========================================================================
``chunk``           steps per chunk (power of two, 16..256)
``channel_tile``    channels (diag/selective) or value columns (mLSTM) per block
``stages``          shared-memory pipeline depth for the next chunks' inputs (cp.async)
``warps``           warps per block
``blocks_per_sm``   resident blocks per SM the tiling is sized for
``waves``           rounds of resident blocks needed to cover the grid (power of two)
==================  ========================================================================

Cost (cycles, lexicographic): first max(DRAM time, waves x per-block latency), then the
latency itself so memory-bound problems still get the lowest-latency tiling.  Per-block
latency = per-chunk overhead + DRAM latency not hidden by the pipeline + work, where work is
limited by the block's share of the SM or, for the elementwise scans, by its threads (each
thread owns ``elems_per_thread`` state elements).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model import Model, Solution
from ..schedule import Schedule
from ..spec import ProblemSpec
from ..units import fmt_bytes
from .base import SCALE, TilingProblem, cost, divisors, pow2_between, round_up

OVERHEAD_REGISTERS = 32  #: registers per thread besides the state (kernel-model constant)
MAX_STAGES = 4  #: deepest pipeline considered; stages = MAX_STAGES hides the DRAM latency fully
CHUNK_OVERHEAD_CYCLES = 200  #: barriers and the carried-state hand-off per chunk (estimate)
OPS_PER_STATE_ELEMENT = 8  #: FLOPs per state element and step (gate math + multiply-add)
MAX_CHANNEL_TILE = 1024


class ScanGpu(TilingProblem):
    kernel = "chunked_scan"

    def build(self) -> Model:
        s, t = self.spec, self.target
        g = t.gpu
        info, sz, B = s.info, s.dtype_bytes, s.batch
        self.matrix = info.scan == "matrix"
        N = s.state_size if info.scan == "selective" else (s.head_dim if self.matrix else 1)
        self.N = N
        lmax = max(16, min(256, 1 << (s.seq_len - 1).bit_length()))
        self.Tp = Tp = round_up(s.seq_len, lmax)
        shapes = g.mma(s.dtype) if self.matrix else ()
        self.mma = str(shapes[0]) if shapes else "simt"
        ng = shapes[0].n if shapes else 1
        m = Model(f"scan_{s.cell}")

        L = m.decision("chunk", pow2_between(16, lmax), prefer="max")
        self.Vp = round_up(s.head_dim, ng)  # value dim padded to whole mma tiles
        if self.matrix:
            ct = m.decision("channel_tile", [d for d in divisors(self.Vp) if d % ng == 0], prefer="max")
            per_row = s.heads * self.Vp
        else:
            ct = m.decision("channel_tile", [d for d in divisors(s.hidden) if d <= MAX_CHANNEL_TILE], prefer="max")
            per_row = s.hidden
        stages = m.decision("stages", range(1, MAX_STAGES + 1))
        # the mLSTM kernel runs mma on every warp scheduler: at least one warp per scheduler
        wmin = g.schedulers_per_sm if self.matrix else 1
        w = m.decision("warps", pow2_between(wmin, min(16, g.max_threads_per_block // g.warp_size)))
        bps = m.decision("blocks_per_sm", sorted({*pow2_between(1, g.max_blocks_per_sm), g.max_blocks_per_sm}))
        max_blocks = B * per_row
        waves = m.decision("waves", pow2_between(1, 2 * max(1, -(-max_blocks // g.sm_count))))

        nchunks = m.quotient("chunks", Tp, L)
        tiles = m.quotient("tiles", per_row, ct)  # channel tiles per batch row
        blocks = m.define("blocks", B * tiles)
        exposed = m.define("exposed_stages", MAX_STAGES - stages)
        nce = m.product("exposed_chunks", nchunks, exposed)
        sL = m.product("staged_steps", stages, L)
        sLc = m.product("staged_elems", sL, ct)
        ctb = m.product("tile_share", ct, bps)
        if self.matrix:
            Lv = m.product("out_tile", L, ct)
            LL = m.product("scores", L, L)
            smem = m.define("smem_bytes", sz * (2 * s.head_dim + 2) * sL + sz * sLc + 4 * LL)
            state = 4 * s.head_dim * ct + 4 * Lv
            m.add_le(32 * w, Lv, name="threads have work")
        else:
            shared_inputs = 2 * N if info.scan == "selective" else 0
            smem = m.define("smem_bytes", sz * info.inputs * sLc + sz * shared_inputs * sL)
            elems = m.define("state_elems", info.state_words * N * ct)
            state = 4 * elems
            if info.state_words * N * per_row >= g.warp_size:
                ept = m.quotient("elems_per_thread", elems, m.define("threads", g.warp_size * w))
                m.add_ge(ept, 1, name="threads have work")
            else:  # a batch row has fewer state elements than a warp has threads (e.g. minGRU H=16):
                # threads idle whatever the tiling, so one warp owning the whole row stays legal
                m.add_le(w, 1, name="one warp for a row smaller than a warp")
                ept = m.define("elems_per_thread", 1)

        # spec.register_overhead: a backend's measured kernel calibration (compiler feedback)
        overhead = max(0, OVERHEAD_REGISTERS + s.register_overhead)
        regs = m.define("reg_bytes", state + 4 * overhead * g.warp_size * w)
        reserved = g.shared_memory_reserved_per_block_bytes
        sm_smem = m.product("sm_smem", bps, m.define("smem_total", smem + reserved))
        sm_regs = m.product("sm_regs", bps, regs)
        sm_warps = m.product("sm_warps", bps, w)
        slots = m.product("slots", bps, waves)

        m.add_resource("shared_memory", smem, g.shared_memory_per_block_optin_bytes, "bytes",
                       "shared memory per block")
        m.add_resource("registers", regs, 4 * g.registers_per_block, "bytes",
                       "register file per block (32-bit registers x 4 bytes)")
        m.add_le(regs - 4 * g.registers_per_thread * g.warp_size * w, 0, name="registers per thread")
        m.add_resource("sm_shared_memory", sm_smem, g.shared_memory_per_sm_bytes, "bytes",
                       "shared memory per SM (resident blocks incl. reserved)", group="shared_memory")
        m.add_resource("sm_registers", sm_regs, 4 * g.registers_per_sm, "bytes", "register file per SM",
                       group="registers")
        m.add_le(g.warp_size * sm_warps, g.max_threads_per_sm, name="threads per SM")
        m.add_ge(g.sm_count * slots, blocks, name="waves cover the grid")

        clock = t.clock_mhz * 1e6
        fpc32 = self.peak_flops("fp32") / (g.sm_count * clock)
        if self.matrix:
            fpc = self.peak_flops(s.dtype if shapes else "fp32") / (g.sm_count * clock)
            c = 2 * Tp / fpc
            work = (cost(c * s.head_dim) * m.product("lb", L, bps) + cost(c) * m.product("lvb", Lv, bps)
                    + cost(2 * c * s.head_dim) * ctb)
        else:
            # the SM's share for this block, or one FMA (2 FLOPs) per thread and cycle
            work = m.maximum("work", cost(Tp * N * info.state_words * OPS_PER_STATE_ELEMENT / fpc32) * ctb,
                             cost(Tp * OPS_PER_STATE_ELEMENT / 2) * ept)
        latency = m.define("latency", cost(CHUNK_OVERHEAD_CYCLES) * nchunks
                           + cost(g.dram_latency_cycles / (MAX_STAGES - 1)) * nce + work)
        wl = m.product("wave_latency", waves, latency)
        bytes_per_cycle = t.memory_bandwidth_gbs * 1e9 / clock
        mem = cost(self._bytes() / bytes_per_cycle)
        if self.matrix:  # q and k are re-read once per value tile
            qk = B * s.heads * s.seq_len * 2 * s.head_dim * sz
            total = m.maximum("total", mem + cost(qk / bytes_per_cycle) * tiles, wl)
        else:
            total = m.maximum("total", mem, wl)
        m.minimize(total, wl)
        return m

    def _bytes(self) -> float:
        """DRAM bytes moved per sequence (for mLSTM without the per-tile q/k re-reads)."""
        s = self.spec
        sz, B, T, info = s.dtype_bytes, s.batch, s.seq_len, s.info
        if self.matrix:
            return float(B * s.heads * T * (s.head_dim + 2) * sz + B * T * s.hidden * sz)
        shared = 2 * self.N * sz if info.scan == "selective" else 0
        return float(B * T * (s.hidden * (info.inputs + info.state_words) * sz + shared))

    def schedule(self, sol: Solution, source: str) -> Schedule:
        s, t = self.spec, self.target
        v = sol.values
        params = {
            "chunk": v["chunk"],
            "channel_tile": v["channel_tile"],
            "stages": v["stages"],
            "warps": v["warps"],
            "blocks_per_sm": v["blocks_per_sm"],
            "waves": v["waves"],
            "chunks": v["chunks"],
            "padded_seq_len": self.Tp,
            "mma": self.mma,
        }
        if self.matrix:
            params["padded_value_dim"] = self.Vp
        res = self.block_resources(v)
        nbytes = self._bytes()
        if self.matrix:
            nbytes += s.batch * s.heads * s.seq_len * 2 * s.head_dim * s.dtype_bytes * v["tiles"]
            flops = 2.0 * s.batch * s.heads * s.seq_len * (2 * v["chunk"] * s.head_dim + 2 * s.head_dim**2)
        else:
            flops = float(s.batch * s.seq_len * s.hidden * self.N * s.info.state_words * OPS_PER_STATE_ELEMENT)
        clock = t.clock_mhz * 1e6
        est = self._estimate(
            compute_s=flops / self.peak_flops(s.dtype if self.mma != "simt" else "fp32"),
            memory_s=nbytes / (t.memory_bandwidth_gbs * 1e9),
            latency_s=v["wave_latency"] / SCALE / clock,
            flops=flops,
            nbytes=nbytes,
        )
        return self._make(params, res, est, source)

    def demand(self) -> list[str]:
        s, t = self.spec, self.target
        g = t.gpu
        if self.matrix:
            per = 4 * s.head_dim * s.head_dim
            what = f"the mLSTM state is {fmt_bytes(per)} per head and batch row ({s.head_dim} x {s.head_dim} x 4 B)"
        else:
            per = 4 * s.info.state_words * self.N
            what = f"the scan state is {fmt_bytes(per)} per channel"
        return [
            what,
            f"{t.tag} has {fmt_bytes(g.shared_memory_per_block_optin_bytes)} shared memory and "
            f"{fmt_bytes(4 * g.registers_per_block)} of registers per block",
        ]

    def relaxations(self) -> Iterable[tuple[str, str, ProblemSpec]]:
        s, t = self.spec, self.target
        if s.dtype_bytes == 4:
            for d in ("bf16", "fp16"):
                if t.supports(d):
                    yield "dtype", f"{d} instead of {s.dtype}", s.replace(dtype=d)
        if self.matrix:
            for nh in divisors(s.hidden):
                if nh > s.heads:
                    yield "heads", f"heads={nh} (head dim {s.hidden // nh})", s.replace(heads=nh)
        if s.info.scan == "selective":
            for n in range(s.state_size - 1, 0, -1):
                yield "state_size", f"state_size={n}", s.replace(state_size=n)
        step = 8 * s.heads
        for h in range(round_up(s.hidden, step) - step, 0, -step):
            yield "hidden", f"hidden={h}", s.replace(hidden=h)
