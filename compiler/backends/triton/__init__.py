"""The Triton backend: each recurrent layer becomes ONE fused kernel launch for the whole sequence,
rendered from the cell's IR step graph (user-written cells included) and a solver Schedule.

Registers itself as ``triton`` in :mod:`rnnc.backends`.  Entry points: :func:`compile_program`
(a callable; on a machine without a GPU run it under ``TRITON_INTERPRET=1``),
``TRITON_BACKEND.compile(program, target, outdir)`` (``rnnc compile --backend triton -o OUTDIR``)
and ``TRITON_BACKEND.load(outdir)``.

Scope (declined in ``supports`` with the reason otherwise): nonlinear cells whose recurrent
weights fit one block per head (the solver's ``grid_sync=False`` problem) as one fused kernel;
linear cells whose state updates are affine or max-plus in the state (``rnnc.ir.scanform``) as chunked
parallel scans; fp32/fp16/bf16 storage with fp32 arithmetic.  Nonlinear cells whose weights do
not fit one block get the solver's multi-block schedule (``grid_sync=True``: ``hidden_tile``
units per program, ``blocks_per_head`` programs per batch tile) and the multi-block kernel
(:func:`rnnc.backends.triton.plan.split_hidden`; a grid-wide barrier per step in one persistent
launch on a GPU, one launch per step otherwise).
"""

from __future__ import annotations

from typing import Any

from rnnc.backends import register_backend
from rnnc.constraints.spec import ALTERNATES  # the solver table's second families (mLSTM's scan)


def _target(target: Any) -> Any:
    from rnnc.targets import get

    return get(target or "cpu/host") if isinstance(target, str) or target is None else target


def schedule_for(cell: Any, target: Any, batch: int = 1, register_overhead: int = 0, min_warps: int = 1,
                 grid_sync: bool | None = None) -> Any:
    """The solver's Schedule of ``cell`` on a GPU ``target``: single-block fused for nonlinear
    cells when one fits, else multi-block (``grid_sync=True``) when the cell's loop can be split
    (:func:`rnnc.backends.triton.plan.split_hidden`), ``chunked_scan`` for linear ones; raises
    :class:`rnnc.errors.InfeasibleError` (with the solver's explanation) when none fits.

    Why single-block first: it needs no grid-wide barrier, which costs a few microseconds a step.
    ``grid_sync``: ``None`` that order, ``False`` single-block only, ``True`` let the solver
    weigh both (what :func:`~rnnc.backends.triton.aot.fit_schedule` asks once compiler feedback
    has ruled single-block out).

    Fused: always ``shared_weights=False`` (the rendered kernel keeps every weight tile in
    registers) and ``pow2_tiles`` (its tiles are padded to powers of two);
    ``register_overhead``/``min_warps`` are the compiler feedback that
    :func:`rnnc.backends.triton.aot.fit_schedule` measures (see ``ProblemSpec``)."""
    from rnnc.backends.triton.runtime import plan_any
    from rnnc.constraints import solve
    from rnnc.errors import InfeasibleError
    from rnnc.passes import plan_layer

    layer = plan_layer(cell)
    if cell.recurrence == "linear":
        # the scan kernel streams fp32 coefficients whatever the storage dtype (see scan.py)
        # min_warps: compiler feedback after a spill (the chunkwise model honours it; the scan's ignores it)
        spec = layer.problem(batch, "float32", register_overhead=register_overhead, min_warps=min_warps)
        try:
            return solve(spec, _target(target))
        except InfeasibleError:
            if not scan_fallback(cell):
                raise
            try:  # heads too wide for the chunkwise kernel's tiles: one chunked scan, if that fits
                return solve(spec.replace(family="scan"), _target(target))
            except InfeasibleError:
                pass
            raise
    plan = plan_any(cell)
    spec = layer.problem(batch, grid_sync=False, shared_weights=False, register_overhead=register_overhead,
                         min_warps=min_warps, pow2_tiles=True)
    if not layer.known:  # the loop's recurrent weights after the head-wise rewrite size the tile
        spec = spec.replace(gates=plan.gates)
    if grid_sync is not None:
        return solve(spec.replace(grid_sync=grid_sync and can_split(plan)), _target(target))
    try:
        return solve(spec, _target(target))
    except InfeasibleError:
        if not can_split(plan):
            raise
        return solve(spec.replace(grid_sync=True), _target(target))  # its error names the multi-block limit


class TritonBackend:
    """``supports`` plans every cell and, for a GPU target, asks the solver for a single-block tiling."""

    name = "triton"

    def supports(self, program: Any, target: Any = None) -> tuple[bool, str]:
        try:  # first: the backend's modules import triton
            import triton  # noqa: F401
        except ImportError:
            return False, "the Triton backend needs triton, which is not installed: pip install 'rnnc[triton]'"
        from rnnc.backends.triton.runtime import plan_any
        from rnnc.errors import InfeasibleError, RnncError
        from rnnc.ir.rnn import rnn_layout
        from rnnc.passes import plan_layer
        if not program.rnn_nodes():
            return False, "the program has no recurrent layer (rnn node) to compile"
        spec = _target(target)
        for node in program.rnn_nodes():
            for cell in rnn_layout(node.attr_dict)[0]:
                try:
                    plan_any(cell)
                    if getattr(spec, "gpu", None) is not None:
                        schedule_for(cell, spec)
                except InfeasibleError as exc:
                    if cell.recurrence == "linear":
                        chunk = plan_layer(cell).chunk is not None
                        kind = ("chunkwise nor chunked-scan" if scan_fallback(cell) else "chunkwise" if chunk
                                else "chunked-scan")
                        return False, (f"{cell.kind} H={cell.hidden_size} has no {kind} schedule on "
                                       f"{spec.tag}: {exc}")
                    how = ("nor any multi-block grid" if can_split(plan_any(cell)) else
                           "and its loop cannot be split over blocks")
                    return False, (f"{cell.kind} H={cell.hidden_size} does not fit one block per head on "
                                   f"{spec.tag} {how}: {exc}")
                except RnncError as exc:
                    return False, str(exc)
        return True, ""

    def compile(self, program: Any, target: Any, outdir: str, schedule: Any = None, **kw: Any) -> dict:
        from rnnc.backends.triton.artifact import compile_to_dir

        return compile_to_dir(program, _target(target), outdir, **kw)

    def runnable(self, program: Any, target: Any = None, schedule: Any = None, batch: int = 1) -> Any:
        return compile_program(program, target, batch)

    def load(self, outdir: str) -> Any:
        from rnnc.backends.triton.artifact import load

        return load(outdir)


TRITON_BACKEND = register_backend(TritonBackend())


def layer_kernels(program: Any, target: Any = None, batch: int = 1, fit: bool | None = None) -> dict[str, list[Any]]:
    """Per rnn node (keyed by its first output), one LayerKernel per layer; on a GPU target the
    launch configuration comes from the Schedule (see :func:`kernel_for`)."""
    from rnnc.ir.printer import layer_key, layer_storage
    from rnnc.ir.rnn import rnn_layout

    spec = _target(target)
    storage = layer_storage(program)
    out: dict[str, list[Any]] = {}
    for node in program.rnn_nodes():
        kernels = []
        for cell in rnn_layout(node.attr_dict)[0]:
            kernels.append(kernel_for(cell, spec, batch, fit, storage[layer_key(cell)]))
        out[node.outputs[0]] = kernels
    return out


def kernel_for(cell: Any, target: Any, batch: int = 1, fit: bool | None = None, storage: str = "") -> Any:
    """The LayerKernel of ``cell`` with its launch configuration from the Schedule on a GPU target.

    With ``fit`` (default: when triton's AOT compiler works here) the Schedule is the one after
    compiler feedback (:func:`rnnc.backends.triton.aot.fit_schedule` on the target's own
    architecture), so the kernel that runs is the one that was checked spill-free, not the
    solver's first answer.  Fused cells: ``batch_tile``/``warps``; scan cells: ``chunk``,
    ``channel_tile`` and ``warps``."""
    from rnnc.backends.triton.runtime import layer_kernel

    if getattr(target, "gpu", None) is None:
        return layer_kernel(cell, storage=storage)
    from rnnc.backends.triton import aot

    if fit if fit is not None else aot.available():
        cap = 10 * target.gpu.compute_capability[0] + target.gpu.compute_capability[1]
        sched = aot.fit_schedule(cell, target, cap, batch, storage).schedule
    else:
        sched = schedule_for(cell, target, batch)
    return kernel_at(cell, sched, storage)


def scan_fallback(cell: Any) -> bool:
    """Whether a chunk-form ``cell`` whose heads are too wide for the chunkwise kernel may run as
    one chunked scan instead: only when the solver's table names the scan as the cell's second
    family (mLSTM; the others' scan has no model of their matrix state, so they stay declined)
    and the scan planner takes the cell."""
    from rnnc.errors import RnncError
    from rnnc.ir.scanform import plan_scan
    from rnnc.passes import plan_layer

    if plan_layer(cell).chunk is None or (cell.kind, "scan") not in ALTERNATES:
        return False
    try:
        plan_scan(cell)
    except RnncError:
        return False
    return True


def kernel_at(cell: Any, sched: Any, storage: str = "") -> Any:
    """The LayerKernel of ``cell`` at a Schedule of any of the three kernel families (``storage``:
    a 16-bit model's, for the fused kernel; scans and chunk kernels stream fp32)."""
    if sched.kernel == "chunkwise":
        return chunk_kernel(cell, sched)
    if cell.recurrence == "linear":
        return scan_kernel(cell, sched)
    return fused_kernel(cell, sched, storage)


def chunk_kernel(cell: Any, sched: Any) -> Any:
    """The chunkwise LayerKernel of a matrix-state ``cell`` at a ``chunkwise`` Schedule."""
    from rnnc.backends.triton.runtime import layer_kernel

    return layer_kernel(cell, warps=int(sched.param("warps")), chunk=int(sched.param("chunk")),
                        tile=int(sched.param("value_tile")), chunkwise=True)


def fused_kernel(cell: Any, sched: Any, storage: str = "") -> Any:
    """The fused LayerKernel of a nonlinear ``cell`` at a ``fused_recurrence`` Schedule: single
    block, or multi-block with the Schedule's ``hidden_tile`` when it has several blocks per head."""
    from rnnc.backends.triton.runtime import layer_kernel

    split = int(sched.param("blocks_per_head")) > 1
    return layer_kernel(cell, int(sched.param("batch_tile")), int(sched.param("warps")),
                        hidden_tile=int(sched.param("hidden_tile")) if split else 0, storage=storage)


def can_split(plan: Any) -> bool:
    """Whether a nonlinear cell's loop can run on a multi-block grid (see ``split_hidden``)."""
    from rnnc.backends.triton.plan import LoopPlan, split_hidden
    from rnnc.errors import UnsupportedError

    if not isinstance(plan, LoopPlan) or plan.cell.hidden_size < 2:
        return False
    try:
        split_hidden(plan, 1)
    except UnsupportedError:
        return False
    return True


def scan_kernel(cell: Any, sched: Any) -> Any:
    """The chunked-scan LayerKernel of ``cell`` at a ``chunked_scan`` Schedule."""
    from rnnc.backends.triton.runtime import layer_kernel

    return layer_kernel(cell, warps=int(sched.param("warps")), chunk=int(sched.param("chunk")),
                        tile=scan_tile(cell, int(sched.param("channel_tile"))), chunkwise=False)


def scan_tile(cell: Any, channel_tile: int) -> int:
    """State elements per program for a solver ``channel_tile``: the solver counts channels
    (Mamba: each with N states; mLSTM: value columns of a DH-long key row), the kernel counts
    state elements of its flattened state."""
    per_channel = 1
    shape = cell.states[0].shape
    if len(shape) >= 2:
        per_channel = int(shape[-1])
    return min(1024, channel_tile * per_channel)


def compile_program(program: Any, target: Any = None, batch: int = 1) -> Any:
    """A callable running ``program`` with its rnn layers as fused Triton kernels."""
    from rnnc.backends.triton.runtime import TritonProgram
    from rnnc.errors import UnsupportedError

    ok, why = TRITON_BACKEND.supports(program, target)
    if not ok:
        raise UnsupportedError(why)
    return TritonProgram(program, layer_kernels(program, target, batch))


__all__ = ["TRITON_BACKEND", "TritonBackend", "can_split", "chunk_kernel", "compile_program", "fused_kernel",
           "kernel_at", "kernel_for",
           "layer_kernels", "schedule_for"]
