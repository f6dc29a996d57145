"""CUDA from the same layer TIR: generate the source per architecture and compile-check it.

No GPU is needed: TVM generates CUDA C for ``Target({"kind": "cuda", "arch": "sm_XX"})`` and
``nvcc -cubin -arch=sm_XX --resource-usage`` reports each kernel's registers, shared memory and
spills, which the manifest puts next to what the Schedule predicted.  They are not expected
to agree: the Schedule describes a persistent fused kernel that keeps R on chip, while these
kernels are one launch per loop nest per step (``nests.CudaEmitter``) reading R from global
memory; the report makes that gap visible instead of hiding it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from rnnc.backends.tvm.build import build, cuda_target, layer_functions
from rnnc.errors import RnncError, UnsupportedError
from rnnc.ir.graph import Program

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_FIELDS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "shared_bytes": re.compile(r"(\d+) bytes smem"),
    "stack_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
}


def cuda_source(program: Program, target: Any, arch: str, schedule: Any = None, batch: int = 1) -> tuple[str, list]:
    """The CUDA C of every layer function of ``program`` for ``arch`` and the LayerFns."""
    fns, prims = layer_functions(program, target, schedule, batch, cuda=True)
    executable = build(prims, cuda_target(arch))
    imports = executable.mod.imports
    if not imports:
        raise RnncError(f"TVM produced no device module for {arch} (a bug in rnnc's CUDA emitter)")
    return imports[0].inspect_source(), fns


def nvcc_resources(source: str, arch: str, workdir: Path) -> dict[str, dict[str, int]]:
    """``nvcc -cubin --resource-usage`` on ``source``: per kernel name, what ptxas reported."""
    from rnnc.backends.cstyle.build import nvcc_path

    nvcc = nvcc_path()
    if nvcc is None:
        raise UnsupportedError("compile-checking CUDA needs nvcc on PATH")
    src = workdir / f"layers.{arch}.cu"
    src.write_text(source)
    cubin = workdir / f"layers.{arch}.cubin"
    proc = subprocess.run([nvcc, "-cubin", f"-arch={arch}", "--resource-usage", "-O3", str(src), "-o", str(cubin)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RnncError(f"nvcc failed for {arch} on {src} (a bug in rnnc's TVM CUDA path):\n{proc.stderr[-2000:]}")
    out: dict[str, dict[str, int]] = {}
    text = proc.stdout + proc.stderr
    starts = [(m.start(), m.group(1)) for m in _ENTRY.finditer(text)]
    for i, (pos, name) in enumerate(starts):
        chunk = text[pos:starts[i + 1][0] if i + 1 < len(starts) else len(text)]
        out[name] = {k: int(m.group(1)) if (m := pat.search(chunk)) else 0 for k, pat in _FIELDS.items()}
    return out


def compile_cuda_layers(program: Program, target: Any, outdir: Path, schedule: Any = None, batch: int = 1,
                        archs: tuple[str, ...] = ("sm_80", "sm_90")) -> dict[str, dict[str, Any]]:
    """Per layer function: its CUDA files, per-arch kernel resources and the Schedule's prediction."""
    entries: dict[str, dict[str, Any]] = {}
    for arch in archs:
        source, fns = cuda_source(program, target, arch, schedule, batch)
        kernels = nvcc_resources(source, arch, outdir)
        for f in fns:
            e = entries.setdefault(f.name, {"sources": {}, "cubins": {}, "resources": {}, "launch": {}})
            e["sources"][arch] = f"layers.{arch}.cu"
            e["cubins"][arch] = f"layers.{arch}.cubin"
            mine = {k: v for k, v in kernels.items() if k == f"{f.name}_kernel" or k.startswith(f"{f.name}_kernel_")}
            e["resources"][arch] = mine
            e["launch"] = {"threads_per_block": f.knobs.threads_per_block, "kernels_per_step": len(mine)}
            res = getattr(f.schedule, "resources", None)
            if res is not None:
                e["schedule_predicted"] = {"registers_per_thread": res.registers_per_thread,
                                           "shared_memory_per_block": res.shared_memory_per_block,
                                           "threads_per_block": res.threads_per_block}
    return entries
