"""CPU tilings: cache blocking for L1/L2 and the vector width, for both kernel families.

``cpu_fused_recurrence`` (LSTM, GRU, Elman, sLSTM): per step a register-blocked
matrix-vector(-batch) product ``R @ h``.  Threads split the rows of R; a micro-kernel keeps an
``mr`` vectors x ``nr`` batch columns block of accumulators in vector registers; K is blocked
by ``k_block`` so a panel of R and of h stays in L1; ``l2_resident=1`` means a thread's rows of
R stay in its L2 across steps (they must fit) instead of streaming from DRAM every step.

``cpu_chunked_scan`` (minGRU, minLSTM, LRU, Mamba, mLSTM): threads split (batch x channel);
each walks its channels ``channel_tile`` at a time (a multiple of the vector lanes) in chunks
of ``chunk`` steps whose inputs stream through L1 while the state stays in L2 (or L1).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model import Model, Solution
from ..schedule import Resources, Schedule
from ..spec import ProblemSpec
from ..units import fmt_bytes
from .base import SCALE, TilingProblem, cost, divisors, pow2_between, round_up

BARRIER_CYCLES_PER_THREAD = 50  #: per-step barrier cost per participating thread (estimate)
CHUNK_OVERHEAD_CYCLES = 100  #: per chunk and tile: carry hand-off, loop setup (estimate)
OPS_PER_STATE_ELEMENT = 8  #: as in the GPU scan model


class _CpuBase(TilingProblem):
    def _compute_dtype(self) -> str:
        """Arithmetic happens in the storage dtype only where the target lists a rate for it."""
        return self.spec.dtype if self.target.peak(self.spec.dtype) else "fp32"

    def demand(self) -> list[str]:
        c = self.target.cpu
        return [f"{self.target.tag} has {fmt_bytes(c.l1d_bytes)} L1d and {fmt_bytes(c.l2_bytes)} L2 per core, "
                f"{c.vector_registers} vector registers of {c.vector_width_bits} bits"]

    def relaxations(self) -> Iterable[tuple[str, str, ProblemSpec]]:
        s = self.spec
        step = 8 * s.heads
        for h in range(round_up(s.hidden, step) - step, 0, -step):
            yield "hidden", f"hidden={h}", s.replace(hidden=h)


class CpuFused(_CpuBase):
    kernel = "cpu_fused_recurrence"

    def build(self) -> Model:
        s, t = self.spec, self.target
        c = t.cpu
        G, H, Dh, B, sz = s.info.gates, s.hidden, s.head_dim, s.batch, s.dtype_bytes
        self.lanes = lanes = c.lanes(self._compute_dtype())
        # the kernels pad a tile's gate rows to whole vectors (the last vector's spare lanes compute
        # nothing anyone reads): an Elman H=12 on 16 lanes is one padded vector, not "no tiling"
        self.rows = rows_total = round_up(G * H, lanes)
        m = Model(f"cpu_fused_{s.cell}")
        th = m.decision("threads", [d for d in divisors(rows_total) if d <= c.cores], prefer="max")
        mr = m.decision("mr", [1, 2, 3, 4, 6, 8], prefer="max")
        nr = m.decision("nr", [d for d in divisors(B) if d <= 16], prefer="max")
        kb = m.decision("k_block", divisors(Dh), prefer="max")
        l2 = m.decision("l2_resident", [1, 2], prefer="max")  # 2: resident

        rows_t = m.quotient("rows_per_thread", rows_total, th)
        m.add_divides(m.define("mr_rows", lanes * mr), rows_t, name="micro-tile rows divide a thread's rows")
        acc = m.product("accumulators", mr, nr)
        m.add_resource("vector_registers", acc + mr + 1, c.vector_registers, "registers",
                       "vector registers (accumulators + weights + broadcast)")
        l1 = m.define("l1_bytes", sz * lanes * m.product("panel", mr, kb) + sz * m.product("h_panel", kb, nr))
        m.add_resource("l1d", l1, c.l1d_bytes, "bytes", "L1 data cache per core")
        resident = sz * Dh * rows_t
        big = sz * Dh * rows_total
        m.add_le(resident + big * l2, c.l2_bytes + 2 * big, name="resident rows fit in L2")
        it = m.quotient("iterations", m.define("vec_work", B * Dh * rows_t), m.define("tile", lanes * acc))
        issue = m.maximum("issue", acc, c.fma_units_per_core * c.fma_latency_cycles)
        compute = m.product("compute", it, issue)
        clock = t.clock_mhz * 1e6
        dram = G * H * Dh * sz / (t.memory_bandwidth_gbs * 1e9 / clock)
        rl = m.product("resident_rows", rows_t, l2)
        mem = cost(Dh * sz / c.l2_bytes_per_cycle) * (rl - rows_t) + cost(dram) * (2 - l2)
        step = m.maximum("step", cost(1 / c.fma_units_per_core) * compute, mem)
        m.minimize(step + cost(BARRIER_CYCLES_PER_THREAD) * (th - 1))
        return m

    def schedule(self, sol: Solution, source: str) -> Schedule:
        s, t = self.spec, self.target
        v = sol.values
        params = {"threads": v["threads"], "mr": v["mr"], "nr": v["nr"], "k_block": v["k_block"],
                  "vector_lanes": self.lanes, "rows_per_thread": v["rows_per_thread"],
                  "l2_resident": int(v["l2_resident"] == 2), "gates": s.info.gates}
        if self.rows != s.info.gates * s.hidden:
            params["padded_rows"] = self.rows
        foot = [("l1d", v["l1_bytes"])]
        if v["l2_resident"] == 2:
            foot.append(("l2", v["rows_per_thread"] * s.head_dim * s.dtype_bytes))
        res = Resources(threads=v["threads"], cache_footprint=tuple(foot))
        G, H, B, T, sz = s.info.gates, s.hidden, s.batch, s.seq_len, s.dtype_bytes
        flops = 2.0 * G * H * s.head_dim * B * T
        weights = G * H * s.head_dim * sz
        nbytes = float(T * B * H * sz * (G + 1) + (weights if v["l2_resident"] == 2 else T * weights))
        est = self._estimate(
            compute_s=flops / self.peak_flops(self._compute_dtype()),
            memory_s=nbytes / (t.memory_bandwidth_gbs * 1e9),
            latency_s=T * sol.objective[0] / SCALE / (t.clock_mhz * 1e6),
            flops=flops,
            nbytes=nbytes,
        )
        return self._make(params, res, est, source)


class CpuScan(_CpuBase):
    kernel = "cpu_chunked_scan"

    def build(self) -> Model:
        s, t = self.spec, self.target
        c = t.cpu
        info, sz, B = s.info, s.dtype_bytes, s.batch
        self.lanes = lanes = c.lanes("fp32")  # the state is fp32
        if info.scan == "matrix":
            channels, N, shared, per = s.heads * s.head_dim, s.head_dim, 2 * s.head_dim + 2, 1
        else:
            channels, per = s.hidden, info.inputs
            N = s.state_size if info.scan == "selective" else 1
            shared = 2 * N if info.scan == "selective" else 0
        self.N, self.channels = N, channels
        lmax = max(16, min(256, 1 << (s.seq_len - 1).bit_length()))
        self.Tp = Tp = round_up(s.seq_len, lmax)
        units = B * channels
        m = Model(f"cpu_scan_{s.cell}")
        th = m.decision("threads", [d for d in divisors(units) if d <= c.cores], prefer="max")
        tiles_ok = [d for d in divisors(channels) if d % lanes == 0 and d <= 1024] or [
            d for d in divisors(channels) if d <= 1024]
        ct = m.decision("channel_tile", tiles_ok, prefer="max")
        L = m.decision("chunk", pow2_between(1, lmax), prefer="max")  # CPUs can also go step by step
        cpt = m.quotient("channels_per_thread", units, th)
        m.add_divides(ct, cpt, name="tiles divide a thread's channels")
        tiles = m.quotient("tiles_per_thread", cpt, ct)
        nchunks = m.quotient("chunks", Tp, L)
        # a chunk of inputs/outputs streams through L1; the state (N words per channel, Dh for
        # mLSTM) may live in L2 when it is too big for L1 next to the chunk
        l1 = m.define("l1_bytes", sz * (per + info.state_words) * m.product("chunk_elems", L, ct) + sz * shared * L)
        l2 = m.define("l2_bytes", l1 + 4 * info.state_words * N * ct)
        m.add_resource("l1d", l1, c.l1d_bytes, "bytes", "L1 data cache per core")
        m.add_resource("l2", l2, c.l2_bytes, "bytes", "L2 cache per core")
        clock = t.clock_mhz * 1e6
        work = cost(Tp * N * info.state_words * OPS_PER_STATE_ELEMENT / (lanes * 2 * c.fma_units_per_core)) * cpt
        overhead = cost(CHUNK_OVERHEAD_CYCLES) * m.product("chunk_tiles", nchunks, tiles)
        nbytes = B * s.seq_len * (channels * (per + info.state_words) + shared) * sz
        mem = cost(nbytes / (t.memory_bandwidth_gbs * 1e9 / clock))
        m.minimize(m.maximum("total", work + overhead, mem))
        return m

    def schedule(self, sol: Solution, source: str) -> Schedule:
        s, t = self.spec, self.target
        v = sol.values
        params = {"threads": v["threads"], "channel_tile": v["channel_tile"], "chunk": v["chunk"],
                  "vector_lanes": self.lanes, "chunks": v["chunks"], "padded_seq_len": self.Tp}
        res = Resources(threads=v["threads"], cache_footprint=(("l1d", v["l1_bytes"]), ("l2", v["l2_bytes"])))
        flops = float(s.batch * s.seq_len * self.channels * self.N * s.info.state_words * OPS_PER_STATE_ELEMENT)
        nbytes = float(s.batch * s.seq_len * self.channels * (s.info.inputs + s.info.state_words) * s.dtype_bytes)
        est = self._estimate(
            compute_s=flops / self.peak_flops("fp32"),
            memory_s=nbytes / (t.memory_bandwidth_gbs * 1e9),
            latency_s=sol.objective[0] / SCALE / (t.clock_mhz * 1e6),
            flops=flops,
            nbytes=nbytes,
        )
        return self._make(params, res, est, source)
