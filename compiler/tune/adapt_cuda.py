"""Tuning adapter of the CUDA backend on a machine without a GPU: compile-only records.

Each candidate is lowered with its Schedule, rendered in the CUDA dialect and compiled by
``nvcc --resource-usage`` for the target's architecture (registers, shared memory, spills are
recorded); its numerics are checked through the C dialect of the *same* loop nest.  The time
is the Schedule's cost-model estimate and the record says ``estimated: true``.  The kernels can
launch on a GPU (``rnnc.backends.cstyle.cuda_driver``), but timing them inside the tuner is not
wired yet, so even with a GPU present this adapter records estimates.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rnnc.errors import RnncError, UnsupportedError
from rnnc.tune.protocol import ESTIMATE, Built


class CudaTunable:
    name = "cuda"
    tolerance = "c"  # numerics run through the C dialect of the same loop nest

    def mode(self, target: Any) -> str:
        if target.kind != "gpu":
            raise UnsupportedError(f"the CUDA backend needs a GPU target; {target.tag} is a CPU (use --backend c)")
        return ESTIMATE

    def problem(self, spec: Any) -> Any:
        """The fused kernel renders the solver's register/shared split of the recurrent weights
        (``register_k``) as it is; its warp GEMM is SIMT and a block runs its batch tiles serially,
        which the problem is told (the same spec ``cstyle.artifact.solver_schedule`` solves)."""
        return spec.replace(tensor_cores=False, batch_split=False)

    def rendered(self, layer: Any, schedule: Any) -> Any:
        from rnnc.lower.knobs import from_schedule

        return tuple(sorted(dict(from_schedule(schedule, layer.cell.hidden_size)).items()))

    def build(self, layer: Any, schedule: Any, target: Any) -> Built:
        from rnnc.backends.cstyle.build import compile_cuda, nvcc_path
        from rnnc.backends.cstyle.dialects import CudaDialect
        from rnnc.backends.cstyle.program import CompiledProgram, build_kernel
        from rnnc.ir import layer_key
        from rnnc.lower.layer import lower_layer

        key = layer_key(layer.cell)
        kernel = lower_layer(layer.cell, target, schedule, layer.dtype, name=f"rnnc_{key}")
        cuda = CudaDialect(kernel, layer.dtype)
        source = cuda.render()
        resources: dict[str, Any] = {"knobs": kernel.meta.get("knobs", {}), "shared_memory_rendered": cuda.smem_bytes}
        if nvcc_path() is not None:
            major, minor = target.gpu.compute_capability
            try:
                _, res = compile_cuda(source, f"sm_{major}{minor}")
                resources["ptxas"] = res.to_dict()
            except RnncError as exc:  # e.g. an nvcc too old for the architecture: keep the estimate
                resources["ptxas_error"] = str(exc).splitlines()[0]
        program = CompiledProgram(layer.program(), builds={key: build_kernel(kernel)})
        identity = hashlib.sha256(source.encode()).hexdigest()[:16]
        return Built(program, identity, resources)


ADAPTER = CudaTunable()
