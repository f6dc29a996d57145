"""Fit the solver's Schedule to what nvcc builds: the fused CUDA kernel's register feedback loop.

The solver predicts registers per thread from the register-resident part of R, the
accumulators and a fixed overhead (``rnnc.constraints.problems.fused_gpu``).  The rendered
kernel is compiled with ``__maxnreg__`` at exactly that prediction, so ptxas either fits it (the
prediction holds: registers == predicted, 0 spills) or spills.  Spills mean the kernel needs
more registers than the model's overhead; the spilled words go back into the solver as
``ProblemSpec.register_overhead`` and it solves again (it may then keep fewer weights in
registers or pick more warps): the one compiler-feedback loop (``rnnc.constraints.feedback``)
with this backend's policy, as the Triton backend's ``aot.fit_schedule`` has its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rnnc.backends.cstyle.build import Resources, compile_cuda
from rnnc.backends.cstyle.dialects import CudaDialect
from rnnc.constraints.feedback import State, Stop, Verdict, refine
from rnnc.errors import InfeasibleError
from rnnc.ir.graph import Cell
from rnnc.lower.layer import lower_layer
from rnnc.lower.loopnest import Kernel

#: solve/compile rounds before giving up on a spill-free capped kernel
MAX_ROUNDS = 5
#: registers per thread the rendered kernel needs beyond the solver's fixed overhead, as a first
#: guess (64-bit buffer pointers and index math; over LSTM/GRU H=128..1024 fp32/fp16/bf16 on
#: sm_80..90 ptxas needed +16 to +48): starting here saves a round or two of nvcc
START_OVERHEAD = 16


@dataclass
class CudaFit:
    """The outcome of :func:`fit_cuda_schedule`; ``rounds`` is its history (for the manifest)."""

    schedule: Any
    kernel: Kernel
    source: str
    arch: str
    resources: Resources | None
    register_overhead: int = 0
    rounds: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def arch_of(target: Any) -> str:
    cc = target.gpu.compute_capability
    return f"sm_{cc[0]}{cc[1]}"


def _spilled_words(res: Resources) -> int:
    return -(-max(res.spill_stores, res.spill_loads, res.stack_bytes) // 4)


def _compile_all(src: str, arch: str, others: tuple[str, ...]) -> tuple[Resources, int]:
    """ptxas resources for ``arch`` and the most words spilled on it or any of ``others`` (the
    same source is shipped for every architecture; ptxas allocates a little differently on each)."""
    _, res = compile_cuda(src, arch)
    words = _spilled_words(res)
    for other in others:
        if words:
            break
        words = max(words, _spilled_words(compile_cuda(src, other)[1]))
    return res, words


def fit_cuda_schedule(cell: Cell, target: Any, dtype: str, name: str, batch: int = 1,
                      arch: str | None = None, also: tuple[str, ...] = ()) -> CudaFit:
    """Solve, render, compile for ``arch`` (default: the target's own) and the architectures in
    ``also`` (a fit holds only if none of them spills), feed spills back: this backend's policy
    for the one compiler-feedback loop (``rnnc.constraints.feedback.refine``).

    Returns the first spill-free fit; when none is found in :data:`MAX_ROUNDS` rounds, or the
    solver finds no tiling once the overhead is raised, the last renderable Schedule without its
    register cap if that does not spill, else the backend's own shared-memory knobs, and
    ``note`` says why.  A layer the solver cannot fit at all raises :class:`InfeasibleError`."""
    from rnnc.backends.cstyle.artifact import solver_schedule

    arch = arch or arch_of(target)
    others = tuple(a for a in dict.fromkeys(also) if a != arch)
    unit = max(1, target.gpu.register_allocation_unit // target.gpu.warp_size)

    def solve(cal: Mapping[str, Any]) -> Any:
        sched = solver_schedule(cell, target, dtype, batch, cal["register_overhead"])
        if sched is None:
            raise Stop("no solver schedule (no model of this cell, or the target lacks the dtype: see the warning)")
        return sched

    def build(sched: Any) -> tuple[Kernel, str, Resources, int]:
        try:
            kernel = lower_layer(cell, target, sched, dtype, name=name)
        except InfeasibleError as exc:
            raise Stop(f"solver schedule not renderable ({str(exc).splitlines()[0]})") from exc
        src = CudaDialect(kernel, dtype).render()
        return (kernel, src, *_compile_all(src, arch, others))

    def judge(cal: Mapping[str, Any], sched: Any, built: tuple[Kernel, str, Resources, int]) -> Verdict:
        kernel, _, res, words = built
        record = {"predicted_registers": int(sched.resources.registers_per_thread), "registers": res.registers,
                  "spill_stores": res.spill_stores, "spill_loads": res.spill_loads,
                  "register_k": kernel.meta["knobs"]["register_k"], "tile_hidden": kernel.meta["knobs"]["tile_hidden"],
                  "threads": kernel.meta["knobs"]["threads"], "spilled_words_any_arch": words}
        if words == 0:
            return Verdict(True, True, None, record)
        # 2 to 4 allocation units per round: ptxas needs more than the words it spilled (it
        # also gives up scheduling freedom), while a large spill (a tile far too big for the
        # register file) must move the solver towards fewer register weights, not off a cliff
        step = min(max(2 * -(-words // unit), 2), 4) * unit
        return Verdict(False, False, {"register_overhead": cal["register_overhead"] + step}, record)

    def infeasible(cal: Mapping[str, Any], exc: InfeasibleError, state: State) -> dict[str, Any]:
        if not state.rounds and cal["register_overhead"]:  # the first guess is too much: the bare model
            return {"register_overhead": 0}
        if not state.rounds:
            raise exc
        raise Stop(f"no schedule after register feedback (overhead {cal['register_overhead']}): "
                   f"{str(exc).splitlines()[0]}")

    fit = refine(solve, build, judge, {"register_overhead": START_OVERHEAD}, MAX_ROUNDS, infeasible)
    overhead, rounds = fit.calibration["register_overhead"], fit.rounds
    if fit.converged:
        sched, (kernel, src, res, _) = fit.best
        return CudaFit(sched, kernel, src, arch, res, overhead, rounds)
    note = f"still spilling after {MAX_ROUNDS} rounds of register feedback" if fit.exhausted else fit.note
    last = (fit.last[0], fit.last[1][0]) if fit.last is not None else None
    if last is not None:  # the last renderable Schedule without the cap: ptxas may take up to 255
        knobs = {**last[1].meta["knobs"], "max_registers": 0}
        kernel = lower_layer(cell, target, knobs, dtype, name=name)
        src = CudaDialect(kernel, dtype).render()
        res, words = _compile_all(src, arch, others)
        if words == 0:
            return CudaFit(last[0], kernel, src, arch, res, overhead, rounds,
                           note + "; the last Schedule is used without its register cap (ptxas: "
                           f"{res.registers} registers, predicted {last[0].resources.registers_per_thread})")
        note += f"; without its register cap the last Schedule still spills {4 * words} B"
    try:
        kernel = lower_layer(cell, target, None, dtype, name=name)
    except InfeasibleError as exc:  # say why the solver's schedules failed, not only why the fallback does
        raise InfeasibleError(f"no spill-free schedule: {note.lstrip('; ')}; the backend's heuristic knobs do not "
                              f"fit either ({str(exc).splitlines()[0]})") from exc
    src = CudaDialect(kernel, dtype).render()
    _, res = compile_cuda(src, arch)
    return CudaFit(None, kernel, src, arch, res, overhead, rounds, note + "; heuristic shared-memory knobs used")
