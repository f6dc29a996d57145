"""The Triton backend: each recurrent layer becomes ONE fused kernel launch for the whole sequence,
rendered from the cell's IR step graph (user-written cells included) and a solver Schedule.

Registers itself as ``triton`` in :mod:`rnnc.backends`.  Entry points: :func:`compile_program`
(a callable; on a machine without a GPU run it under ``TRITON_INTERPRET=1``),
``TRITON_BACKEND.compile(program, target, outdir)`` (``rnnc compile --backend triton -o OUTDIR``)
and ``TRITON_BACKEND.load(outdir)``.

Scope (declined in ``supports`` with the reason otherwise): nonlinear cells whose recurrent
weights fit one block per head (the solver's ``grid_sync=False`` problem); fp32 compute.
Linear cells (chunked scan) and multi-block layers (grid-wide sync per step) are not rendered.
"""

from __future__ import annotations

from typing import Any

from rnnc.backends import register_backend

#: rnnc dtype names -> the solver's
SOLVER_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def _target(target: Any) -> Any:
    from rnnc.targets import get

    return get(target or "cpu/host") if isinstance(target, str) or target is None else target


def schedule_for(cell: Any, target: Any, batch: int = 1, register_overhead: int = 0, min_warps: int = 1) -> Any:
    """The solver's single-block fused Schedule of ``cell`` on a GPU ``target``; raises
    :class:`rnnc.errors.InfeasibleError` (with the solver's explanation) when none fits.

    Always ``shared_weights=False``: the rendered kernel keeps every weight tile in registers.
    ``register_overhead``/``min_warps`` are the compiler feedback that
    :func:`rnnc.backends.triton.aot.fit_schedule` measures (see ``ProblemSpec``)."""
    from rnnc.backends.triton.plan import plan_cell
    from rnnc.constraints import CELLS, ProblemSpec, solve

    plan = plan_cell(cell)
    heads = int(cell.attr("num_heads", 1) or 1)
    known = cell.kind in CELLS
    spec = ProblemSpec(cell.kind if known else "custom", hidden=cell.hidden_size, heads=heads, batch=batch,
                       dtype=SOLVER_DTYPES.get(cell.step.inputs[0][1].dtype, "fp32"),
                       input_size=cell.input_size, grid_sync=False,
                       family=None if known else "fused", gates=None if known else plan.gates,
                       shared_weights=False, register_overhead=register_overhead, min_warps=min_warps)
    return solve(spec, _target(target))


class TritonBackend:
    """``supports`` plans every cell and, for a GPU target, asks the solver for a single-block tiling."""

    name = "triton"

    def supports(self, program: Any, target: Any = None) -> tuple[bool, str]:
        from rnnc.backends.triton.plan import plan_cell
        from rnnc.errors import InfeasibleError, RnncError
        from rnnc.ir.rnn import rnn_layout

        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "the Triton backend needs triton (pip install triton==3.9.0)"
        if not program.rnn_nodes():
            return False, "the program has no recurrent layer (rnn node) to compile"
        spec = _target(target)
        for node in program.rnn_nodes():
            for cell in rnn_layout(node.attr_dict)[0]:
                try:
                    plan_cell(cell)
                    if getattr(spec, "gpu", None) is not None:
                        schedule_for(cell, spec)
                except InfeasibleError as exc:
                    return False, (f"{cell.kind} H={cell.hidden_size} does not fit one block per head on "
                                   f"{spec.tag} and the Triton backend has no grid-synchronised "
                                   f"multi-block kernel: {exc}")
                except RnncError as exc:
                    return False, str(exc)
        return True, ""

    def compile(self, program: Any, target: Any, outdir: str, schedule: Any = None, **kw: Any) -> dict:
        from rnnc.backends.triton.artifact import compile_to_dir

        return compile_to_dir(program, _target(target), outdir, **kw)

    def runnable(self, program: Any, target: Any = None, schedule: Any = None) -> Any:
        return compile_program(program, target)

    def load(self, outdir: str) -> Any:
        from rnnc.backends.triton.artifact import load

        return load(outdir)


TRITON_BACKEND = register_backend(TritonBackend())


def layer_kernels(program: Any, target: Any = None, batch: int = 1) -> dict[str, list[Any]]:
    """Per rnn node (keyed by its first output), one LayerKernel per layer; on a GPU target the
    batch tile and warps come from the solver's Schedule."""
    from rnnc.backends.triton.runtime import layer_kernel
    from rnnc.ir.rnn import rnn_layout

    spec = _target(target)
    out: dict[str, list[Any]] = {}
    for node in program.rnn_nodes():
        kernels = []
        for cell in rnn_layout(node.attr_dict)[0]:
            if getattr(spec, "gpu", None) is not None:
                sched = schedule_for(cell, spec, batch)
                kernels.append(layer_kernel(cell, int(sched.param("batch_tile")), int(sched.param("warps"))))
            else:
                kernels.append(layer_kernel(cell))
        out[node.outputs[0]] = kernels
    return out


def compile_program(program: Any, target: Any = None, batch: int = 1) -> Any:
    """A callable running ``program`` with its rnn layers as fused Triton kernels."""
    from rnnc.backends.triton.runtime import TritonProgram
    from rnnc.errors import UnsupportedError

    ok, why = TRITON_BACKEND.supports(program, target)
    if not ok:
        raise UnsupportedError(why)
    return TritonProgram(program, layer_kernels(program, target, batch))


__all__ = ["TRITON_BACKEND", "TritonBackend", "compile_program", "layer_kernels", "schedule_for"]
