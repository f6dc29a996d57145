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

from rnnc.backends.triton.chunk import tiles
from rnnc.backends.triton.render import KERNEL_NAME, pow2
from rnnc.backends.triton.runtime import LayerKernel
from rnnc.backends.triton.scan import KERNEL_PREFIX, launch_config
from rnnc.errors import UnsupportedError
from rnnc.passes.plan import SOLVER_DTYPES


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


def available() -> bool:
    """Whether triton's CUDA code generator and the wheel's ptxas are here (no GPU needed)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return ptxas_path().exists()


def signature(arg_names: list[str], consts: dict[str, Any], dtype: str = "fp32") -> dict[str, str]:
    """The kernel's argument types: pointers of the storage ``dtype`` (``len_ptr`` int64; the
    multi-block kernel's fp32 state buffers ``st_*``/``hx_*`` and i32 ``sync_ptr``), scalars i32,
    ``consts`` constexpr."""
    sig = {}
    for name in arg_names:
        sig[name] = ("constexpr" if name in consts else "*i64" if name == "len_ptr" else "*i32" if name == "sync_ptr"
                     else "*fp32" if name.startswith(("st_", "hx_"))  # multi-block state buffers
                     else f"*{dtype}" if name.endswith("_ptr") else "i32")
    return sig


def launches(lk: LayerKernel) -> list[tuple[str, dict[str, Any], str]]:
    """(kernel name, constexpr values, pointer dtype) of every kernel ``lk`` launches, at the
    launch configuration AOT compiles (forward, no lengths: the same code path)."""
    if lk.is_scan:
        return [(f"{KERNEL_PREFIX}{i}", launch_config(lk, comp), "fp32") for i, comp in enumerate(lk.plan.components)]
    if lk.is_chunk:  # operands and outputs in fp32 (the runner casts)
        return [(KERNEL_NAME, tiles(lk.plan, lk.chunk, lk.tile), "fp32")]
    dtype = SOLVER_DTYPES.get(lk.plan.store_dtype, "fp32")
    return [(KERNEL_NAME, {"BB": lk.batch_tile, "SP": pow2(lk.plan.piece), "REVERSE": False, "HAS_LEN": False,
                           **lk.extra_consts()}, dtype)]


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


def _compile_here(source_path: str, kernels: list, warps: int, capability: int,
                  outstem: str) -> dict[str, Any]:
    """Compile in this process (which must not be in interpreter mode); writes ``outstem``.ptx/.cubin
    (``outstem``.<i>.ptx/.cubin for the further kernels of a module).  Resources of a module with
    several kernels: the largest registers / shared memory, the summed spills."""
    import importlib.util

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    spec = importlib.util.spec_from_file_location("rnnc_aot_kernel", source_path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    regs = shared = stores = loads = 0
    for i, (name, consts, dtype) in enumerate(kernels):
        fn = getattr(module, name)
        compiled = triton.compile(ASTSource(fn, signature(list(fn.arg_names), consts, dtype), consts),
                                  target=GPUTarget("cuda", capability, 32), options={"num_warps": warps})
        stem = outstem if i == 0 else f"{outstem}.{i}"
        Path(stem + ".ptx").write_text(compiled.asm["ptx"])
        Path(stem + ".cubin").write_bytes(compiled.asm["cubin"])
        r, st, ld = ptxas_resources(compiled.asm["ptx"], f"sm_{capability}" + ("a" if capability >= 90 else ""))
        regs, shared = max(regs, r), max(shared, int(compiled.metadata.shared))
        stores, loads = stores + st, loads + ld
    return CompiledResources(f"sm_{capability}", regs, shared, stores, loads, 32 * warps).to_dict()


_COMPILED: dict[tuple[str, int, int, str], CompiledResources] = {}


def compile_for(lk: LayerKernel, capability: int, outstem: str | None = None) -> CompiledResources:
    """Compile ``lk`` for compute capability ``capability`` (80, 86, 89, 90, 100) and measure it.

    Runs in a subprocess: once ``TRITON_INTERPRET=1`` has patched ``triton.language`` (tests,
    CPU runs) the real code generator no longer works in that process.  Results without an
    ``outstem`` are remembered per (source, launch configuration, architecture), so the feedback
    loop and the runtime do not compile the same kernel twice."""
    return compile_source(lk.source, launches(lk), lk.warps, capability, outstem, f"the {lk.plan.cell.kind} kernel")


def compile_source(source: str, kernels: list[tuple[str, dict[str, Any], str]], warps: int, capability: int,
                   outstem: str | None = None, what: str = "the kernel") -> CompiledResources:
    """:func:`compile_for` for any rendered module: ``kernels`` are (name, constexprs, pointer
    dtype) of the ``@triton.jit`` functions in ``source`` to compile (all at ``warps``)."""
    from rnnc.backends.triton.runtime import cache_dir, load_module

    key = (source, capability, warps, json.dumps(kernels))
    if outstem is None and key in _COMPILED:
        return _COMPILED[key]
    load_module(source)  # writes the source file
    import hashlib

    src = cache_dir() / f"rnnc_{hashlib.sha256(source.encode()).hexdigest()[:20]}.py"
    with tempfile.TemporaryDirectory() as tmp:
        stem = outstem or str(Path(tmp, "k"))
        args = json.dumps([str(src.resolve()), kernels, warps, capability, stem])
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
        proc = subprocess.run([sys.executable, "-m", "rnnc.backends.triton.aot", args], capture_output=True,
                              text=True, env=env, check=False)
    if proc.returncode:
        raise UnsupportedError(f"Triton {_triton_version()} could not compile {what} for sm_{capability}: "
                               f"{_compile_error(proc.stderr)}")
    res = CompiledResources(**json.loads(proc.stdout.strip().splitlines()[-1]))
    _COMPILED[key] = res
    return res


def _triton_version() -> str:
    import triton

    return triton.__version__


def _compile_error(stderr: str) -> str:
    """The cause first (Triton's last line: the exception), then the source lines it points at:
    a message cut to its tail showed the kernel's source and lost the reason."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return "(no message)"
    return lines[-1].strip()[:400] + ("\n  at:\n" + "\n".join(lines[-8:-1]) if len(lines) > 1 else "")


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


def fit_schedule(cell: Any, target: Any, capability: int, batch: int = 1, storage: str = "") -> Fit:
    """Solve, compile for ``sm_<capability>``, feed ptxas's answer back into the solver, repeat:
    this backend's policy for the one compiler-feedback loop (``rnnc.constraints.feedback``).

    Why: the solver's register model counts the weights, the accumulators and a fixed overhead;
    the Triton kernel also needs registers for its broadcast tile products and layout
    conversions, which only ptxas knows (LSTM H=64 at 4 warps: 168 predicted, 255 + spills).
    A spilling kernel raises ``min_warps`` past its warp count; a spill-free one whose registers
    are more than :data:`TOLERANCE` off shifts ``register_overhead`` by the difference, so the
    next solve predicts what ptxas reported (and picks more warps if that no longer fits).
    Raises :class:`UnsupportedError` when no spill-free schedule is found.

    Multi-block kernels spill because a program's weight slice is too large, which more warps
    only trade for fewer rows per warp: there the spilled words are added to ``register_overhead``
    so the solver picks a smaller hidden tile (more blocks) instead.

    Linear cells (``chunked_scan``): the same loop with ``register_overhead`` only (the scan
    kernel bounds its own working set, ``scan.sub_tile``, so more warps do not cure a spill).
    Chunk-form cells (``chunkwise``): like fused ones, a spill raises ``min_warps`` (the chunk
    tiles are split among more threads)."""
    from rnnc.backends.triton import can_split, kernel_at, schedule_for
    from rnnc.backends.triton.runtime import plan_any
    from rnnc.constraints.feedback import Verdict, refine
    from rnnc.errors import InfeasibleError

    unit = max(1, target.gpu.register_allocation_unit // target.gpu.warp_size)
    seen: dict[tuple[int, int, int], CompiledResources] = {}
    scan = cell.recurrence == "linear"

    def solve(cal: dict[str, Any]) -> Any:
        return schedule_for(cell, target, batch, register_overhead=cal["register_overhead"],
                            min_warps=cal["min_warps"], grid_sync=cal["grid_sync"])

    def build(sched: Any) -> tuple[Any, CompiledResources]:
        lk = kernel_at(cell, sched, storage)  # a 16-bit model's kernel is compiled as it will run
        knobs = (lk.chunk, lk.tile, lk.warps) if scan else (lk.batch_tile, lk.warps, lk.hidden_tile)
        if knobs not in seen:
            seen[knobs] = compile_for(lk, capability)
        return lk, seen[knobs]

    def judge(cal: dict[str, Any], sched: Any, built: tuple[Any, CompiledResources]) -> Verdict:
        lk, res = built
        pred = int(sched.resources.registers_per_thread)
        # the prediction is the *allocated* count (ptxas's count rounded up to the allocation unit)
        alloc = allocated(res.registers_per_thread, unit)
        record = {**lk.knobs, "predicted_registers": pred,
                  "predicted_shared": int(sched.resources.shared_memory_per_block),
                  "registers": res.registers_per_thread, "allocated_registers": alloc,
                  "shared": res.shared_memory_per_block, "spill_stores": res.spill_stores,
                  "spill_loads": res.spill_loads}
        if res.spill_stores or res.spill_loads:
            if scan and not lk.is_chunk:
                return Verdict(False, record=record)
            if lk.multi_block:  # charge the spilled words as registers: the solver picks a smaller hidden tile
                words = -(-max(res.spill_stores, res.spill_loads) // 4)
                return Verdict(False, calibration={
                    **cal, "register_overhead": cal["register_overhead"]
                    + allocated(res.registers_per_thread + words, unit) - pred}, record=record)
            return Verdict(False, calibration={**cal, "min_warps": 2 * lk.warps}, record=record)
        converged = abs(alloc - pred) <= TOLERANCE * pred
        return Verdict(True, converged, {**cal, "register_overhead": cal["register_overhead"] + alloc - pred},
                       record)

    def infeasible(cal: dict[str, Any], exc: InfeasibleError, state: Any) -> dict[str, Any]:
        if not state.rounds:
            raise exc
        if cal["grid_sync"] is None and state.best is None and not scan and can_split(plan_any(cell)):
            # single block spills at every warp count that fits: split the hidden units over blocks
            return {**cal, "grid_sync": True, "min_warps": 1}
        raise UnsupportedError(f"{cell.kind} H={cell.hidden_size}: after compiler feedback "
                               f"(min_warps={cal['min_warps']}, register_overhead={cal['register_overhead']}) no "
                               f"schedule fits sm_{capability}: {str(exc).splitlines()[0]}") from None

    # single-block first (grid_sync None); multi-block once feedback rules single-block out
    start = {"register_overhead": 0, "min_warps": 1, "grid_sync": None}
    fit = refine(solve, build, judge, start, MAX_ROUNDS + 2, infeasible)
    rounds = tuple({k: v for k, v in r.items() if k != "grid_sync"} for r in fit.rounds)
    if fit.best is None:
        raise UnsupportedError(f"no spill-free {cell.kind} H={cell.hidden_size} kernel for sm_{capability} after "
                               f"{len(rounds)} rounds of compiler feedback: {rounds[-1] if rounds else {}}")
    sched, (_, res) = fit.best
    return Fit(sched, res, rounds, fit.converged)

if __name__ == "__main__":
    print(json.dumps(_compile_here(*json.loads(sys.argv[1]))))
