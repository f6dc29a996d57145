"""The C-style backends: one loop nest (``rnnc.lower``), two dialects (C and CUDA).

Both register themselves in :mod:`rnnc.backends` under ``c`` and ``cuda``; ``compile_program``
builds a callable for this CPU, :func:`rnnc.backends.cstyle.artifact.compile_to_dir` writes a
self-contained output directory and :func:`rnnc.backends.cstyle.artifact.load` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    def runnable(self, program: Any, target: Any, schedule: Any = None, batch: int = 1) -> Any:
        """A callable running ``program`` in this process: GPU kernels on this machine's GPU when
        it has one and nvcc to build them (launched through the driver API), else the C rendering
        of the same GPU loop nest (:func:`cuda_twin`); ``batch``: what the GPU schedule tiles for."""
        from rnnc.backends.cstyle.program import CompiledProgram

        if self.variant.on_gpu:
            from rnnc.backends.cstyle.build import nvcc_path
            from rnnc.backends.cstyle.cuda_driver import cuda_available

            if nvcc_path() is not None and cuda_available():
                from rnnc.backends.cstyle.cuda_program import compile_cuda_program

                return compile_cuda_program(program, target, schedule, batch)
            return cuda_twin(program, target, schedule, batch)
        return CompiledProgram(program, target, schedule)

    def load(self, outdir: str) -> Any:
        from rnnc.backends.cstyle.artifact import load

        return load(outdir)


def cuda_twin(program: Any, target: Any, schedule: Any = None, batch: int = 1) -> Any:
    """The CUDA backend without a GPU: each layer's GPU loop nest -- the same Schedule, grid,
    batch block, time chunks, hosted input projection and fp16/bf16 storage the CUDA kernel would
    run (``cuda_program.gpu_kernel``) -- rendered in the C dialect and run on this CPU, one OpenMP
    thread per GPU block.  Numerics, not speed: ``describe()`` says what it runs."""
    from rnnc.backends.cstyle.artifact import twin_dialect
    from rnnc.backends.cstyle.build import build_c, load_library
    from rnnc.backends.cstyle.cuda_program import gpu_kernel
    from rnnc.backends.cstyle.program import CudaTwin, LayerBuild
    from rnnc.ir.printer import layer_cells, layer_storage

    storage = layer_storage(program)
    builds = {}
    for key, cell in layer_cells(program).items():
        sched = schedule.get(key) if isinstance(schedule, Mapping) else schedule
        kernel = gpu_kernel(cell, target, sched, storage[key], f"rnnc_{key}", batch)
        src = twin_dialect(kernel, storage[key]).render()
        lib = build_c(src)
        builds[key] = LayerBuild(kernel, src, str(lib), getattr(load_library(lib), kernel.name))
    return CudaTwin(program, target, schedule, builds=builds)


def describe_kernels(kernels: Mapping[str, Any]) -> str:
    """What runs, per layer: the GPU launch (grid, tiles, batch block, time chunk, storage, where
    the input projection runs), for ``explain()`` -- on a GPU and in the C twin alike."""
    parts = []
    for key, kernel in kernels.items():
        kn = kernel.meta.get("knobs", {})
        if kernel.meta.get("path") == "generic":  # no tiles or chunks: one block per batch sample
            parts.append(f"{key}: generic kernel, one block of {kn.get('threads')} threads per batch sample, "
                         f"{kn.get('dtype', 'float32')} storage")
            continue
        proj = "input projection as one GEMM before the loop" if kernel.meta.get("host_gemm") else \
            "input projection inside the kernel"
        parts.append(f"{key}: {kernel.meta.get('path')} kernel, grid {kn.get('workers')} x {kn.get('threads')} "
                     f"threads, tile {kn.get('tile_hidden')}, batch block {kn.get('batch_block')}, time chunk "
                     f"{kn.get('time_chunk')}, {kn.get('dtype', 'float32')} storage, {proj}")
    return "; ".join(parts)


C_BACKEND = register_backend(_CStyleBackend(C))
CUDA_BACKEND = register_backend(_CStyleBackend(CUDA))


def compile_program(program: Any, target: Any = None, schedule: Any = None, **kw: Any) -> Any:
    """A callable running ``program`` on this CPU with C kernels (see ``CompiledProgram``)."""
    from rnnc.backends.cstyle.program import CompiledProgram

    return CompiledProgram(program, target, schedule, **kw)


__all__ = ["C_BACKEND", "CUDA_BACKEND", "compile_program"]
