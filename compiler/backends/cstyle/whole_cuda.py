"""A whole Program as one CUDA module: every op and every recurrent layer, launched in order.

Why: the native engine (``whole.py``) runs a model as one C function; on a GPU the same plan is
one module -- the layer kernels the CUDA backend renders, plus one small kernel per non-recurrent
op of the same loop nest (``rnnc.lower.program`` lowered for a grid: row loops become blocks,
a row's outputs the block's threads) -- and a launch list in program order.  Without a GPU it is
compiled only (nvcc, ptxas resources per kernel), and its numerics are checked through its C
twin: the identical loop nest rendered in the C dialect and run here as one native program whose
layer calls are the GPU layer kernels' own C twins (``cstyle.cuda_twin``).

A launch's grid: a row loop gets ``min(rows, MAX_BLOCKS)`` blocks (the loop strides over the
rest); anything else one block whose threads share its innermost loops; a layer its
schedule's ``workers`` (cooperative when it has a grid barrier).  Every op kernel takes the
module's one buffer table, so the launches share the same arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rnnc.backends.cstyle.build import Resources, compile_cuda, nvcc_path
from rnnc.backends.cstyle.dialects import CudaDialect
from rnnc.backends.cstyle.whole import NativeProgram, call_views
from rnnc.errors import UnsupportedError
from rnnc.lower.loopnest import Alloc, Invoke, Kernel, Loop, Stmt, Var, has_grid_barrier

#: most blocks a row loop launches (the loop strides over the rows beyond)
MAX_BLOCKS = 1024
#: threads of an op kernel's block
OP_THREADS = 256


@dataclass(frozen=True)
class Launch:
    """One kernel launch of the module, in program order."""

    kernel: str
    grid: int
    threads: int
    cooperative: bool = False
    layer: str = ""  # the layer key for a recurrent layer's kernel, empty for an op
    scalars: tuple[int, ...] = ()  # a layer kernel's own scalar arguments (sizes, strides)


@dataclass
class CudaModule:
    """The module's source, its launches, ptxas resources per kernel (when nvcc is here) and the
    C twin that runs the same loop nest on this CPU (``twin(*inputs)``)."""

    source: str
    arch: str
    launches: list[Launch]
    twin: NativeProgram
    cubin: Any = None
    resources: dict[str, Resources] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"CUDA module for {self.arch}: {len(self.launches)} launches"]
        for ln in self.launches:
            res = self.resources.get(ln.kernel)
            extra = (f", {res.registers} registers, {res.spill_stores + res.spill_loads} B spills" if res else "")
            what = f"layer {ln.layer}" if ln.layer else "op"
            lines.append(f"  {ln.kernel}: {what}, grid {ln.grid} x {ln.threads}"
                         + (" (cooperative)" if ln.cooperative else "") + extra)
        return "\n".join(lines)


def cuda_module(program: Any, inputs: tuple[Any, ...], target: Any, schedule: Any = None, batch: int = 1,
                compile_: bool = True) -> CudaModule:
    """Plan ``program`` at the shapes of ``inputs`` for the GPU ``target``: the C twin (built and
    run here), the CUDA module rendered from the same loop nest and, with nvcc, compiled for the
    target's architecture.  ``schedule``/``batch``: the layers' Schedules and the batch the solver
    tiles for, as the CUDA backend's own layer kernels were built (so the module's layer kernels
    are those).  Raises :class:`UnsupportedError` naming what the plan cannot take."""
    from rnnc.backends.cstyle import cuda_twin
    from rnnc.backends.cstyle.cuda_fit import arch_of

    if getattr(target, "gpu", None) is None:
        raise UnsupportedError(f"a CUDA module needs a GPU target, got {target.tag}")
    twin = NativeProgram(cuda_twin(program, target, schedule, batch), target, inputs, gpu=True)
    plan = next(iter(twin._plans.values()))
    launches, kernels = _split(plan)
    arch = arch_of(target)
    first = CudaDialect(kernels[0][0])
    source = first.module_head() + "".join(CudaDialect(k, "float32").render_function() for k, _ in kernels)
    module = CudaModule(source, arch, launches, twin)
    if compile_ and nvcc_path() is not None:
        module.cubin, _ = compile_cuda(source, arch)
        report = module.cubin.with_name(module.cubin.name.replace(".cubin", ".ptxas.txt")).read_text()
        module.resources = per_kernel_resources(report, arch)
    return module


def _split(plan: Any) -> tuple[list[Launch], list[tuple[Kernel, int]]]:
    """The program kernel's top-level statements as launches: each op statement its own kernel
    over the whole buffer table, each ``Invoke`` its layer kernel."""
    k = plan.kernel
    launches: list[Launch] = []
    kernels: list[tuple[Kernel, int]] = []
    seen_layers: set[str] = set()
    for i, st in enumerate(k.body):
        if isinstance(st, Alloc):
            raise UnsupportedError("a GPU program has no per-thread tiles (it was lowered for a CPU)")
        if isinstance(st, Invoke):
            call = plan.calls[st.slot]
            lk = call.runner.kernel
            knobs = lk.meta.get("knobs", {})
            sc, _ = call.runner.launch(*call_views(plan.work, call))
            launches.append(Launch(lk.name, int(knobs.get("workers", 1)) or 1, int(knobs.get("threads", 256)),
                                   has_grid_barrier(lk.body), lk.name.removeprefix("rnnc_"), tuple(sc)))
            if lk.name not in seen_layers:
                seen_layers.add(lk.name)
                kernels.append((lk, 0))
            continue
        grid, body = _grid(st)
        name = f"{k.name}_op{i}"
        meta = {"path": "program-op", "knobs": {"threads": OP_THREADS}}
        kernels.append((Kernel(name, k.scalars, k.buffers, body, meta=meta), grid))
        launches.append(Launch(name, grid, OP_THREADS))
    return launches, kernels


def _grid(st: Stmt) -> tuple[int, tuple[Stmt, ...]]:
    """Blocks for one op statement and its body as a kernel: a row loop (``ProgramLowerer.rows``)
    is already a grid-strided loop over blocks; anything else runs in one block."""
    if isinstance(st, Loop) and st.kind == "parallel":
        rows = _row_count(st)
        return max(1, min(rows, MAX_BLOCKS)), (st,)
    return 1, (Loop("blk", Var("W"), (st,), "parallel"),)


def _row_count(st: Loop) -> int:
    """The row count a ``rows`` loop splits (its guard ``r < count``)."""
    from rnnc.lower.loopnest import Bin, Const, If

    inner = st.body[0]
    guard = next(s for s in inner.body if isinstance(s, If))
    assert isinstance(guard.cond, Bin) and isinstance(guard.cond.b, Const)
    return int(guard.cond.b.value)


def per_kernel_resources(report: str, arch: str) -> dict[str, Resources]:
    """ptxas ``--resource-usage`` per entry function of a module."""
    from rnnc.backends.cstyle.build import parse_resources

    out = {}
    for chunk in re.split(r"(?=Compiling entry function ')", report)[1:]:
        name = re.match(r"Compiling entry function '(\w+)'", chunk)
        if name:
            out[name.group(1)] = parse_resources(chunk, arch)
    return out


def write_module(module: CudaModule, outdir: str | Any) -> dict[str, Any]:
    """Write the module into an output directory (``model.cu``, and the cubin when nvcc built one)
    and return its manifest entry: files, launches in order, ptxas resources per kernel."""
    import shutil
    from pathlib import Path

    out = Path(outdir)
    (out / "model.cu").write_text(module.source)
    entry: dict[str, Any] = {"source": "model.cu", "arch": module.arch,
                             "launches": [ln.__dict__ for ln in module.launches],
                             "resources": {k: r.to_dict() for k, r in module.resources.items()}}
    if module.cubin is not None:
        shutil.copyfile(module.cubin, out / f"model_{module.arch}.cubin")
        entry["cubin"] = f"model_{module.arch}.cubin"
    return entry
