"""A program whose ``rnn`` nodes run on different backends: each node on the one its tuning
records measure fastest.

Why: the backend is part of the tuner's search, and which backend wins depends on the layer's
shape and the host (``docs/benchmarks/tvm_cpu.md`` against ``docs/benchmarks/cpu_rnn.md``), so a
model with a large encoder and a small decoder can be fastest with each on its own.  The granularity is the
``rnn`` node -- a stacked ``nn.LSTM`` is one node whose layers share one backend -- because each
backend's runner drives a whole node (``rnnc.ir.rnn.run_stack`` with its own kernels and weight
layout).  Everything else runs as in any runner: the IR interpreter around the nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnnc.errors import UserInputError
from rnnc.ir import Program
from rnnc.ir.interp import run_with_kernels


class MixedProgram:
    """``program`` with rnn node ``n`` run by ``runners[assign[n]]`` (each runner built for the
    whole program by its backend, exposing ``run_rnn(node, args)``)."""

    def __init__(self, program: Program, runners: Mapping[str, Any], assign: Mapping[str, str]) -> None:
        missing = [n.outputs[0] for n in program.rnn_nodes() if assign.get(n.outputs[0]) not in runners]
        if missing:
            raise UserInputError(f"rnn node(s) {missing} have no backend runner in the mix")
        self.program, self.runners, self.assign = program, dict(runners), dict(assign)

    def __call__(self, *inputs: Any) -> Any:
        return run_with_kernels(self.program, inputs, self.run_rnn)

    def run_rnn(self, node: Any, args: list[Any]) -> tuple[Any, ...]:
        return self.runners[self.assign[node.outputs[0]]].run_rnn(node, args)

    def describe(self) -> str:
        return "rnn nodes per backend: " + ", ".join(f"{n} on {b}" for n, b in self.assign.items())
