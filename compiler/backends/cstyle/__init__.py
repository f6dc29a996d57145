"""The C-style backends: one loop nest (``rnnc.lower``), two dialects (C and CUDA).

Both register themselves in :mod:`rnnc.backends` under ``c`` and ``cuda``; ``compile_program``
builds a callable for this CPU, :func:`rnnc.backends.cstyle.artifact.compile_to_dir` writes a
self-contained output directory and :func:`rnnc.backends.cstyle.artifact.load` reads it back.
"""

from __future__ import annotations

from typing import Any

from rnnc.backends import register_backend
from rnnc.backends.cstyle.variants import CUDA, C, Variant


class _CStyleBackend:
    """``supports`` answers per rnn layer: the loop nest must lower (every op of the step graph
    known to the lowering) and, for CUDA, fit the target's shared memory.  What differs between
    C and CUDA is the :class:`~rnnc.backends.cstyle.variants.Variant`'s data."""

    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        self.name = variant.name

    def supports(self, program: Any, target: Any = None) -> tuple[bool, str]:
        from rnnc.errors import RnncError
        from rnnc.ir.rnn import rnn_layout
        from rnnc.lower.layer import lower_layer

        if isinstance(target, str):
            from rnnc.targets import get

            target = get(target)
        wrong = self.variant.wrong_target(target) if target is not None else ""
        if wrong:
            return False, wrong
        if not program.rnn_nodes():
            return False, "the program has no recurrent layer (rnn node) to compile"
        for node in program.rnn_nodes():
            cells, _, _ = rnn_layout(node.attr_dict)
            for cell in cells:
                dtype = cell.step.inputs[0][1].dtype
                if dtype not in self.variant.kernel_dtypes:
                    return False, (f"the {self.name.upper()} backend runs {'/'.join(self.variant.kernel_dtypes)} "
                                   f"cells; {cell.kind} is {dtype}")
                try:
                    lower_layer(cell, target, dtype=self.variant.kernel_dtype(dtype))
                except RnncError as exc:
                    return False, str(exc)
        return True, ""

    def compile(self, program: Any, target: Any, outdir: str, schedule: Any = None, **kw: Any) -> dict:
        from rnnc.backends.cstyle.artifact import compile_to_dir

        return compile_to_dir(program, target, self.name, outdir, schedule, **kw)

    def runnable(self, program: Any, target: Any, schedule: Any = None) -> Any:
        """A callable running ``program`` in this process: GPU kernels on this machine's GPU when
        it has one and nvcc to build them (launched through the driver API), else the C rendering
        of the same loop nest."""
        from rnnc.backends.cstyle.program import CompiledProgram

        if self.variant.on_gpu:
            from rnnc.backends.cstyle.build import nvcc_path
            from rnnc.backends.cstyle.cuda_driver import cuda_available

            if nvcc_path() is not None and cuda_available():
                from rnnc.backends.cstyle.cuda_program import compile_cuda_program

                return compile_cuda_program(program, target, schedule)
        return CompiledProgram(program, None if self.variant.on_gpu else target, schedule)

    def load(self, outdir: str) -> Any:
        from rnnc.backends.cstyle.artifact import load

        return load(outdir)


C_BACKEND = register_backend(_CStyleBackend(C))
CUDA_BACKEND = register_backend(_CStyleBackend(CUDA))


def compile_program(program: Any, target: Any = None, schedule: Any = None, **kw: Any) -> Any:
    """A callable running ``program`` on this CPU with C kernels (see ``CompiledProgram``)."""
    from rnnc.backends.cstyle.program import CompiledProgram

    return CompiledProgram(program, target, schedule, **kw)


__all__ = ["C_BACKEND", "CUDA_BACKEND", "compile_program"]
