"""Load rendered kernels and run Programs with them.

``@triton.jit`` reads its kernel's source with ``inspect``, so a rendered kernel must live in a
real ``.py`` file: :func:`load_kernel` writes it under ``.cache/rnnc/triton/`` keyed by the hash
of the source and imports it from there.  On a machine without a GPU the same kernels run under
``TRITON_INTERPRET=1`` (set before triton is imported) on CPU tensors.

:class:`TritonProgram` runs a whole Program: ``rnn`` nodes layer by layer and direction by
direction, one fused kernel launch each for nonlinear cells (after the hoisted input projection,
one torch evaluation of the pre-loop graph over all ``T * B`` rows) or one chunked-scan launch
per scan component for linear cells (``rnnc.backends.triton.scan``); every other node through
the IR's own evaluators.  Storage dtype (fp32/fp16/bf16) is the program's; arithmetic is fp32.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnc.backends.triton.chunk import ChunkPlan, plan_chunk, render_chunk, run_chunk_layer, tiles
from rnnc.backends.triton.plan import LoopPlan, derive_param, plan_cell, split_hidden
from rnnc.backends.triton.render import KERNEL_NAME, k_piece, kernel_args, pow2, render_kernel, use_dot
from rnnc.backends.triton.scan import render_scan, run_scan_layer
from rnnc.ir.scanform import ScanPlan, plan_scan

_MODULES: dict[str, Any] = {}


def cache_dir() -> Path:
    """Where rendered kernel files go (``RNNC_CACHE`` overrides the repo-local ``.cache``)."""
    return Path(os.environ.get("RNNC_CACHE", ".cache/rnnc")) / "triton"


def load_kernel(source: str, directory: Path | None = None) -> Any:
    """The ``@triton.jit`` function of ``source``, imported from a file named by its hash."""
    return getattr(load_module(source, directory), KERNEL_NAME)


def load_module(source: str, directory: Path | None = None) -> Any:
    """The module of ``source`` (its ``@triton.jit`` kernels), imported from a file named by its hash."""
    key = hashlib.sha256(source.encode()).hexdigest()[:20]
    if key not in _MODULES:
        folder = directory or cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"rnnc_{key}.py"
        if not path.exists() or path.read_text() != source:
            path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"rnnc_triton_{key}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        _MODULES[key] = module
    return _MODULES[key]


@dataclass(frozen=True)
class LayerKernel:
    """One cell's plan, kernel source and launch configuration.

    Nonlinear cells (``LoopPlan``): one fused kernel, ``batch_tile`` rows per program; with a
    ``hidden_tile`` (multi-block plan) also ``hidden / hidden_tile`` programs per batch tile that
    exchange the state through global memory every step.
    Linear cells (``ScanPlan``): one chunked-scan kernel per component, ``chunk`` steps per
    chunk and ``tile`` state elements per program (``batch_tile`` unused).
    Chunk-form cells (``ChunkPlan``, the matrix-state family): one chunkwise kernel, ``chunk``
    steps per chunk, ``tile`` value columns per program."""

    plan: LoopPlan | ScanPlan | ChunkPlan
    source: str
    batch_tile: int
    warps: int
    chunk: int = 0
    tile: int = 0
    hidden_tile: int = 0

    @property
    def kernel(self) -> Any:
        return load_kernel(self.source)

    @property
    def module(self) -> Any:
        return load_module(self.source)

    @property
    def is_scan(self) -> bool:
        return isinstance(self.plan, ScanPlan)

    @property
    def is_chunk(self) -> bool:
        return isinstance(self.plan, ChunkPlan)

    @property
    def multi_block(self) -> bool:
        return isinstance(self.plan, LoopPlan) and self.plan.blocks > 1

    def extra_consts(self) -> dict[str, Any]:
        """Constexprs of the fused kernel beyond the tiling: the multi-block kernel's column chunk
        and its persistent (grid-synchronised) variant, the one a GPU runs and AOT compiles."""
        return {"KP": self.kp, "GRID_SYNC": True} if self.multi_block else {}

    @functools.cached_property
    def launch_identity(self) -> tuple[Any, ...]:
        """What a persistent launch's co-residency depends on besides the batch: the source (it
        fixes registers and shared memory with the warps), the warps and the batch tile (with the
        batch, the grid); two plans can render the same source for different grids.  Cached: the
        source is hashed once per kernel, not on every call of the layer."""
        return (hashlib.sha256(self.source.encode()).hexdigest()[:16], self.warps, self.batch_tile, self.hidden_tile)

    @property
    def kp(self) -> int:
        """The multi-block kernel's column chunk for this batch tile and warp count (render.k_piece)."""
        return k_piece(self.plan, self.batch_tile, self.warps)

    @property
    def knobs(self) -> dict[str, int]:
        """What a manifest records to rebuild this launch configuration."""
        if self.is_scan or self.is_chunk:
            return {"chunk": self.chunk, "tile": self.tile, "warps": self.warps}
        knobs = {"batch_tile": self.batch_tile, "warps": self.warps, "piece": self.plan.piece}
        if self.plan.storage:
            knobs["storage"] = self.plan.storage
        if self.multi_block:
            knobs.update(hidden_tile=self.hidden_tile, hidden_blocks=self.plan.blocks)
        return knobs

    def grid(self, batch: int) -> tuple[int, int]:
        """Programs along (batch tiles, heads or hidden blocks)."""
        return -(-batch // self.batch_tile), self.plan.split[0]


def plan_any(cell: Any, chunkwise: bool = True) -> LoopPlan | ScanPlan | ChunkPlan:
    """The cell's plan: the chunkwise kernel for a cell with a verified chunk form
    (``rnnc.passes.chunk``) unless ``chunkwise=False``, a chunked scan for other ``linear``
    cells, the fused loop otherwise."""
    from rnnc.passes import plan_layer

    form = plan_layer(cell).chunk
    if form is not None and chunkwise:
        return plan_chunk(cell, form)
    return plan_scan(cell) if cell.recurrence == "linear" else plan_cell(cell)


def layer_kernel(cell: Any, batch_tile: int = 16, warps: int = 4, chunk: int = 64, tile: int = 1024,
                 hidden_tile: int = 0, chunkwise: bool = True, storage: str = "") -> LayerKernel:
    """Plan and render ``cell`` with this launch configuration (sizes rounded up to powers of two);
    a ``hidden_tile`` smaller than the hidden size renders the multi-block kernel;
    ``chunkwise=False`` runs a chunk-form cell as a chunked scan; ``storage``: a 16-bit model's
    storage dtype (``rnnc.ir.printer.layer_storage``; scans and chunk kernels stream fp32)."""
    plan = plan_any(cell, chunkwise)
    if storage and isinstance(plan, LoopPlan):
        plan = dataclasses.replace(plan, storage=storage)
    if isinstance(plan, ChunkPlan):  # chunk: steps per chunk; tile: value columns per program
        consts = tiles(plan, min(chunk, 64), tile)  # what the kernel runs (16..64 steps, 16+ columns)
        return LayerKernel(plan, render_chunk(plan), 1, warps, consts["C"], consts["VT"])
    if isinstance(plan, ScanPlan):
        return LayerKernel(plan, render_scan(plan), 1, warps, pow2(max(1, chunk)), pow2(max(1, tile)))
    bt = pow2(max(1, batch_tile))
    if hidden_tile and hidden_tile != cell.hidden_size:
        plan = split_hidden(plan, hidden_tile)
        return LayerKernel(plan, render_kernel(plan, use_dot(plan, bt), k_piece(plan, bt, warps)), bt, warps,
                           hidden_tile=hidden_tile)
    return LayerKernel(plan, render_kernel(plan, use_dot(plan, bt)), bt, warps)


def _device() -> str:
    import torch

    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    return "cuda" if torch.cuda.is_available() and not interpret else "cpu"


def run_layer(lk: LayerKernel, x: Any, params: dict[str, Any], init: list[Any], lengths: Any,
              reverse: bool) -> tuple[Any, list[Any]]:
    """One (layer, direction): ``x`` is time-major ``[T, B, I]``; returns ``y [T, B, O]`` and the
    final states ``[B, F]``."""
    import torch

    if lk.is_scan:
        return run_scan_layer(lk, x, params, init, lengths, reverse)
    if lk.is_chunk:
        return run_chunk_layer(lk, x, params, init, lengths, reverse)

    from rnnc.ir.interp import run_graph

    plan = lk.plan
    steps, batch = x.shape[0], x.shape[1]
    store = x.dtype  # fp16/bf16 storage: the hoisted projection accumulates in fp32, then is stored
    fp32 = {k: v.float() for k, v in params.items()}
    pre = run_graph(plan.pre, {plan.cell.step.input_names[0]: x.reshape(steps * batch, -1).float(), **fp32})
    values = dict(zip([v for _, v in plan.pre.outputs], pre, strict=True))
    values.update(params)
    values.update({name: derive_param(plan, name, params) for name in plan.derived})
    values.update(zip(plan.cell.step.input_names[1:], init, strict=True))
    args = []
    for name in kernel_args(plan):
        v = values[name]
        if name in plan.stepped:
            v = v.reshape(steps, batch, -1)
        args.append(v.to(store).contiguous())
    y = torch.empty((steps, batch, plan.cell.output_size), dtype=store, device=x.device)
    finals = [torch.empty((batch, *s.shape), dtype=store, device=x.device) for s in plan.cell.states]
    lens = lengths.to(x.device).contiguous() if lengths is not None else torch.zeros(1, dtype=torch.int64,
                                                                                      device=x.device)
    if lk.multi_block:
        return _run_multi_block(lk, args, y, init, lens, lengths is not None, reverse)
    if steps and batch:
        grid = lk.grid(batch)
        lk.kernel[grid](*args, y, *finals, lens, batch, steps, BB=lk.batch_tile, SP=pow2(plan.piece),
                        REVERSE=reverse, HAS_LEN=lengths is not None, num_warps=lk.warps)
    else:
        finals = [a.clone() for a in args[-len(finals):]]
    return y, finals


#: resident blocks per SM the hardware allows at most (sm_80..sm_90; torch does not report it)
MAX_BLOCKS_PER_SM = 32
#: (launch identity, batch, device) -> whether a multi-block layer launches persistently, and why
#: (``TritonProgram.explain_lines``); the identity holds everything the answer depends on
LAUNCH_DECISIONS: dict[tuple[tuple[Any, ...], int, str], tuple[bool, str]] = {}


#: shared memory the runtime reserves per resident block (sm_80 and later)
RESERVED_SHARED_PER_BLOCK = 1024


def coresident_blocks(registers: int, shared_bytes: int, warps: int, sm: dict[str, int]) -> int:
    """Blocks of one kernel a single SM holds at once: the least of what its registers (allocated
    per warp in 256-register units), shared memory (plus the 1 KiB reserved per block), thread
    slots and block slots allow.  ``sm``: ``regs``, ``shared``, ``threads`` per SM
    (``torch.cuda.get_device_properties``).  The fallback when the driver's own occupancy query
    cannot be asked (:func:`persistent_ok`)."""
    per_warp = -(-max(registers, 1) * 32 // 256) * 256
    by_regs = (sm["regs"] // per_warp) // warps
    by_smem = sm["shared"] // (shared_bytes + RESERVED_SHARED_PER_BLOCK) if shared_bytes else MAX_BLOCKS_PER_SM
    by_threads = sm["threads"] // (32 * warps)
    return max(0, min(by_regs, by_smem, by_threads, MAX_BLOCKS_PER_SM))


def persistent_ok(lk: LayerKernel, batch: int, device: Any, compiled: Any = None) -> tuple[bool, str]:
    """Whether the persistent grid-synchronised launch is safe, and why (or why not).

    Every program must be resident at once or the spin barrier never passes: the interpreter runs
    programs one after another, and on a GPU the compiled kernel's registers and shared memory
    decide how many blocks an SM holds (``compiled``: Triton's compiled kernel, queried for them;
    without it only one block per SM is assumed).  Co-residency is checked, not assumed: a grid
    larger than the GPU holds gets the per-step launches instead of a hang.  (Other work on the
    same GPU at the same time can still take SMs; the barrier assumes the GPU is this stream's.)"""
    import torch

    if device.type != "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return False, "interpreter: programs run one after another, so a grid barrier cannot be passed"
    programs = lk.grid(batch)[0] * lk.grid(batch)[1]
    props = torch.cuda.get_device_properties(device)
    per_sm = 1
    if compiled is not None:
        try:
            init = getattr(compiled, "_init_handles", None)
            if init is not None:
                init()
            per_sm = _driver_occupancy(compiled, lk.warps)
            if per_sm is None:
                sm = {"regs": int(getattr(props, "regs_per_multiprocessor", 65536)),
                      "shared": int(getattr(props, "shared_memory_per_multiprocessor", 0) or 0),
                      "threads": int(getattr(props, "max_threads_per_multi_processor", 2048))}
                per_sm = coresident_blocks(int(compiled.n_regs), int(compiled.metadata.shared), lk.warps, sm)
        except Exception as exc:  # noqa: BLE001 - an unanswered query must mean "do not risk it"
            return False, f"occupancy query failed ({type(exc).__name__}: {exc}); one launch per step"
    room = per_sm * props.multi_processor_count
    if programs > room:
        return False, (f"{programs} programs, the GPU holds {room} at once ({per_sm} per SM x "
                       f"{props.multi_processor_count} SMs); one launch per step")
    return True, f"persistent: {programs} programs co-resident ({per_sm} per SM x {props.multi_processor_count} SMs)"


def _driver_occupancy(compiled: Any, warps: int) -> int | None:
    """The CUDA driver's answer (``cuOccupancyMaxActiveBlocksPerMultiprocessor``) for Triton's
    compiled kernel, or None when it cannot be asked (no function handle, no driver)."""
    import ctypes

    fn = getattr(compiled, "function", None)
    if not fn:
        return None
    try:
        from rnnc.backends.cstyle.cuda_driver import driver

        drv = driver()
        n = ctypes.c_int()
        rc = drv.lib.cuOccupancyMaxActiveBlocksPerMultiprocessor(
            ctypes.byref(n), ctypes.c_void_p(int(fn)), ctypes.c_int(32 * warps),
            ctypes.c_size_t(int(compiled.metadata.shared)))
    except Exception:  # noqa: BLE001 - fall back to the arithmetic
        return None
    return int(n.value) if rc == 0 else None


def _run_multi_block(lk: LayerKernel, args: list[Any], y: Any, init: list[Any], lens: Any, has_len: bool,
                     reverse: bool) -> tuple[Any, list[Any]]:
    """Launch a multi-block kernel: persistent (one launch, grid barrier per step) when
    :func:`persistent_ok`, else once per step; states in fp32 buffers, cast to storage at the end."""
    import torch

    plan = lk.plan
    steps, batch = y.shape[0], y.shape[1]
    device = y.device
    states = [s.float().contiguous().clone() for s in init]
    names = plan.cell.step.input_names[1:]
    hx = []
    for name in plan.exchange:
        buf = torch.zeros((2, batch, plan.widths[name]), dtype=torch.float32, device=device)
        buf[0] = states[names.index(name)]
        hx.append(buf)
    if steps and batch:
        grid = lk.grid(batch)
        consts = {"BB": lk.batch_tile, "SP": pow2(plan.piece), "KP": lk.kp, "REVERSE": reverse,
                  "HAS_LEN": has_len, "num_warps": lk.warps}
        sync = torch.zeros(1, dtype=torch.int32, device=device)
        call = (*args, *states, y, *hx, sync, lens, batch, steps)
        key = (lk.launch_identity, batch, str(device))
        if key not in LAUNCH_DECISIONS:  # once per launch, batch and device: the answer cannot change
            try:
                compiled = None
                if device.type == "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
                    compiled = lk.kernel.warmup(*call, 0, steps, grid=grid, GRID_SYNC=True, **consts)
                LAUNCH_DECISIONS[key] = persistent_ok(lk, batch, device, compiled)
            except Exception as exc:  # noqa: BLE001 - no compiled kernel to ask: do not risk a hang
                LAUNCH_DECISIONS[key] = (False, f"persistent kernel not queried ({type(exc).__name__}: {exc}); "
                                                "one launch per step")
            if not LAUNCH_DECISIONS[key][0] and device.type == "cuda":
                warnings.warn(f"Triton {plan.cell.kind} layer (H={plan.cell.hidden_size}, batch {batch}): "
                              f"{LAUNCH_DECISIONS[key][1]}", stacklevel=3)
        ok = LAUNCH_DECISIONS[key][0]
        if ok:
            lk.kernel[grid](*call, 0, steps, GRID_SYNC=True, **consts)
        else:
            for i in range(steps):
                lk.kernel[grid](*call, i, 1, GRID_SYNC=False, **consts)
    return y, [s.to(y.dtype) for s in states]


def run_rnn(kernels: list[LayerKernel], attrs: dict[str, Any], xs: list[Any]) -> tuple[Any, ...]:
    """The ``rnn`` op (same inputs/outputs as ``rnnc.ir.rnn``) with one launch per layer and direction."""

    from rnnc.ir.rnn import direction_params, rnn_layout, run_stack

    cells, dirs, _ = rnn_layout(attrs)
    x = (xs[0].transpose(0, 1) if attrs["batch_first"] else xs[0]).contiguous()
    lengths = xs[1]
    n_states = len(cells[0].states)
    per_direction = direction_params(attrs, xs[2 + n_states:])

    def direction(k: int, d: int, cell: Any, layer_in: Any, out: Any, off: int, states: list[Any]) -> None:
        y, fin = run_layer(kernels[k], layer_in.contiguous(), per_direction[k * dirs + d], list(states), lengths,
                           reverse=d == 1)
        out[:, :, off:off + cell.output_size] = y
        for view, final in zip(states, fin, strict=True):
            view.copy_(final)

    y, finals = run_stack(cells, dirs, x, xs[2:2 + n_states], direction, out_dtype=x.dtype, state_dtype=x.dtype)
    return (y.transpose(0, 1) if attrs["batch_first"] else y, *finals)


class TritonProgram:
    """A callable Program whose ``rnn`` nodes run as fused Triton kernels (``kernels[node output]``)."""

    def __init__(self, program: Any, kernels: dict[str, list[LayerKernel]]) -> None:
        self.program = program
        self.kernels = kernels

    def explain_lines(self) -> list[str]:
        """How each multi-block layer launched in the calls so far: one persistent kernel with a
        grid barrier per step, or one launch per step, and why (a fallback is never silent)."""
        out = []
        for lks in self.kernels.values():
            for lk in lks:
                if not lk.multi_block:
                    continue
                for (src, batch, dev), (_, why) in LAUNCH_DECISIONS.items():
                    if src == lk.launch_identity:
                        out.append(f"  triton {lk.plan.cell.kind} H={lk.plan.cell.hidden_size} batch {batch} "
                                   f"on {dev}: {why}")
        return out

    def __call__(self, *inputs: Any) -> Any:

        from rnnc.ir.interp import check_inputs, run_graph

        device = _device()
        graph = self.program.graph
        values: dict[str, Any] = {name: v.to(device) for name, v in check_inputs(self.program, inputs).items()}
        values.update({k: v.to(device) for k, v in self.program.weights.items()})
        result = run_graph(graph, values, rnn=lambda node, args: run_rnn(self.kernels[node.outputs[0]],
                                                                           node.attr_dict, args))
        return result[0] if len(result) == 1 else result
