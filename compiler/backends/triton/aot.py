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


#: how far ptxas's register count may be from the prediction before it is fed back (issue 4)
TOLERANCE = 0.10
#: solve/compile rounds before fit_schedule settles for the last spill-free schedule
MAX_ROUNDS = 6


def allocated(registers: int, unit: int = 8) -> int:
    """Registers per thread the hardware allocates for ptxas's count (rounded up to ``unit``)."""
    return -(-registers // unit) * unit


@dataclass(frozen=True)
class Fit:
    """A Schedule after compiler feedback, the kernel's measured resources, and every round.

    ``rounds``: per solve, the calibration it ran with (``register_overhead``, ``min_warps``),
    the chosen ``batch_tile``/``warps``, the predicted and the compiled registers/shared memory
    and spills -- what the manifest records so a prediction can always be checked.
    ``converged``: the final prediction is within :data:`TOLERANCE` of ptxas.
    """

    schedule: Any
    measured: CompiledResources
    rounds: tuple[dict[str, Any], ...]
    converged: bool

    def to_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule.to_dict(), "measured": self.measured.to_dict(),
                "rounds": list(self.rounds), "converged": self.converged}


def fit_schedule(cell: Any, target: Any, capability: int, batch: int = 1) -> Fit:
    """Solve, compile for ``sm_<capability>``, feed ptxas's answer back into the solver, repeat.

    Why: the solver's register model counts the weights, the accumulators and a fixed overhead;
    the Triton kernel also needs registers for its broadcast tile products and layout
    conversions, which only ptxas knows (LSTM H=64 at 4 warps: 168 predicted, 255 + spills).
    A spilling kernel raises ``min_warps`` past its warp count; a spill-free one whose registers
    are more than :data:`TOLERANCE` off shifts ``register_overhead`` by the difference, so the
    next solve predicts what ptxas reported (and picks more warps if that no longer fits).
    Raises :class:`UnsupportedError` when no spill-free schedule is found."""
    from rnnc.backends.triton import schedule_for
    from rnnc.backends.triton.runtime import layer_kernel
    from rnnc.errors import InfeasibleError

    unit = max(1, target.gpu.register_allocation_unit // target.gpu.warp_size)
    overhead, min_warps = 0, 1
    seen: dict[tuple[int, int], CompiledResources] = {}
    rounds: list[dict[str, Any]] = []
    best: tuple[Any, CompiledResources] | None = None
    for _ in range(MAX_ROUNDS):
        try:
            sched = schedule_for(cell, target, batch, register_overhead=overhead, min_warps=min_warps)
        except InfeasibleError as exc:
            if not rounds:
                raise
            raise UnsupportedError(f"{cell.kind} H={cell.hidden_size}: after compiler feedback "
                                   f"(min_warps={min_warps}, register_overhead={overhead}) no single-block "
                                   f"schedule fits sm_{capability}: {str(exc).splitlines()[0]}") from None
        knobs = (int(sched.param("batch_tile")), int(sched.param("warps")))
        if knobs not in seen:
            seen[knobs] = compile_for(layer_kernel(cell, *knobs), capability)
        res = seen[knobs]
        pred = int(sched.resources.registers_per_thread)
        # the prediction is the *allocated* count (ptxas's count rounded up to the allocation unit)
        alloc = allocated(res.registers_per_thread, unit)
        rounds.append({"register_overhead": overhead, "min_warps": min_warps, "batch_tile": knobs[0],
                       "warps": knobs[1], "predicted_registers": pred,
                       "predicted_shared": int(sched.resources.shared_memory_per_block),
                       "registers": res.registers_per_thread, "allocated_registers": alloc,
                       "shared": res.shared_memory_per_block,
                       "spill_stores": res.spill_stores, "spill_loads": res.spill_loads})
        if res.spill_stores or res.spill_loads:
            min_warps = 2 * knobs[1]
            continue
        best = (sched, res)
        if abs(alloc - pred) <= TOLERANCE * pred:
            return Fit(sched, res, tuple(rounds), True)
        overhead += alloc - pred
    if best is None:
        raise UnsupportedError(f"no spill-free {cell.kind} H={cell.hidden_size} kernel for sm_{capability} after "
                               f"{len(rounds)} rounds of compiler feedback: {rounds[-1]}")
    return Fit(best[0], best[1], tuple(rounds), False)


if __name__ == "__main__":
    print(json.dumps(_compile_here(*json.loads(sys.argv[1]))))
