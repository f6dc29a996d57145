"""The lowering's view of a Schedule: the handful of tiling decisions a loop nest is built from.

``rnnc.constraints`` owns the one ``Schedule`` type.  The lowering reads only the fields below,
through :func:`knobs_for`, which takes a Schedule (any object with these attribute names) when
the solver produced one, and otherwise derives the same decisions from the target's data with
the heuristics here.  ``Knobs`` is not a second Schedule: it is the lowering's input signature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rnnc.lower.cpu_cost import rates_for, stream_int8_codes

#: bytes per element of the storage dtypes the C-style backends render
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Knobs:
    """Tiling decisions for one recurrent layer.

    ``tile_hidden``: hidden units per tile (a tile owns all gate rows of its units, so the gate
    math fuses into the recurrent GEMM's epilogue); ``batch_block``: batch rows per register
    tile; ``time_chunk``: steps whose input projection is computed as one GEMM before they run;
    ``workers``: cores (C) or thread blocks (CUDA), 0 = decided at run time (C: all cores);
    ``threads``: CUDA threads per block; ``reduce_inner``: GPU loop order (one output per
    thread, reduction inside) instead of the CPU order (reduction outside, vector of outputs
    inside); ``resident``: recurrent weights are copied once into per-worker memory (CUDA
    shared memory) before the time loop; ``dtype``: storage dtype of weights and activations;
    ``k_block`` (CPU, 0 = none): K block of the recurrent GEMM of batch row blocks, so one
    L1-sized weight panel serves every row block of a tile (see ``rnnc.lower.fused``);
    ``host_gemm`` (0/1): the input projections of the whole sequence are one GEMM of the
    host's maintained BLAS before the kernel runs, instead of the kernel's own blocked GEMM per
    time chunk.  CPU (oneDNN/MKL through torch): faster where that library's micro-kernels beat
    the generated loop (large ``T*B``), measured by the tuner, never assumed.  GPU (cuBLAS through
    torch, the default): the kernel's projection runs on the recurrent grid's few blocks, one
    serial dot product per output and thread, on the critical path of every time chunk, while a
    GEMM over all ``T*B`` rows fills the GPU (as cuDNN and FlashRNN do); ``ukernel`` (CPU,
    0/1): multi-row GEMM tiles (float, or int8 codes) and one-row int8 tiles are register-tile
    micro-kernels (``rnnc.backends.cstyle.ukernels``) instead of loops gcc vectorises; ``widen_codes`` (0/1):
    the int8 codes of weight-only quantized linears are packed as floats once, when the weights
    are packed, instead of streaming as int8 and widening in registers at every use.  Exact either
    way (every int8 code is a float), so it is a speed choice only: four times the weight bytes,
    none of the widening instructions.

    GPU only (``reduce_inner``): ``register_k`` of the ``K`` columns of each recurrent weight row
    stay in registers for the whole sequence (each warp owns rows, its 32 lanes split ``K``), the
    other ``K - register_k`` in shared memory; ``max_registers`` caps registers per thread at the
    Schedule's prediction (``__maxnreg__``; 0 = no cap), so ptxas either meets it or reports
    spills, which the backend feeds back into the solver.
    """

    tile_hidden: int = 16
    batch_block: int = 4
    time_chunk: int = 16
    workers: int = 0
    threads: int = 256
    reduce_inner: bool = False
    resident: bool = False
    dtype: str = "float32"
    register_k: int = 0
    max_registers: int = 0
    k_block: int = 0
    host_gemm: int = 0
    ukernel: int = 1
    widen_codes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = tuple(Knobs.__dataclass_fields__)
#: Schedule kernel name of C knob variants the tuner searches beside the solver's tilings: their
#: params are Knobs fields, rendered unchanged (``rnnc.tune.adapt_c.CTunable.knob_variants``)
CPU_KNOBS_KERNEL = "cpu_knobs"


def knobs_for(hidden: int, gates: int, target: Any = None, schedule: Any = None, dtype: str = "float32",
              batch: int | None = None, int8_weights: bool = False) -> Knobs:
    """Knobs from ``schedule`` when given (fields it lacks fall back), else from heuristics
    (``int8_weights``: the layer has weight-only int8 linears, see :func:`cpu_knobs`)."""
    base = gpu_knobs(hidden, gates, target, dtype, batch) if _is_gpu(target) else cpu_knobs(
        hidden, gates, target, dtype, int8_weights)
    if schedule is None:
        return base
    src = schedule if isinstance(schedule, dict) else from_schedule(schedule, hidden)
    return Knobs(**{**base.to_dict(), **{k: v for k, v in src.items() if k in _FIELDS}})


def schedule_threads(schedule: Any) -> int:
    """The CPU worker count a Schedule was measured with (0: decided at run time, also when there
    is no Schedule) -- what the C runtime must use for a tuned layer to run as it was timed."""
    return int(schedule.param("threads", 0) or 0) if hasattr(schedule, "param") else 0


def from_schedule(schedule: Any, hidden: int) -> dict[str, Any]:
    """Map an ``rnnc.constraints.Schedule``'s params onto knobs.

    ``fused_recurrence`` (GPU): ``hidden_tile``, ``batch_tile``, ``warps``, ``blocks_per_head``.
    ``register_k`` (K-columns of R in registers) and the predicted registers per thread
    (``max_registers``) are rendered as they are.
    ``cpu_fused_recurrence``: ``threads``, ``mr``, ``nr`` (see :func:`_from_cpu_fused`).
    """
    p = dict(getattr(schedule, "params", ()))
    out: dict[str, Any] = {}
    if "hidden_tile" in p and hidden % int(p["hidden_tile"]) == 0:
        out["tile_hidden"] = int(p["hidden_tile"])
        out["workers"] = hidden // int(p["hidden_tile"])
    if "batch_tile" in p:
        out["batch_block"] = int(p["batch_tile"])
    if "warps" in p:
        out["threads"] = 32 * int(p["warps"])
    if "register_k" in p:  # GPU: the register/shared split of R and the register budget
        out["register_k"] = int(p["register_k"])
        regs = getattr(getattr(schedule, "resources", None), "registers_per_thread", 0)
        # a Schedule without register weights predicts registers for accumulators and the model's
        # overhead only; capping at that would make ptxas spill, so only register tiles are capped
        out["max_registers"] = int(regs or 0) if out["register_k"] > 0 else 0
        # the solver pads the batch to the tensor-core n (8) for mma shapes; this kernel runs
        # SIMT FMAs, so a tile of more batch rows than the problem has only costs registers
        batch = dict(getattr(schedule, "problem", ())).get("batch")
        if batch and "batch_tile" in p:
            out["batch_block"] = max(1, min(int(p["batch_tile"]), int(batch)))
    if getattr(schedule, "kernel", "") == CPU_KNOBS_KERNEL:  # the tuner's own knob variants: as they are
        out.update({k: int(v) for k, v in p.items() if k in _FIELDS and k != "workers"})
        if "threads" in p:
            out["workers"] = int(p["threads"])
    elif getattr(schedule, "kernel", "") == "cpu_fused_recurrence":
        out.update(_from_cpu_fused(p, hidden))
    elif getattr(schedule, "kernel", "").startswith("cpu") and "threads" in p:
        out["workers"] = int(p["threads"])
    return out


def _from_cpu_fused(p: dict[str, Any], hidden: int) -> dict[str, Any]:
    """``cpu_fused_recurrence`` params as C-lowering knobs.

    ``threads`` -> ``workers``; the micro-tile of ``mr`` vectors of ``vector_lanes`` rows of R ->
    ``tile_hidden``: a tile owns the ``G`` gate rows of its units, so it is the largest divisor
    of H with ``G * tile_hidden <= mr * lanes`` (``G = rows_per_thread * threads / H``);
    ``nr`` batch columns -> ``batch_block`` (rows of the register tile); ``k_block`` -> ``k_block``
    (rendered for row blocks of B > 1; one row reads each weight once per step anyway).  Not
    rendered: ``l2_resident`` (where the weights live is up to the caches; the kernel's
    serpentine tile order reuses what L2 holds)."""
    out: dict[str, Any] = {}
    if "threads" in p:
        out["workers"] = int(p["threads"])
    if {"mr", "vector_lanes", "rows_per_thread", "threads"} <= p.keys():
        # the Schedule names its gates (rows may be padded to whole vectors); older ones do not
        gates = int(p["gates"]) if "gates" in p else max(1, int(p["rows_per_thread"]) * int(p["threads"]) //
                                                          max(hidden, 1))
        out["tile_hidden"] = _divisor_at_most(hidden, max(1, int(p["mr"]) * int(p["vector_lanes"]) // gates))
    if "nr" in p:
        out["batch_block"] = max(1, int(p["nr"]))
    if "k_block" in p:
        out["k_block"] = int(p["k_block"])
    return out


def _is_gpu(target: Any) -> bool:
    return target is not None and getattr(target, "gpu", None) is not None


def _divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def cpu_knobs(hidden: int, gates: int, target: Any, dtype: str, int8_weights: bool = False) -> Knobs:
    """A tile of ``gates * tile_hidden`` outputs spans four vector registers per batch row; the
    micro-kernel holds those weight vectors plus one accumulator per row and vector, so the batch
    rows are as many as the rest of the registers take, at most four: 4 on AVX-512 (16 of 32
    registers), 3 on AVX2 (12 + 4 of 16; LSTM H=512 B=16, x86-64-v3 on a Zen 4: 48 ms with 3
    rows vs 55 ms with 2, measured with ``benchmarks/cpu_rnn.py``).  A tile of streamed int8
    codes widens each weight vector into a register of its own, so it counts them twice:
    AVX2 then takes 2 rows (int8 LSTM H=512 B=16: 57 ms vs 92 ms with 3), AVX-512 still 4.

    ``time_chunk``: each chunk's input projection streams all input weights once; when the two
    weight matrices together exceed half the L3 that stream evicts the recurrent weights the
    steps need, so big layers take long chunks (LSTM H=1024 B=1 T=128: -15% with 128 instead of
    16; H<=512 and B=16 measured no gain, and the projection buffer grows with the chunk).

    ``widen_codes`` (``int8_weights`` only): int8 codes stream at a quarter of the bytes but cost
    two widening instructions per weight vector.  Which wins at one row per step is the CPU cost
    model's call (``rnnc.lower.cpu_cost``: for ``cpu/host`` the micro-kernels' measured rate per
    memory level on this machine, probed once and cached; a roofline from the YAML otherwise):
    streaming pays where the float weights would leave the L2 between steps (Zen 4 LSTM B=1
    H=1024: 1.31x the fp32 kernel, H=512 1.11x) and not where they stay (H=128: widened, i.e. the
    fp32 kernel).  Batched steps are compute-bound, where widening once wins (B=16 streamed
    0.85-0.95x); the batch is not known here, so the tuner measures that (``rnnc.tune.adapt_c``).
    The tile itself is the same for int8 codes (the micro-kernels widen per vector)."""
    cpu = getattr(target, "cpu", None)
    lanes = (cpu.vector_width_bits // 32) if cpu is not None else 16
    want = max(1, (4 * lanes) // max(gates, 1))
    tile = _divisor_at_most(hidden, want)
    # without a CPU target (a bare lowering) int8 codes are widened: the float kernel's speed
    widen = int(int8_weights and (cpu is None or not stream_int8_codes(hidden, gates, rates_for(target))))
    block = batch_rows(cpu, gates, tile, streamed=int8_weights and not widen)
    l3 = getattr(cpu, "l3_bytes", 0) or 32 * 2**20
    weights = 2 * gates * hidden * hidden * DTYPE_BYTES.get(dtype, 4)
    chunk = 128 if weights > l3 // 2 else 16
    return Knobs(tile_hidden=tile, batch_block=block, time_chunk=chunk, workers=0, dtype=dtype, widen_codes=widen)


def batch_rows(cpu: Any, gates: int, tile: int, streamed: bool = False) -> int:
    """Batch rows of a CPU register tile of ``gates * tile`` outputs (``cpu``: a target's CPU
    data, None for AVX-512's 16 lanes and 32 registers): as many as the registers left after its
    weight vectors hold accumulators, at most four; streamed int8 codes widen each weight vector
    into a register of its own, so they count twice (see :func:`cpu_knobs`)."""
    lanes = (cpu.vector_width_bits // 32) if cpu is not None else 16
    registers = cpu.vector_registers if cpu is not None else 32
    vectors = max(1, (gates * tile + lanes - 1) // lanes)
    return max(1, min(4, (registers - (2 if streamed else 1) * vectors) // vectors))


def gpu_knobs(hidden: int, gates: int, target: Any, dtype: str, batch: int | None) -> Knobs:
    """FlashRNN-style: one tile per block, its recurrent weight slice resident in shared memory;
    the tile is the smallest that lets every block be co-resident (grid sync needs that) while
    its weights fit the opt-in shared memory of one block."""
    gpu = target.gpu
    bytes_ = DTYPE_BYTES.get(dtype, 4)
    smem = gpu.shared_memory_per_block_optin_bytes - gpu.shared_memory_reserved_per_block_bytes
    choice = None
    for tile in sorted(d for d in range(1, hidden + 1) if hidden % d == 0):
        blocks = hidden // tile
        if blocks > gpu.sm_count:
            continue
        need = predict_smem(hidden, gates, tile, 1, bytes_)
        if need <= smem:
            choice = tile
            break
    if choice is None:  # infeasible: the smallest co-resident tile, whose need check_feasible reports
        choice = min((d for d in range(1, hidden + 1) if hidden % d == 0 and hidden // d <= gpu.sm_count),
                     default=hidden)
    threads = min(gpu.max_threads_per_block, max(gpu.warp_size, _round_up(gates * choice, gpu.warp_size)))
    return Knobs(tile_hidden=choice, batch_block=1, time_chunk=8, workers=hidden // choice, threads=threads,
                 reduce_inner=True, resident=True, dtype=dtype, host_gemm=1)


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def predict_smem(hidden: int, gates: int, tile: int, batch_block: int, bytes_: int, input_linears: int = 1,
                 register_k: int = 0) -> int:
    """Shared memory of one fused CUDA block: the part of the resident recurrent weight slice
    that is not in registers (``hidden - register_k`` columns, storage dtype) plus one fp32
    accumulator tile for the recurrent GEMM and one per input projection.
    Must equal what ``rnnc.lower.fused`` allocates (tests check it against ptxas)."""
    def r16(n: int) -> int:  # every shared array is 16-byte aligned
        return _round_up(n, 16)

    shared_k = hidden - min(max(register_k, 0), hidden)
    return r16(shared_k * gates * tile * bytes_) + (1 + input_linears) * r16(batch_block * gates * tile * 4)
