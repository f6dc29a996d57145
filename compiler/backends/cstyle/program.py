"""Compiling whole Programs with the C-style backends: every ``rnn`` node's layers become
kernels, the remaining (non-recurrent) nodes run through the IR's torch semantics.

This is what ``rnnc compile --backend c`` and ``rnnc.load`` hand back: a callable with the
Program's signature, plus ``stream(batch)`` for real-time stepping of single-rnn programs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rnnc.backends.cstyle.build import build_c, c_flags, load_library
from rnnc.backends.cstyle.dialects import CDialect
from rnnc.backends.cstyle.runtime import LayerRunner, RnnRunner, Stream
from rnnc.errors import UnsupportedError, UserInputError
from rnnc.ir.graph import Cell, Program
from rnnc.ir.interp import run_with_kernels
from rnnc.ir.printer import layer_key
from rnnc.ir.rnn import direction_params, rnn_layout
from rnnc.lower.knobs import schedule_threads
from rnnc.lower.layer import lower_layer
from rnnc.lower.loopnest import Kernel


@dataclass
class LayerBuild:
    """One rendered and built layer kernel (shared by directions with the same cell)."""

    kernel: Kernel
    source: str
    library: str
    fn: Any = field(repr=False, default=None)


def build_cell_kernel(cell: Cell, target: Any = None, schedule: Any = None, force_generic: bool = False
                      ) -> LayerBuild:
    """Lower, render in the C dialect, build with gcc (cached) and load one layer kernel."""
    name = f"rnnc_{layer_key(cell)}"
    kernel = lower_layer(cell, target, schedule, "float32", name=name, force_generic=force_generic)
    return build_kernel(kernel, target)


def build_kernel(kernel: Kernel, target: Any = None) -> LayerBuild:
    """Render any layer loop nest (CPU- or GPU-shaped) in the C dialect, build (with the
    target's ``-march`` where this CPU runs it, ``build.c_flags``) and load it."""
    name = kernel.name
    source = CDialect(kernel).render()
    lib = build_c(source, c_flags(target))
    fn = getattr(load_library(lib), name)
    return LayerBuild(kernel, source, str(lib), fn)


def kernel_storage(kernel: Kernel) -> str:
    """The storage dtype a layer kernel was lowered for (its knobs'; fp32 for kernels without)."""
    return str(kernel.meta.get("knobs", {}).get("dtype", "float32"))


def layer_runner(cell: Cell, build: LayerBuild, params: dict[str, Any], workers: int = 0,
                 dtype: str = "float32") -> Any:
    """The runner of one built (layer, direction): the chunkwise kernel's or the step kernels'
    (``dtype``: 16-bit storage of the CUDA kernels' C twin, ``rnnc.backends.cstyle.chalf``)."""
    if build.kernel.meta.get("path") == "chunk":
        from rnnc.backends.cstyle.chunk_runner import ChunkLayerRunner

        return ChunkLayerRunner(cell, build.kernel, build.fn, params, workers)
    if dtype != "float32":
        from rnnc.backends.cstyle.chalf import HalfLayerRunner

        return HalfLayerRunner(build.kernel, build.fn, params, dtype, workers)
    return LayerRunner(build.kernel, build.fn, params, workers)


class CompiledProgram:
    """A Program whose recurrent layers run as C kernels on this CPU."""

    def __init__(self, program: Program, target: Any = None, schedule: Any = None,
                 force_generic: bool = False, threads: int = 0, builds: dict[str, LayerBuild] | None = None) -> None:
        """``builds``: layers already built (the CUDA twin's GPU-shaped kernels, whose knobs name
        their fp16/bf16 storage of x, y and weights)."""
        import torch

        self.program = program
        self.builds: dict[str, LayerBuild] = dict(builds or {})
        self.rnns: dict[str, RnnRunner] = {}
        values = dict(program.weights)
        for node in program.rnn_nodes():
            attrs = node.attr_dict
            cells, dirs, _ = rnn_layout(attrs)
            per_direction = direction_params(attrs, node.inputs[2 + len(cells[0].states):])
            runners: list[list[Any]] = []
            for k, cell in enumerate(cells):
                key = layer_key(cell)
                # one Schedule for every layer, or a mapping layer key -> Schedule (tuned per layer)
                sched = schedule.get(key) if isinstance(schedule, Mapping) else schedule
                if key not in self.builds:
                    self.builds[key] = build_cell_kernel(cell, target, sched, force_generic)
                # the worker count the tuner measured this schedule with (0: decided per call)
                workers = threads or schedule_threads(sched)
                b = self.builds[key]
                row = []
                for d in range(dirs):
                    try:
                        params = {p: values[n] for p, n in per_direction[k * dirs + d].items()}
                    except KeyError as exc:
                        raise UnsupportedError(f"rnn weight {exc} is computed inside the graph; the C backend "
                                               f"needs weights stored in the Program") from None
                    row.append(layer_runner(cell, b, params, workers, kernel_storage(b.kernel)))
                runners.append(row)
            store = kernel_storage(self.builds[layer_key(cells[0])].kernel)
            self.rnns[node.outputs[0]] = RnnRunner(runners, cells, attrs["batch_first"], *(
                (torch.device("cpu"), getattr(torch, store)) if store != "float32" else ()))

    def __call__(self, *inputs: Any) -> Any:
        return run_with_kernels(self.program, inputs, self.run_rnn)

    def run_rnn(self, node: Any, args: list[Any]) -> tuple[Any, ...]:
        """One ``rnn`` node of the program on its compiled kernels (the interpreter's ``rnn`` hook;
        also what a per-node mix of backends calls, ``rnnc.backends.mixed``)."""
        n_states = len(node.attr("cells")[0].states)
        return self.rnns[node.outputs[0]](args[0], args[1], args[2:2 + n_states])

    def stream(self, batch: int = 1) -> Stream:
        """A streaming stepper; the Program must be a single unidirectional ``rnn`` node."""
        if len(self.rnns) != 1 or len(self.program.graph.nodes) != 1:
            raise UserInputError("streaming needs a Program that is exactly one rnn node (x -> y, states)")
        return next(iter(self.rnns.values())).stream(batch)

    @property
    def sources(self) -> Mapping[str, str]:
        return {k: b.source for k, b in self.builds.items()}


class CudaTwin(CompiledProgram):
    """The CUDA backend where there is no GPU: its kernels' GPU loop nests rendered in C and run
    on this CPU (``cstyle.cuda_twin``, ``rnnc.load`` of a cuda directory); ``describe`` says which
    GPU launch each layer stands for."""

    def describe(self) -> str:
        from rnnc.backends.cstyle import describe_kernels

        return describe_kernels({k: b.kernel for k, b in self.builds.items()})
