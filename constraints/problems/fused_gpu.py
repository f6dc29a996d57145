"""Fused nonlinear recurrence on a GPU: LSTM, GRU, Elman, sLSTM (FlashRNN-style persistent kernel).

Per step every cell needs ``gates = R @ h_{t-1}`` (R is ``gates*Dh x Dh`` per head) followed by
a pointwise update.  The fused kernel keeps R on chip for the whole sequence, so the tiling
question is where each piece of R lives and who computes it:

========================  =================================================================
parameter                 meaning
========================  =================================================================
``hidden_tile``           hidden units of one head a block owns (all their gates, so the
                          pointwise update needs no exchange between blocks)
``blocks_per_head``       ``head_dim / hidden_tile``; > 1 needs a grid-wide sync per step
``heads_per_block``       heads packed into one block
``batch_tile``            batch columns per block (a multiple of the tensor-core n)
``warps``                 warps per block; they split the block's rows of R
``register_k``            K-columns of the block's R slice held in registers ...
``shared_k``              ... and the rest, held in shared memory
``mma``                   tensor-core instruction shape, or ``simt`` (fp32 FMA)
========================  =================================================================

Cost per step (cycles): tensor/FMA work, limited by the whole SM or by one warp scheduler,
whichever is slower; plus reading the shared-memory part of R once; plus a grid sync.
Blocks are persistent (one per SM), which is what makes a grid sync legal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..model import Model, Solution
from ..schedule import Resources, Schedule
from ..spec import ProblemSpec
from ..units import fmt_bytes
from .base import SCALE, TilingProblem, cost, divisors, pow2_between, round_up

#: Registers per thread the kernel needs besides R and the accumulators (indices, pointers,
#: pointwise temporaries, cell states).  A kernel-model constant, checked against ptxas.
OVERHEAD_REGISTERS = 32
#: Most K-chunks R's register/shared split is expressed in (keeps the domain small).
MAX_K_CHUNKS = 16


class FusedGpu(TilingProblem):
    kernel = "fused_recurrence"

    def build(self) -> Model:
        s, t = self.spec, self.target
        g = t.gpu
        G, NH, Dh, sz = s.info.gates, s.heads, s.head_dim, s.dtype_bytes
        shapes = g.mma(s.dtype) if s.tensor_cores else ()  # SIMT kernels: no mma shapes, FMA rate
        self.mma = str(shapes[0]) if shapes else "simt"
        mg, ng, kg = (shapes[0].m, shapes[0].n, shapes[0].k) if shapes else (1, 1, 1)
        self.Bp, self.Kp = round_up(s.batch, ng), round_up(Dh, kg)
        self.nk = math.gcd(self.Kp // kg, MAX_K_CHUNKS)
        self.kc = self.Kp // self.nk
        Bp, Kp, kc = self.Bp, self.Kp, self.kc

        m = Model(f"fused_{s.cell}")
        sync = m.decision("sync", [1, 2] if s.grid_sync else [1])
        tiles = [d for d in divisors(Dh) if not s.pow2_tiles or d & (d - 1) == 0 or d == Dh]
        ht = m.decision("hidden_tile", tiles, prefer="max")
        hpb = m.decision("heads_per_block", divisors(NH), prefer="max")
        bt = m.decision("batch_tile", [d for d in divisors(Bp) if d % ng == 0], prefer="max")
        w = m.decision("warps", pow2_between(1, g.max_threads_per_block // g.warp_size))
        if s.min_warps > 1:  # spec calibration: fewer warps were seen to spill
            m.add_ge(w, s.min_warps, name="at least min_warps warps (compiler feedback)")
        # shared_weights=False: the kernel has no shared-memory part for R, all of it is in registers
        chunks = (range(1, self.nk + 2) if s.shared_weights else [self.nk + 1]) if s.register_weights else [1]
        rc1 = m.decision("reg_chunks1", chunks, prefer="max")  # register chunks + 1

        hsplit = m.quotient("blocks_per_head", Dh, ht)
        groups = m.quotient("head_groups", NH, hpb)
        nb = m.quotient("batch_blocks", Bp, bt)
        cells = m.product("cells", hpb, ht)
        rows = m.define("rows", G * cells)
        wr = m.quotient("warp_rows", rows, w)
        if mg > 1:
            m.add_divides(mg, wr, name="warp rows are whole mma tiles")
        m.add_ge(wr, 1, name="every warp owns rows")
        # batch tiles on blocks of their own, or (batch_split=False) one after another in each block
        blocks = m.product("blocks", groups, hsplit, nb) if s.batch_split else m.product("blocks", groups, hsplit)
        pr1 = m.product("reg_rows", rows, rc1)
        acc = m.product("acc", rows, bt)
        htile = m.product("h_tile", hpb, bt)
        wacc = m.product("warp_acc", wr, bt)

        reg_elems = kc * pr1 - kc * rows  # rows x (rc1 - 1) chunks x kc
        overhead = max(0, OVERHEAD_REGISTERS + s.register_overhead)  # spec: measured kernel calibration
        reg_bytes = m.define("reg_bytes", sz * reg_elems + 4 * acc + 4 * overhead * g.warp_size * w)
        smem_elems = m.define("smem_elems", Kp * rows - reg_elems)
        smem = m.define("smem_bytes", sz * smem_elems + sz * Kp * htile + 4 * acc)

        # more than one block per head only together with a grid sync
        m.add_le(hsplit - (Dh - 1) * sync, 2 - Dh, name="blocks per head need grid sync")
        m.add_resource("shared_memory", smem, g.shared_memory_per_block_optin_bytes, "bytes",
                       "shared memory per block")
        m.add_resource("registers", reg_bytes, 4 * g.registers_per_block, "bytes",
                       "register file per block (32-bit registers x 4 bytes)")
        m.add_resource("blocks", blocks, g.sm_count, "blocks", "co-resident persistent blocks (one per SM)")
        m.add_le(reg_bytes - 4 * g.registers_per_thread * g.warp_size * w, 0, name="registers per thread")

        clock = t.clock_mhz * 1e6
        fpc = self.peak_flops(s.dtype if shapes else "fp32") / (g.sm_count * clock)
        # per step a block computes its batch tile, or (batch_split=False) every batch tile serially
        block_acc, warp_acc = (acc, wacc) if s.batch_split else (Bp * rows, Bp * wr)
        compute = m.maximum("compute", cost(2 * Kp / fpc) * block_acc,
                            cost(2 * Kp * g.schedulers_per_sm / fpc) * warp_acc)
        smem_read = cost(sz / g.shared_memory_bytes_per_clock) * smem_elems
        sync_cost = cost(g.grid_sync_us * t.clock_mhz) * (sync - 1)
        step = m.define("step_cost", compute + smem_read + sync_cost)
        m.minimize(step)
        return m

    def schedule(self, sol: Solution, source: str) -> Schedule:
        s, t = self.spec, self.target
        g = t.gpu
        v = sol.values
        threads = v["warps"] * g.warp_size
        unit = g.register_allocation_unit // g.warp_size
        regs = round_up(-(-v["reg_bytes"] // (4 * threads)), unit)
        reg_k = (v["reg_chunks1"] - 1) * self.kc
        params = {
            "mma": self.mma,
            "hidden_tile": v["hidden_tile"],
            "blocks_per_head": v["blocks_per_head"],
            "heads_per_block": v["heads_per_block"],
            "head_groups": v["head_groups"],
            "batch_tile": v["batch_tile"],
            "batch_blocks": v["batch_blocks"],
            "padded_batch": self.Bp,
            "padded_k": self.Kp,
            "warps": v["warps"],
            "k_chunk": self.kc,
            "register_k": reg_k,
            "shared_k": self.Kp - reg_k,
            "grid_sync": int(v["sync"] == 2),
        }
        res = Resources(
            registers_per_thread=min(regs, g.registers_per_thread),
            shared_memory_per_block=v["smem_bytes"],
            threads_per_block=threads,
            blocks=v["blocks"],
            blocks_per_sm=1,
            occupancy=round(v["warps"] / g.max_warps_per_sm, 4),
            grid_sync=v["sync"] == 2,
        )
        G, H, B, T, sz = s.info.gates, s.hidden, s.batch, s.seq_len, s.dtype_bytes
        flops = 2.0 * G * H * s.head_dim * B * T
        nbytes = float(T * B * H * sz * (G + s.info.states) + G * H * s.head_dim * sz)
        step_cycles = v["step_cost"] / SCALE
        est = self._estimate(
            compute_s=flops / self.peak_flops(s.dtype if self.mma != "simt" else "fp32"),
            memory_s=nbytes / (t.memory_bandwidth_gbs * 1e9),
            latency_s=T * step_cycles / (t.clock_mhz * 1e6),
            flops=flops,
            nbytes=nbytes,
        )
        return self._make(params, res, est, source)

    def demand(self) -> list[str]:
        s, t = self.spec, self.target
        g = t.gpu
        G, Dh, NH, sz = s.info.gates, s.head_dim, s.heads, s.dtype_bytes
        per_head = G * Dh * Dh * sz
        per_block = g.shared_memory_per_block_optin_bytes + 4 * g.registers_per_block
        lines = [
            f"recurrent weights need {fmt_bytes(per_head)} per head ({G} gates x {Dh} x {Dh} x {sz} B)"
            + (f", {fmt_bytes(per_head * NH)} for all {NH} heads" if NH > 1 else ""),
            f"{t.tag} has {fmt_bytes(g.shared_memory_per_block_optin_bytes)} shared memory per block "
            f"and {fmt_bytes(4 * g.registers_per_block)} of registers per block "
            f"({g.registers_per_block} x 4 B), {fmt_bytes(per_block)} at most on chip per block",
        ]
        if s.grid_sync:
            lines.append(f"even split over all {g.sm_count} SMs with a grid sync, at most "
                         f"{fmt_bytes(per_block * g.sm_count)} fit on chip")
        if self.mma != "simt" and (self.Bp != s.batch or self.Kp != Dh):
            lines.append(f"tensor cores ({self.mma}) pad batch {s.batch} -> {self.Bp} and K {Dh} -> {self.Kp}")
        return lines

    def relaxations(self) -> Iterable[tuple[str, str, ProblemSpec]]:
        s, t = self.spec, self.target
        if not s.grid_sync:
            yield "grid_sync", "multi-block with grid sync (blocks per head > 1)", s.replace(grid_sync=True)
        if not s.register_weights:
            yield "registers", "cache part of the weights in registers", s.replace(register_weights=True)
        if s.dtype_bytes == 4:
            for d in ("bf16", "fp16"):
                if t.supports(d):
                    yield "dtype", f"{d} instead of {s.dtype}", s.replace(dtype=d)
        for nh in divisors(s.hidden):
            if nh > s.heads:
                yield "heads", f"heads={nh} (head dim {s.hidden // nh})", s.replace(heads=nh)
        step = 8 * s.heads
        for h in range(round_up(s.hidden, step) - step, 0, -step):
            yield "hidden", f"hidden={h}", s.replace(hidden=h)
        for b in range(s.batch - 1, 0, -1):
            yield "batch", f"batch={b}", s.replace(batch=b)
