"""From a Program to TVM: one PrimFunc per (rnn node, layer, direction) in one IRModule.

``layer_functions`` is the IR side (no compilation), ``build_llvm`` / ``build_cuda`` compile it.
Builds are cached in-process by the module's structural hash, so a test sweep over batch sizes
and sequence lengths (both symbolic in the functions) compiles each layer configuration once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import tvm
import tvm_ffi

from rnnc.backends.tvm.knobs import Knobs, knobs_for
from rnnc.backends.tvm.layer import build_layer
from rnnc.backends.tvm.nests import CpuEmitter, CudaEmitter
from rnnc.backends.tvm.plan import StepPlan, plan_step, unsupported_ops
from rnnc.errors import UnsupportedError
from rnnc.ir.graph import Cell, Program
from rnnc.ir.rnn import rnn_layout

_BUILDS: dict[tuple[int, str], Any] = {}


@dataclass(frozen=True)
class LayerFn:
    """One compiled direction of one layer: its function name and the plan it was built from."""

    name: str
    node: int  # index of the rnn node among the program's rnn nodes
    layer: int
    direction: int
    plan: StepPlan
    knobs: Knobs
    schedule: Any = None


def llvm_target() -> Any:
    """This CPU as an LLVM target (``-mcpu=native`` is refused by TVM 0.27's LLVM, so ask LLVM
    for the host CPU's name)."""
    from tvm.target import codegen

    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})


def cuda_target(arch: str) -> Any:
    """A CUDA target for ``arch`` (``sm_90``); source generation needs no GPU."""
    return tvm.target.Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm"})


def check_cell(cell: Cell) -> None:
    """Raise ``UnsupportedError`` naming what the TVM renderer cannot render in ``cell``."""
    bad = unsupported_ops(cell)
    if bad:
        raise UnsupportedError(f"the TVM backend cannot render op(s) {', '.join(bad)} in the {cell.kind} cell step")
    dtypes = {t.dtype for _, t in cell.step.value_types().items()} - {"bool", "int64"}
    if dtypes != {"float32"}:
        raise UnsupportedError(f"the TVM backend renders float32 cells; {cell.kind} uses {', '.join(sorted(dtypes))}")
    if cell.step.value_types()[dict(cell.step.outputs)["y"]].rank != 2:
        raise UnsupportedError(f"the TVM backend needs the {cell.kind} cell's output y to be [B, features]")


def solver_schedule(cell: Cell, target: Any, batch: int) -> Any:
    """The solver's Schedule for a known cell on ``target``, None for cells it has no model of."""
    from rnnc.constraints import solve
    from rnnc.passes import plan_layer

    plan = plan_layer(cell)
    return solve(plan.problem(batch), target) if plan.known else None


def schedule_for(schedule: Any, cell: Cell, target: Any, batch: int) -> Any:
    """The Schedule of one layer: ``schedule`` itself, its entry for the layer when it is a
    mapping (layer key -> Schedule, what ``rnnc.compile`` passes from the tuning database), or
    the solver's when none is given."""
    if isinstance(schedule, Mapping):
        from rnnc.ir import layer_key

        schedule = schedule.get(layer_key(cell))
    return schedule if schedule is not None else solver_schedule(cell, target, batch)


def layer_functions(program: Program, target: Any, schedule: Any = None, batch: int = 1,
                    cuda: bool = False, threads: int = 0) -> tuple[list[LayerFn], dict[str, Any]]:
    """The LayerFns of every rnn layer direction and their PrimFuncs (name -> PrimFunc);
    ``threads > 0`` overrides the Schedule's CPU thread count (1: no parallel loops)."""
    fns: list[LayerFn] = []
    prims: dict[str, Any] = {}
    for ni, node in enumerate(program.rnn_nodes()):
        attrs = node.attr_dict
        cells, dirs, _ = rnn_layout(attrs)
        for k, cell in enumerate(cells):
            check_cell(cell)
            sched = schedule_for(schedule, cell, target, batch)
            knobs = knobs_for(sched, target, batch)
            knobs = replace(knobs, threads=threads) if threads > 0 else knobs
            plan = plan_step(cell)
            emitter = CudaEmitter(knobs) if cuda else CpuEmitter(knobs)
            for d in range(dirs):
                name = f"rnn{ni}_l{k}_{'rev' if d else 'fwd'}"
                prims[name] = build_layer(plan, emitter, reverse=bool(d), y_total=dirs * cell.output_size,
                                          y_off=d * cell.output_size, name=name)
                fns.append(LayerFn(name, ni, k, d, plan, knobs, sched))
    if not fns:
        raise UnsupportedError("the program has no recurrent layer (rnn node) for the TVM backend to compile")
    return fns, prims


def build(prims: dict[str, Any], target: Any) -> Any:
    """Compile the PrimFuncs for ``target`` (cached by structural hash and target)."""
    mod = tvm.IRModule(prims)
    key = (tvm_ffi.structural_hash(mod), str(target))
    if key not in _BUILDS:
        _BUILDS[key] = tvm.compile(mod, target=target)
    return _BUILDS[key]
