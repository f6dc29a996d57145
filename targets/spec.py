"""Frozen descriptions of a piece of hardware, as read from ``targets/*.yaml``.

Hardware is data (docs/design.md convention 4): every number a tiling decision depends on lives in a
YAML file with a comment citing where it comes from, and reaches code only through these frozen
dataclasses.  Mappings are stored as sorted tuples of pairs so that a ``HardwareSpec`` is
hashable and can be part of a cache or tuning key; accessor methods give dict-like reads.

Units are spelled out in field names: ``*_bytes`` are bytes, ``clock_mhz`` megahertz,
``memory_bandwidth_gbs`` 10^9 bytes per second, ``peak_tflops`` 10^12 operations per second
(dense, no structured sparsity; 16-bit tensor-core rates with FP32 accumulation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Bytes per element of every dtype name rnnc uses.  Not hardware data: a property of the format.
DTYPE_BYTES: dict[str, int] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
}


@dataclass(frozen=True)
class MmaShape:
    """One warp-level matrix-multiply-accumulate instruction shape (PTX ``mma.sync.mMnNkK``).

    ``m`` rows of A/C, ``n`` columns of B/C, ``k`` the reduction length: a tile that feeds a
    tensor core must be a multiple of these, which is why the solver needs them.
    """

    m: int
    n: int
    k: int

    def __str__(self) -> str:
        return f"m{self.m}n{self.n}k{self.k}"


@dataclass(frozen=True)
class GpuSpec:
    """Per-SM and per-block limits of a GPU (CUDA programming guide, compute capability table)."""

    compute_capability: tuple[int, int]
    sm_count: int
    warp_size: int
    max_threads_per_block: int
    max_threads_per_sm: int
    max_blocks_per_sm: int
    registers_per_sm: int
    registers_per_block: int
    registers_per_thread: int
    register_allocation_unit: int
    shared_memory_per_sm_bytes: int
    shared_memory_per_block_bytes: int
    shared_memory_per_block_optin_bytes: int
    shared_memory_reserved_per_block_bytes: int
    l1_shared_per_sm_bytes: int
    l2_bytes: int
    schedulers_per_sm: int
    shared_memory_bytes_per_clock: int
    dram_latency_cycles: int
    grid_sync_us: float
    mma_shapes: tuple[tuple[str, tuple[MmaShape, ...]], ...]

    def mma(self, dtype: str) -> tuple[MmaShape, ...]:
        """Tensor-core shapes for ``dtype`` inputs, preferred first; empty if none."""
        for name, shapes in self.mma_shapes:
            if name == dtype:
                return shapes
        return ()

    @property
    def max_warps_per_sm(self) -> int:
        return self.max_threads_per_sm // self.warp_size


#: how an 8-bit integer dot product adds its products on a CPU (``targets/int8dot.py`` models each)
INT8_SEMANTICS = ("exact", "saturating_pairs")
#: integer formats rnnc emits: ``s8`` u8 activations x full-range int8 weights; ``s7`` the same with
#: 7-bit weights (|w| <= 63); ``u8`` u8 x u8 (weights shifted by 128, zero point 128)
INT8_FORMATS = ("s8", "s7", "u8")


@dataclass(frozen=True)
class Int8Dot:
    """The CPU's integer dot-product semantics, as onnxruntime's u8 x s8 GEMM meets them.

    Why it is target data: the same int8 ONNX file is exact on a CPU with AVX512-VNNI (``vpdpbusd``
    adds into int32) and wrong on one without (``vpmaddubsw`` adds pairs of u8 x s8 products into a
    *saturating* int16), so which integer format is exact depends on the CPU the model will run on,
    not on the one it was built on.  ``format`` is the format rnnc emits for this target by default
    and ``source`` says where the entry came from (the YAML file, or the host's CPU flags).
    """

    instruction: str
    semantics: str
    format: str
    source: str = ""

    def __str__(self) -> str:
        return f"{self.instruction} ({self.semantics}), format {self.format}" + (
            f" [{self.source}]" if self.source else "")


@dataclass(frozen=True)
class CpuSpec:
    """Core count, SIMD and cache sizes of a CPU (per core unless the name says ``shared``)."""

    isa: str
    vector_extension: str
    vector_width_bits: int
    vector_registers: int
    fma_units_per_core: int
    fma_latency_cycles: int
    cores: int
    l1d_bytes: int
    l2_bytes: int
    l3_bytes: int
    cache_line_bytes: int
    l2_bytes_per_cycle: int
    int8_dot: Int8Dot = Int8Dot("generic", "exact", "s8", "default: no int8_dot entry")
    march: str = "native"  # gcc -march of the C kernels built for this target (cpu/host: native)
    isa_flags: tuple[str, ...] = ()  # CPU flags needed to run them (what a host must have to measure)

    def lanes(self, dtype: str) -> int:
        """Vector lanes of one register for ``dtype`` elements (8 fp32 lanes in 256 bits)."""
        return max(1, self.vector_width_bits // (8 * DTYPE_BYTES[dtype]))


@dataclass(frozen=True)
class HardwareSpec:
    """One target device.  ``gpu`` is set for GPUs, ``cpu`` for CPUs, never both."""

    tag: str
    name: str
    vendor: str
    kind: str
    architecture: str
    clock_mhz: int
    memory_bytes: int
    memory_bandwidth_gbs: float
    dtypes: tuple[str, ...]
    peak_tflops: tuple[tuple[str, float], ...]
    gpu: GpuSpec | None = None
    cpu: CpuSpec | None = None
    sources: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    path: str = ""
    companion_cpu: str = ""  # SoCs (Jetson): the CPU target beside this GPU, for what runs on the CPU

    @property
    def is_gpu(self) -> bool:
        return self.gpu is not None

    def peak(self, dtype: str) -> float | None:
        """Dense peak of ``dtype`` in TFLOP/s (TOP/s for int8), or None if not listed."""
        for name, value in self.peak_tflops:
            if name == dtype:
                return value
        return None

    def supports(self, dtype: str) -> bool:
        return dtype in self.dtypes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (mappings as dicts, tuples as lists)."""
        out = asdict(self)
        out["peak_tflops"] = dict(self.peak_tflops)
        out["sources"] = dict(self.sources)
        out["notes"] = list(self.notes)
        out["dtypes"] = list(self.dtypes)
        if self.gpu is not None:
            out["gpu"]["compute_capability"] = list(self.gpu.compute_capability)
            out["gpu"]["mma_shapes"] = {
                name: [str(s) for s in shapes] for name, shapes in self.gpu.mma_shapes
            }
        return out
