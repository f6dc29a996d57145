"""The lowering's view of a Schedule: the handful of tiling decisions a loop nest is built from.

``rnnc.constraints`` owns the one ``Schedule`` type.  The lowering reads only the fields below,
through :func:`knobs_for`, which takes a Schedule (any object with these attribute names) when
the solver produced one, and otherwise derives the same decisions from the target's data with
the heuristics here.  ``Knobs`` is not a second Schedule: it is the lowering's input signature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
    shared memory) before the time loop; ``dtype``: storage dtype of weights and activations.
    """

    tile_hidden: int = 16
    batch_block: int = 4
    time_chunk: int = 16
    workers: int = 0
    threads: int = 256
    reduce_inner: bool = False
    resident: bool = False
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = tuple(Knobs.__dataclass_fields__)


def knobs_for(hidden: int, gates: int, target: Any = None, schedule: Any = None, dtype: str = "float32",
              batch: int | None = None) -> Knobs:
    """Knobs from ``schedule`` when given (fields it lacks fall back), else from heuristics."""
    base = gpu_knobs(hidden, gates, target, dtype, batch) if _is_gpu(target) else cpu_knobs(hidden, gates,
                                                                                              target, dtype)
    if schedule is None:
        return base
    src = schedule if isinstance(schedule, dict) else from_schedule(schedule, hidden)
    return Knobs(**{**base.to_dict(), **{k: v for k, v in src.items() if k in _FIELDS}})


def from_schedule(schedule: Any, hidden: int) -> dict[str, Any]:
    """Map an ``rnnc.constraints.Schedule``'s params onto knobs.

    ``fused_recurrence`` (GPU): ``hidden_tile``, ``batch_tile``, ``warps``, ``blocks_per_head``.
    This kernel keeps the whole recurrent slice in shared memory (``register_k`` is not
    rendered yet), so the Schedule's register/shared split is read as "all shared".
    ``cpu_fused_recurrence``: ``threads`` (the register tile follows the vector width).
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
    if getattr(schedule, "kernel", "").startswith("cpu") and "threads" in p:
        out["workers"] = int(p["threads"])
    return out


def _is_gpu(target: Any) -> bool:
    return target is not None and getattr(target, "gpu", None) is not None


def _divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def cpu_knobs(hidden: int, gates: int, target: Any, dtype: str) -> Knobs:
    """A tile of ``gates * tile_hidden`` outputs spans four vector registers per batch row, and
    four batch rows keep 16 accumulators live (of 32 AVX-512 / 16 AVX2 registers)."""
    cpu = getattr(target, "cpu", None)
    lanes = (cpu.vector_width_bits // 32) if cpu is not None else 16
    want = max(1, (4 * lanes) // max(gates, 1))
    tile = _divisor_at_most(hidden, want)
    regs = cpu.vector_registers if cpu is not None else 32
    block = max(1, min(4, (regs // 2) // max(1, (gates * tile + lanes - 1) // lanes)))
    return Knobs(tile_hidden=tile, batch_block=block, time_chunk=16, workers=0, dtype=dtype)


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
                 reduce_inner=True, resident=True, dtype=dtype)


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def predict_smem(hidden: int, gates: int, tile: int, batch_block: int, bytes_: int, input_linears: int = 1) -> int:
    """Shared memory of one fused CUDA block: the resident recurrent weight slice (storage
    dtype) plus one fp32 accumulator tile for the recurrent GEMM and one per input projection.
    Must equal what ``rnnc.lower.fused`` allocates (tests check it against ptxas)."""
    def r16(n: int) -> int:  # every shared array is 16-byte aligned
        return _round_up(n, 16)

    return r16(hidden * gates * tile * bytes_) + (1 + input_linears) * r16(batch_block * gates * tile * 4)
