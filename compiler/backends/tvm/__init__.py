"""The TVM backend: each recurrent layer becomes a TIR function built from the cell's IR step
graph and the Schedule, compiled by TVM for this CPU (llvm) or as CUDA source for a GPU target.

Registers itself as ``tvm`` in :mod:`rnnc.backends`.  Entry points: :func:`compile_program`
(a callable for this CPU), ``TVM_BACKEND.compile(program, target, outdir)`` (what
``rnnc compile --backend tvm -o OUTDIR`` calls) and ``TVM_BACKEND.load(outdir)``.

Why rnnc and not TVM's own importers: TVM's ONNX frontend (Relax) has no converter for
LSTM/GRU/RNN/Scan/Loop, so recurrent models do not get into TVM that way; rnnc renders each
cell's step graph itself, user-written cells included.
"""

from __future__ import annotations

from typing import Any

from rnnc.backends import register_backend


class TvmBackend:
    """``supports`` checks every layer's ops and dtype; GPU targets get CUDA source + nvcc."""

    name = "tvm"

    def supports(self, program: Any, target: Any = None) -> tuple[bool, str]:
        try:  # first: every module of this backend imports tvm
            import tvm  # noqa: F401
        except ImportError:
            return False, "the TVM backend needs apache-tvm, which is not installed: pip install 'rnnc[tvm]'"
        from rnnc.backends.tvm.build import check_cell
        from rnnc.errors import RnncError
        from rnnc.ir.rnn import rnn_layout
        if not program.rnn_nodes():
            return False, "the program has no recurrent layer (rnn node) to compile"
        for node in program.rnn_nodes():
            for cell in rnn_layout(node.attr_dict)[0]:
                try:
                    check_cell(cell)
                except RnncError as exc:
                    return False, str(exc)
        from rnnc.backends.onnx.render import half_storage

        why = half_storage(program, "the TVM backend builds fp32 kernels")
        return (not why, why)

    def compile(self, program: Any, target: Any, outdir: str, schedule: Any = None, **kw: Any) -> dict:
        from rnnc.backends.tvm.artifact import compile_to_dir

        return compile_to_dir(program, target, outdir, schedule, **kw)

    def runnable(self, program: Any, target: Any = None, schedule: Any = None, batch: int = 1) -> Any:
        """A callable running ``program`` in this process (what ``rnnc.compile`` uses).  For a GPU
        target the CUDA build cannot run without a GPU, so the llvm build of the same TIR runs."""
        from rnnc.targets import get

        spec = get(target or "cpu/host") if isinstance(target, str) or target is None else target
        if getattr(spec, "gpu", None) is not None:
            spec, schedule = get("cpu/host"), None
        return compile_program(program, spec, schedule)

    def load(self, outdir: str) -> Any:
        from rnnc.backends.tvm.artifact import load

        return load(outdir)


TVM_BACKEND = register_backend(TvmBackend())


def compile_program(program: Any, target: Any = "cpu/host", schedule: Any = None, batch: int = 1,
                    threads: int = 0) -> Any:
    """A callable running ``program`` with its rnn layers compiled by TVM for this CPU
    (``threads``: override the Schedule's thread count, 0 keeps it)."""
    from rnnc.backends.tvm.build import build, layer_functions, llvm_target
    from rnnc.backends.tvm.runtime import TvmProgram
    from rnnc.targets import get

    spec = get(target or "cpu/host") if isinstance(target, str) or target is None else target
    fns, prims = layer_functions(program, spec, schedule, batch, threads=threads)
    return TvmProgram(program, build(prims, llvm_target()), fns)


__all__ = ["TVM_BACKEND", "TvmBackend", "compile_program"]
