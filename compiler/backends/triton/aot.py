"""Ahead-of-time compilation of rendered kernels for GPU architectures, without a GPU.

Why: the solver predicts registers and shared memory for a Schedule; only the real compiler
can say whether the kernel fits.  ``triton.compile`` lowers the kernel to PTX/cubin for any
``GPUTarget`` on a CPU-only machine; shared memory comes from the compiled metadata and
registers/spills from ``ptxas --verbose`` (the one bundled in the triton wheel), because Triton
only fills ``n_regs`` when the cubin is loaded on a device.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rnnc.backends.triton.render import pow2
from rnnc.backends.triton.runtime import LayerKernel
from rnnc.errors import UnsupportedError


@dataclass(frozen=True)
class CompiledResources:
    """What the compiler reports for one kernel on one architecture."""

    arch: str
    registers_per_thread: int
    shared_memory_per_block: int
    spill_stores: int
    spill_loads: int
    threads_per_block: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ptxas_path() -> Path:
    """The wheel's newest ptxas: Triton 3.9 emits PTX 9.x, which only the CUDA 13 one reads."""
    import triton

    folder = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    newest = folder / "ptxas-blackwell"
    return newest if newest.exists() else folder / "ptxas"


def signature(arg_names: list[str], batch_tile: int, sp: int, dtype: str = "fp32"
              ) -> tuple[dict[str, str], dict[str, Any]]:
    """The kernel's argument types and constexpr values (``reverse``/``lengths`` off: same code)."""
    consts = {"BB": batch_tile, "SP": sp, "REVERSE": False, "HAS_LEN": False}
    sig = {}
    for name in arg_names:
        sig[name] = ("constexpr" if name in consts else "*i64" if name == "len_ptr"
                     else f"*{dtype}" if name.endswith("_ptr") else "i32")
    return sig, consts


def ptxas_resources(ptx: str, arch: str) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) of ``ptx`` for ``sm_XX`` from ptxas."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "k.ptx")
        src.write_text(ptx)
        proc = subprocess.run([str(ptxas_path()), f"-arch={arch}", "--verbose", "-o", str(Path(tmp, "k.cubin")),
                               str(src)], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise UnsupportedError(f"ptxas failed for {arch}: {proc.stderr.strip()[:400]}")
    regs = re.search(r"Used (\d+) registers", proc.stderr)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", proc.stderr)
    return (int(regs.group(1)) if regs else 0, int(spills.group(1)) if spills else 0,
            int(spills.group(2)) if spills else 0)


def _compile_here(source_path: str, batch_tile: int, sp: int, warps: int, capability: int,
                  outstem: str) -> dict[str, Any]:
    """Compile in this process (which must not be in interpreter mode); writes ``outstem``.ptx/.cubin."""
    import importlib.util

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    spec = importlib.util.spec_from_file_location("rnnc_aot_kernel", source_path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    fn = module.rnnc_layer
    sig, consts = signature(list(fn.arg_names), batch_tile, sp)
    compiled = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", capability, 32),
                              options={"num_warps": warps})
    Path(outstem + ".ptx").write_text(compiled.asm["ptx"])
    Path(outstem + ".cubin").write_bytes(compiled.asm["cubin"])
    regs, stores, loads = ptxas_resources(compiled.asm["ptx"], f"sm_{capability}" + ("a" if capability >= 90 else ""))
    return CompiledResources(f"sm_{capability}", regs, int(compiled.metadata.shared), stores, loads,
                             32 * warps).to_dict()


def compile_for(lk: LayerKernel, capability: int, outstem: str | None = None) -> CompiledResources:
    """Compile ``lk`` for compute capability ``capability`` (80, 86, 89, 90) and measure it.

    Runs in a subprocess: once ``TRITON_INTERPRET=1`` has patched ``triton.language`` (tests,
    CPU runs) the real code generator no longer works in that process."""
    from rnnc.backends.triton.runtime import cache_dir, load_kernel

    load_kernel(lk.source)  # writes the source file
    import hashlib

    src = cache_dir() / f"rnnc_{hashlib.sha256(lk.source.encode()).hexdigest()[:20]}.py"
    with tempfile.TemporaryDirectory() as tmp:
        stem = outstem or str(Path(tmp, "k"))
        args = json.dumps([str(src.resolve()), lk.batch_tile, pow2(lk.plan.piece), lk.warps, capability, stem])
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
        proc = subprocess.run([sys.executable, "-m", "rnnc.backends.triton.aot", args], capture_output=True,
                              text=True, env=env, check=False)
    if proc.returncode:
        raise UnsupportedError(f"Triton could not compile the {lk.plan.cell.kind} kernel for sm_{capability}: "
                               f"{proc.stderr.strip()[-600:]}")
    return CompiledResources(**json.loads(proc.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    print(json.dumps(_compile_here(*json.loads(sys.argv[1]))))
