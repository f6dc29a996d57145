"""The C-style backends: one loop nest (``rnnc.lower``), two dialects (C and CUDA).

Both register themselves in :mod:`rnnc.backends` under ``c`` and ``cuda``; ``compile_program``
builds a callable for this CPU, :func:`rnnc.backends.cstyle.artifact.compile_to_dir` writes a
self-contained output directory and :func:`rnnc.backends.cstyle.artifact.load` reads it back.
"""

from __future__ import annotations

from typing import Any

from rnnc.backends import register_backend


class _CStyleBackend:
    """``supports`` answers per rnn layer: the loop nest must lower (every op of the step graph
    known to the lowering) and, for CUDA, fit the target's shared memory."""

    def __init__(self, name: str) -> None:
        self.name = name

    def supports(self, program: Any, target: Any = None) -> tuple[bool, str]:
        from rnnc.errors import RnncError
        from rnnc.ir.rnn import rnn_layout
        from rnnc.lower.layer import lower_layer

        if isinstance(target, str):
            from rnnc.targets import get

            target = get(target)
        if self.name == "c" and target is not None and getattr(target, "gpu", None) is not None:
            return False, f"the C backend runs on CPUs; {target.tag} is a GPU (use --backend cuda)"
        if self.name == "cuda" and target is not None and getattr(target, "gpu", None) is None:
            return False, f"the CUDA backend needs a GPU target; {target.tag} is a CPU (use --backend c)"
        if not program.rnn_nodes():
            return False, "the program has no recurrent layer (rnn node) to compile"
        for node in program.rnn_nodes():
            cells, _, _ = rnn_layout(node.attr_dict)
            for cell in cells:
                dtype = cell.step.inputs[0][1].dtype
                if self.name == "c" and dtype != "float32":
                    return False, f"the C backend runs float32 cells; {cell.kind} is {dtype}"
                try:
                    lower_layer(cell, target, dtype=dtype if self.name == "cuda" else "float32")
                except RnncError as exc:
                    return False, str(exc)
        return True, ""

    def compile(self, program: Any, target: Any, outdir: str, schedule: Any = None, **kw: Any) -> dict:
        from rnnc.backends.cstyle.artifact import compile_to_dir

        return compile_to_dir(program, target, self.name, outdir, schedule, **kw)

    def runnable(self, program: Any, target: Any, schedule: Any = None) -> Any:
        """A callable running ``program`` in this process: CUDA kernels on this machine's GPU when
        it has one and nvcc to build them (launched through the driver API), else the C rendering
        of the same loop nest."""
        from rnnc.backends.cstyle.program import CompiledProgram

        if self.name == "cuda":
            from rnnc.backends.cstyle.build import nvcc_path
            from rnnc.backends.cstyle.cuda_driver import cuda_available

            if nvcc_path() is not None and cuda_available():
                from rnnc.backends.cstyle.cuda_program import compile_cuda_program

                return compile_cuda_program(program, target, schedule)
        return CompiledProgram(program, target if self.name == "c" else None, schedule)

    def load(self, outdir: str) -> Any:
        from rnnc.backends.cstyle.artifact import load

        return load(outdir)


C_BACKEND = register_backend(_CStyleBackend("c"))
CUDA_BACKEND = register_backend(_CStyleBackend("cuda"))


def compile_program(program: Any, target: Any = None, schedule: Any = None, **kw: Any) -> Any:
    """A callable running ``program`` on this CPU with C kernels (see ``CompiledProgram``)."""
    from rnnc.backends.cstyle.program import CompiledProgram

    return CompiledProgram(program, target, schedule, **kw)


__all__ = ["C_BACKEND", "CUDA_BACKEND", "compile_program"]
