"""What a tiling problem is about: a frozen, torch-free description of one recurrent layer.

The backends and the tuner build a :class:`ProblemSpec` from an IR layer; the CLI builds one
from flags.  It names the cell, not IR objects, so that the solver stays a pure library
(docs/design.md: constraints never import ir, torch or backends).  Custom cells pass ``family``
and ``gates`` (or ``scan``) explicitly instead of a known cell name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from rnnc.errors import UserInputError
from rnnc.targets import DTYPE_BYTES

FUSED, SCAN, CHUNK = "fused", "scan", "chunk"
#: kernel-calibration fields of ProblemSpec, omitted from ``key()`` at their defaults
_CALIBRATION = ("shared_weights", "register_overhead", "min_warps", "tensor_cores", "batch_split", "pow2_tiles")


@dataclass(frozen=True)
class CellInfo:
    """What the tiling problems need to know about a cell.

    fused cells (nonlinear recurrence, one matrix-vector product per step):
        ``gates``: recurrent gate matrices (rows of R per hidden unit); ``states``: state
        vectors per hidden unit kept across steps.
    scan cells (linear/diagonal recurrence, chunked parallel scan):
        ``scan``: ``diag`` (elementwise state), ``selective`` (N-wide state per channel with
        per-step shared inputs, Mamba S6) or ``matrix`` (mLSTM's Dh x Dh state per head, the
        :data:`ALTERNATES` entry); ``inputs``: values read per step and channel;
        ``state_words``: fp32 words of state per channel (2 for a complex diagonal).
    chunk cells (a [DK, DV] matrix state per head, chunkwise-parallel form):
        ``scan``: ``gla`` (decay per head or none), ``gla_channel`` (decay per key channel),
        ``delta`` (delta rule, WY/UT form) or ``mlstm`` (``gla`` with the normaliser as one more
        value column, ``rnnc.ir.chunkform``); DK is the spec's ``state_size``.
    """

    family: str
    gates: int = 1
    states: int = 1
    scan: str = ""
    inputs: int = 0
    state_words: int = 1


CELLS: dict[str, CellInfo] = {
    "lstm": CellInfo(FUSED, gates=4, states=2),
    "gru": CellInfo(FUSED, gates=3, states=1),
    "elman": CellInfo(FUSED, gates=1, states=1),
    "slstm": CellInfo(FUSED, gates=4, states=4),
    "mingru": CellInfo(SCAN, scan="diag", inputs=2, state_words=1),
    "minlstm": CellInfo(SCAN, scan="diag", inputs=3, state_words=1),
    "lru": CellInfo(SCAN, scan="diag", inputs=2, state_words=2),
    "mamba": CellInfo(SCAN, scan="selective", inputs=2, state_words=1),
    "mlstm": CellInfo(CHUNK, scan="mlstm"),
    "gla": CellInfo(CHUNK, scan="gla_channel"),
    "hgrn2": CellInfo(CHUNK, scan="gla_channel"),
    "retnet": CellInfo(CHUNK, scan="gla"),
    "mamba2": CellInfo(CHUNK, scan="gla"),
    "deltanet": CellInfo(CHUNK, scan="delta"),
}
ALIASES = {"rnn": "elman", "s6": "mamba"}
#: a known cell's second family, asked for with ``family=``: mLSTM as one chunked scan over its
#: flattened matrix state -- the GPU kernel for heads too wide for the chunkwise kernel's tiles
ALTERNATES: dict[tuple[str, str], CellInfo] = {("mlstm", SCAN): CellInfo(SCAN, scan="matrix", inputs=1)}


@dataclass(frozen=True)
class ProblemSpec:
    """One recurrent layer to tile.

    ``hidden`` is the total hidden size (all heads); ``state_size`` is Mamba's N;
    ``grid_sync=False`` asks for one block per head ("single block"), no grid-wide sync
    (fused family only); ``register_weights=False`` keeps the recurrent weights in shared
    memory only, for kernels that do not cache them in registers.  ``input_size`` does not
    change the recurrent tiling (the input projection is a separate GEMM) but is part of
    ``key()``, so tuning records keyed on a Schedule's problem stay distinct.
    ``family``/``gates`` override the cell table for user-written cells.

    Kernel calibration (fused family; ``register_overhead`` also for the scan family; a backend
    sets these, usually from what its compiler
    reported, because the model only knows the weights, accumulators and a fixed overhead):
    ``shared_weights=False`` for kernels that keep every recurrent weight in registers (the
    Triton kernel: tensors loaded before the time loop live in registers, nothing puts them in
    shared memory); ``register_overhead`` extra 32-bit registers per thread on top of the
    model's fixed overhead (may be negative; the model's total overhead never goes below 0);
    ``min_warps`` the fewest warps per block to consider (a configuration the compiler showed
    to spill); ``tensor_cores=False`` for kernels whose recurrent GEMM runs as SIMT FMAs (the CUDA
    dialect's warp GEMM): the model then counts the FMA rate, not the tensor cores' -- a bf16
    kernel modelled at the mma rate looks compute-free, and the solver traded its warps away
    (GRU H=768 B=16 bf16 on an H200: 1 warp per block, 16x slower than cuDNN);
    ``batch_split=False`` for kernels that run a block's batch tiles one after another instead of
    on blocks of their own (the CUDA dialect's fused kernel): the step then costs every batch row
    on each block, and the grid is the hidden split alone; ``pow2_tiles=True`` for kernels whose
    tiles are power-of-two blocks (Triton's ``tl.arange``): a hidden tile of 12 would hold 16
    rows of weights per gate in registers, so only power-of-two hidden tiles (or the whole
    hidden size) are offered.  At their defaults they are left out of ``key()``, so existing
    tuning records and schedules keep their keys.
    """

    cell: str
    hidden: int
    heads: int = 1
    batch: int = 1
    dtype: str = "bf16"
    input_size: int | None = None
    state_size: int = 16
    seq_len: int = 1024
    grid_sync: bool = True
    register_weights: bool = True
    family: str | None = None
    gates: int | None = None
    shared_weights: bool = True
    register_overhead: int = 0
    min_warps: int = 1
    tensor_cores: bool = True
    batch_split: bool = True
    pow2_tiles: bool = False

    def __post_init__(self) -> None:
        cell = ALIASES.get(self.cell.lower(), self.cell.lower())
        object.__setattr__(self, "cell", cell)
        if cell not in CELLS and self.family is None:
            raise UserInputError(
                f"unknown cell {self.cell!r}; known cells are {', '.join(CELLS)} "
                "(a custom cell needs family='fused' with gates=N, or family='scan')"
            )
        for name in ("hidden", "heads", "batch", "state_size", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserInputError(f"{name} must be a positive integer, got {value!r}")
        if self.input_size is not None and (not isinstance(self.input_size, int) or self.input_size < 1):
            raise UserInputError(f"input_size must be a positive integer, got {self.input_size!r}")
        if self.dtype not in DTYPE_BYTES:
            raise UserInputError(f"unknown dtype {self.dtype!r}; known: {', '.join(DTYPE_BYTES)}")
        if self.hidden % self.heads:
            raise UserInputError(
                f"hidden={self.hidden} is not divisible by heads={self.heads}; pick heads that divide the hidden size"
            )
        if isinstance(self.register_overhead, bool) or not isinstance(self.register_overhead, int):
            raise UserInputError(f"register_overhead must be an integer, got {self.register_overhead!r}")
        if isinstance(self.min_warps, bool) or not isinstance(self.min_warps, int) or self.min_warps < 1:
            raise UserInputError(f"min_warps must be a positive integer, got {self.min_warps!r}")
        if self.family not in (None, FUSED, SCAN, CHUNK):
            raise UserInputError(f"family must be 'fused', 'scan' or 'chunk', got {self.family!r}")
        if self.gates is not None and (not isinstance(self.gates, int) or self.gates < 1):
            raise UserInputError(f"gates must be a positive integer, got {self.gates!r}")

    @property
    def info(self) -> CellInfo:
        if self.cell in CELLS and self.family in (None, CELLS[self.cell].family):
            base = CELLS[self.cell]
        elif (self.cell, self.family) in ALTERNATES:
            base = ALTERNATES[self.cell, str(self.family)]
        else:  # a user-written cell: fused with `gates` matrices, or a diagonal scan
            base = CellInfo(self.family or FUSED, scan="diag", inputs=2)
        return replace(base, gates=self.gates) if self.gates is not None else base

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def replace(self, **changes: Any) -> ProblemSpec:
        return replace(self, **changes)

    def key(self) -> tuple[tuple[str, Any], ...]:
        """Sorted (field, value) pairs: hashable, JSON-friendly, part of a Schedule."""
        return tuple(sorted((f.name, getattr(self, f.name)) for f in fields(self)
                            if f.name not in _CALIBRATION or getattr(self, f.name) != f.default))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """Short human label such as 'LSTM H=768 heads=1 batch=16 bf16'."""
        extra = " single block" if not self.grid_sync and self.info.family == FUSED else ""
        return f"{self.cell.upper()} H={self.hidden} heads={self.heads} batch={self.batch} {self.dtype}{extra}"
