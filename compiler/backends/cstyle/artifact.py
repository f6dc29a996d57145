"""Output directories of the C-style backends: ``rnnc compile --backend c|cuda -o OUTDIR``.

An output directory is self-contained::

    manifest.json        Program hash, target, backend, versions, per layer: knobs, Schedule,
                         sources, built files, measured resources (ptxas) vs predicted
    program.rnnc         the IR text;  weights.pt: its tensors
    <layer>.c / .so      C dialect source and shared library (for ``--backend cuda`` this is the
                         same loop nest as the CUDA kernel: its CPU numerics)
    <layer>.cu           CUDA source;  <layer>.sm_XX.cubin: one cubin per architecture

``load(OUTDIR)`` returns a :class:`CompiledProgram` (callable, ``.stream(batch)``).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rnnc import __version__
from rnnc.backends.cstyle.build import build_c, c_flags, compile_cuda, load_library, nvcc_path
from rnnc.backends.cstyle.cuda_fit import fit_cuda_schedule
from rnnc.backends.cstyle.dialects import CDialect, CudaDialect
from rnnc.backends.cstyle.program import CompiledProgram, CudaTwin, LayerBuild
from rnnc.backends.cstyle.variants import variant
from rnnc.backends.manifest import manifest_file, read_manifest, read_program, write_manifest, write_program
from rnnc.errors import InfeasibleError, UserInputError
from rnnc.ir import layer_cells, layer_key
from rnnc.ir.graph import Cell, Program
from rnnc.ir.printer import layer_storage
from rnnc.lower.gates import analyse_gates
from rnnc.lower.knobs import DTYPE_BYTES, predict_smem
from rnnc.lower.layer import lower_layer
from rnnc.lower.loopnest import has_grid_barrier

CUDA_ARCHS = ("sm_80", "sm_86", "sm_89", "sm_90")


def _target(target: Any, backend: str) -> Any:
    from rnnc.targets import get

    if target is None:
        target = variant(backend).default_target
    return get(target) if isinstance(target, str) else target


def solver_schedule(cell: Cell, target: Any, dtype: str, batch: int = 1, register_overhead: int = 0) -> Any:
    """The solver's Schedule for this layer, or None when the solver has no model of the cell.
    An infeasible tiling is re-raised: the user asked for a target the layer cannot fit.
    ``register_overhead``: registers per thread ptxas needed beyond the model (see fit_schedule)."""
    from rnnc.constraints import solve
    from rnnc.passes import plan_layer

    plan = plan_layer(cell)
    if not plan.known:
        return None
    # the fused CUDA kernel renders the solver's register/shared split of R as it is (register_k);
    # its warp GEMM is SIMT FMAs in every storage dtype, so the model must not count tensor cores,
    # and a block runs its batch tiles one after another (the grid is the hidden split)
    spec = plan.problem(batch, dtype, register_overhead=register_overhead, tensor_cores=False, batch_split=False)
    try:
        return solve(spec, target)
    except (InfeasibleError, UserInputError):  # no tiling fits, or the target lacks the dtype (T4 and bf16)
        raise
    except Exception as exc:  # a gap in the solver's model must not block compiling; say so
        warnings.warn(f"no solver schedule for {cell.kind} on {getattr(target, 'tag', target)} "
                      f"({type(exc).__name__}: {exc}); using the backend's default knobs", stacklevel=2)
        return None


def weight_split(kernel: Any, bytes_: int) -> dict[str, Any]:
    """Where the fused CUDA kernel keeps its recurrent weights: per recurrent linear, K-columns
    in registers and in shared memory, and the bytes each takes (per thread / per block)."""
    kn = kernel.meta["knobs"]
    out: dict[str, Any] = {"register_k": kn["register_k"], "linears": {}}
    for b in kernel.buffers:
        if b.space == "register":
            slots = int(b.size.value) // kn["threads"]
            out["linears"].setdefault(b.name[2:], {})["register_bytes_per_thread"] = slots * bytes_
        elif b.space == "local" and b.name.startswith("r_"):
            out["linears"].setdefault(b.name[2:], {})["shared_bytes"] = int(b.size.value) * bytes_
    return out


def _versions() -> dict[str, str]:
    import torch

    out = {"rnnc": __version__, "torch": torch.__version__, "python": platform.python_version()}
    gcc = shutil.which("gcc")
    if gcc:
        out["gcc"] = subprocess.run([gcc, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    nvcc = nvcc_path()
    if nvcc:
        text = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        out["nvcc"] = text.strip().splitlines()[-1] if text else "?"
    return out


def compile_layer(cell: Cell, target: Any, backend: str, outdir: Path, schedule: Any = None,
                  dtype: str = "float32", archs: tuple[str, ...] = CUDA_ARCHS, batch: int = 1) -> dict[str, Any]:
    """Lower, render, build one layer into ``outdir``; returns its manifest entry."""
    key = layer_key(cell)
    v = variant(backend)
    kdtype = v.kernel_dtype(dtype)
    note, fit = "", None
    if v.on_gpu and schedule is None and getattr(target, "gpu", None) is not None \
            and analyse_gates(cell) is not None:
        # the solver's Schedule, refitted until ptxas meets its register prediction (cuda_fit)
        fit = fit_cuda_schedule(cell, target, kdtype, f"rnnc_{key}", batch, also=archs)
        sched, kernel, note = fit.schedule, fit.kernel, fit.note
    elif not v.on_gpu:  # the CPU default is the untuned knobs rnnc.compile uses (rnnc.tune.resolve)
        sched = schedule
        kernel = lower_layer(cell, target, sched, kdtype, name=f"rnnc_{key}")
    else:
        sched = schedule if schedule is not None else solver_schedule(cell, target, dtype, batch)
        try:
            kernel = lower_layer(cell, target, sched, kdtype, name=f"rnnc_{key}")
        except InfeasibleError as exc:
            if sched is None:
                raise
            # a Schedule given by the caller (or a CPU one) that this kernel cannot hold
            note = f"solver schedule not renderable by this kernel ({exc}); heuristic knobs used"
            kernel = lower_layer(cell, target, None, kdtype, name=f"rnnc_{key}")
    entry: dict[str, Any] = {"cell": cell.kind, "path": kernel.meta["path"], "knobs": kernel.meta["knobs"],
                             "schedule": sched.to_dict() if hasattr(sched, "to_dict") else None,
                             "schedule_note": note}
    c_src = twin_dialect(kernel, kdtype if v.on_gpu else "float32").render()
    (outdir / f"{key}.c").write_text(c_src)
    flags = c_flags(target)
    shutil.copy(build_c(c_src, flags), outdir / f"{key}.so")
    entry.update(source_c=f"{key}.c", library=f"{key}.so", c_flags=" ".join(flags))
    if v.on_gpu:  # the GPU dialect's source and a cubin per architecture beside the C twin
        r = CudaDialect(kernel, dtype)
        cu = r.render()
        (outdir / f"{key}.cu").write_text(cu)
        entry["source_cuda"] = f"{key}.cu"
        entry["shared_memory_rendered"] = r.smem_bytes
        entry["shared_memory_dynamic"] = r.dynamic
        kn = kernel.meta["knobs"]
        if kernel.meta["path"] == "fused":
            n_in = kernel.meta["projections"]  # input projections the kernel computes itself
            entry["shared_memory_predicted"] = predict_smem(cell.hidden_size, kernel.meta["gates"], kn["tile_hidden"],
                                                            kn["batch_block"], DTYPE_BYTES[dtype], n_in,
                                                            kn["register_k"])
            entry["weight_split"] = weight_split(kernel, DTYPE_BYTES[dtype])
        entry["launch"] = {"grid": kn["workers"], "block": kn["threads"], "cooperative": has_grid_barrier(kernel.body),
                           "dynamic_shared_bytes": r.smem_bytes if r.dynamic else 0,
                           "kernel": kernel.name, "scalars": list(kernel.scalars),
                           "buffers": [b.name for b in (*kernel.args, *kernel.work)],
                           "abi": "sc: device int64[scalars]; bufs: device pointer array in 'buffers' order"}
        if not entry["launch"]["cooperative"]:  # no grid barrier: one block per batch sample, any grid
            entry["launch"]["grid_per_call"] = "batch"
        entry["cubins"], entry["resources"] = {}, {}
        for arch in archs:
            cubin, res = compile_cuda(cu, arch)
            shutil.copy(cubin, outdir / f"{key}.{arch}.cubin")
            entry["cubins"][arch] = f"{key}.{arch}.cubin"
            entry["resources"][arch] = res.to_dict()
        if sched is not None and getattr(sched, "resources", None) is not None:
            entry["schedule_predicted"] = {"registers_per_thread": sched.resources.registers_per_thread,
                                           "shared_memory_per_block": sched.resources.shared_memory_per_block}
        res_by_arch = entry["resources"].items()
        entry["registers"] = {"predicted": kn.get("max_registers") or None, "cap": kn.get("max_registers", 0),
                              "ptxas": {a: rs["registers"] for a, rs in res_by_arch},
                              "spills": {a: rs["spill_stores"] + rs["spill_loads"] for a, rs in res_by_arch}}
        if fit is not None:
            entry["register_fit"] = {"arch": fit.arch, "register_overhead": fit.register_overhead,
                                     "rounds": fit.rounds}
    return entry


def compile_to_dir(program: Program, target: Any, backend: str, outdir: str | Path, schedule: Any = None,
                   archs: tuple[str, ...] | None = None, batch: int = 1) -> dict[str, Any]:
    """Write the output directory (module docstring) and return the manifest. By default cubins
    are built for the target's own architecture first, then for the common data-centre ones."""
    variant(backend)  # one sentence for a name that is neither
    spec = _target(target, backend)
    if archs is None:
        gpu = getattr(spec, "gpu", None)
        own = (f"sm_{gpu.compute_capability[0]}{gpu.compute_capability[1]}",) if gpu is not None else ()
        archs = tuple(dict.fromkeys(own + CUDA_ARCHS))
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    layers: dict[str, Any] = {}
    storage = layer_storage(program)  # a model cast to fp16/bf16 stores 16-bit (its steps stay fp32)
    for key, cell in layer_cells(program).items():
        dtype = storage[key]
        # one Schedule for every layer, or layer key -> Schedule (rnnc.tune.resolve)
        sched = schedule.get(key) if isinstance(schedule, Mapping) else schedule
        layers[key] = compile_layer(cell, spec, backend, out, sched, dtype, archs, batch)

    if not layers:
        raise UserInputError("the program has no recurrent layer for the C-style backends to compile")
    manifest = {"backend": backend, "target": spec.tag, "versions": _versions(), "layers": layers,
                **write_program(out, program)}
    return write_manifest(out, manifest)


def load(outdir: str | Path) -> Any:
    """The callable program of an output directory.  ``cuda`` directories run their cubins on
    the GPU when this machine has one (:func:`rnnc.backends.cstyle.cuda_program.load_cuda`,
    which is also the explicit GPU entry point); without one, like ``c`` directories, they run
    the C dialect of the same loop nest, i.e. the CPU numerics of the GPU kernel."""
    from rnnc.backends.cstyle.cuda_driver import cuda_available

    out = Path(outdir)
    manifest = read_manifest(out)
    if variant(manifest.get("backend", "c")).on_gpu and cuda_available():
        from rnnc.backends.cstyle.cuda_program import load_cuda

        return load_cuda(out)
    program = read_program(out, manifest)
    builds: dict[str, LayerBuild] = {}
    for key, cell in layer_cells(program).items():
        entry = manifest["layers"][key]
        store = str(entry["knobs"].get("dtype", "float32"))
        kernel = lower_layer(cell, None, entry["knobs"], store, name=f"rnnc_{key}",
                             force_generic=entry["path"] == "generic")
        src = manifest_file(out, entry, "source_c").read_text()
        if twin_dialect(kernel, store).render() != src:
            raise UserInputError(f"{out}/{entry['source_c']} was built by a different rnnc; recompile")
        lib = load_library(manifest_file(out, entry, "library").resolve())
        builds[key] = LayerBuild(kernel, src, str(out / entry["library"]), getattr(lib, kernel.name))
    # a cuda directory's C twin says which GPU launch each layer stands for
    if variant(manifest.get("backend", "c")).on_gpu:
        return CudaTwin(program, builds=builds)
    engine = manifest.get("engine", "kernels")
    if engine not in ("kernels", "native"):
        raise UserInputError(f"{out}/manifest.json names engine {engine!r}; this rnnc runs 'kernels' or 'native'")
    compiled = CompiledProgram(program, builds=builds)
    if engine == "native":  # the whole program as one C function, planned at each new input signature
        from rnnc.backends.cstyle.whole import NativeProgram

        return NativeProgram(compiled)
    return compiled


def twin_dialect(kernel: Any, dtype: str) -> CDialect:
    """The C rendering of a layer kernel: 16-bit storage (``chalf``) for a GPU kernel's fp16/bf16
    twin, plain C otherwise -- what an output directory's ``.c`` holds and its loader rebuilds."""
    if dtype == "float32":
        return CDialect(kernel)
    from rnnc.backends.cstyle.chalf import CHalfDialect

    return CHalfDialect(kernel, dtype)
