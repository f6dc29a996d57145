"""Where each node of a cell's step graph runs in the TVM layer function, decided from the IR alone.

A layer function has three stages, and every step-graph node belongs to exactly one:

* ``prologue``: nodes that depend on weights only (LRU's eigenvalues, Mamba's ``-exp(A_log)``);
  computed once per call, so the time loop never recomputes them;
* ``hoisted``: reductions (``linear``/``matmul``/``sum``) that depend on ``x`` but not on any
  state, plus their ``x``-only ancestors; they run for a chunk of steps' ``C*B`` rows before
  those steps, which turns the input projection into one batched matmul instead of ``C`` small
  ones (and keeps its result in cache);
* ``step``: everything else, inside the serial time loop.  ``x``-only elementwise nodes that
  are not hoisted stay here and are inlined into their consumers (recomputing ``softplus(Δ)``
  per step is cheaper than a ``[T, B, D]`` buffer).

Inside a stage, elementwise and view nodes are *inlined* (rendered as expressions of their
consumers: the fused gate math), and a value is *materialized* into a buffer only where
inlining would recompute it: reduction outputs, values read by a reduction, values read more
than once, and the step's outputs.  No TVM here: this module is the testable decision layer.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from rnnc.ir.graph import Cell, Node
from rnnc.passes import plan_layer
from rnnc.passes.plan import INPUT, STATE, WEIGHTS

REDUCTIONS = frozenset({"linear", "matmul", "sum"})
VIEWS = frozenset({"reshape", "unsqueeze", "squeeze", "split", "slice", "select", "transpose", "cast"})
#: Ops the TIR renderer knows; ``supports`` declines cells with anything else.
ELEMENTWISE = frozenset({
    "neg", "sigmoid", "tanh", "exp", "log", "softplus", "relu", "abs", "sqrt", "silu", "gelu", "logsigmoid",
    "reciprocal", "cos", "sin", "add", "sub", "mul", "div", "max", "min", "pow", "gt", "lt", "where", "clamp",
})
KNOWN_OPS = REDUCTIONS | VIEWS | ELEMENTWISE | {"const", "concat"}


@dataclass(frozen=True)
class StepPlan:
    """The stage of every node and the values that get buffers (see the module docstring)."""

    cell: Cell
    stage: dict[str, str]  # node output[0] -> "prologue" | "hoisted" | "step"
    materialized: frozenset[str]  # value names stored into a buffer of their stage
    packed: frozenset[str]  # params used as a linear weight: passed transposed, [in, out]

    def nodes(self, stage: str) -> tuple[Node, ...]:
        return tuple(n for n in self.cell.step.nodes if self.stage[n.outputs[0]] == stage)


def unsupported_ops(cell: Cell) -> list[str]:
    """Ops of the step graph the TVM renderer cannot render (empty when it can render all)."""
    return sorted({n.op for n in cell.step.nodes if n.op not in KNOWN_OPS})


def _producers(cell: Cell) -> dict[str, Node]:
    return {o: n for n in cell.step.nodes for o in n.outputs}


def plan_step(cell: Cell) -> StepPlan:
    """Stage and materialization decisions for one cell (module docstring)."""
    g = cell.step
    produced_by = _producers(cell)
    depends = plan_layer(cell).depends  # the layer plan's weights / input / state classes
    as_stage = {WEIGHTS: "prologue", INPUT: "xonly", STATE: "step"}
    stage: dict[str, str] = {n.outputs[0]: as_stage[depends[n.outputs[0]]] for n in g.nodes}
    # hoist x-only reductions and their x-only ancestors
    hoist: set[str] = set()
    todo = [n.outputs[0] for n in g.nodes if stage[n.outputs[0]] == "xonly" and n.op in REDUCTIONS]
    while todo:
        v = todo.pop()
        if v in hoist or v not in produced_by or stage.get(produced_by[v].outputs[0]) != "xonly":
            continue
        node = produced_by[v]
        hoist.update(node.outputs)
        todo.extend(i for i in node.inputs if i)
    for n in g.nodes:
        v = n.outputs[0]
        if stage[v] == "xonly":
            stage[v] = "hoisted" if v in hoist else "step"
    for n in g.nodes:  # every output of a multi-output node shares its stage
        for o in n.outputs[1:]:
            stage[o] = stage[n.outputs[0]]
    return StepPlan(cell, stage, frozenset(_materialized(cell, stage, produced_by)), frozenset(_packed(cell)))


def _packed(cell: Cell) -> set[str]:
    """Params read as the weight of a ``linear``: the layer takes them transposed (``[in, out]``)
    so the output features are the contiguous, vectorised axis of the reduction."""
    params = set(cell.param_names)
    return {n.inputs[1] for n in cell.step.nodes if n.op == "linear" and n.inputs[1] in params}


def _materialized(cell: Cell, stage: dict[str, str], produced_by: dict[str, Node]) -> set[str]:
    """Computed values that must live in a buffer (module docstring)."""
    g = cell.step
    # how often each value's elements are read by non-view consumers, seen through view chains
    # (the outputs of a split are disjoint, so they count as one read of their source)
    reads: dict[str, int] = defaultdict(int)
    by_reduction: set[str] = set()
    for n in g.nodes:
        if n.op in VIEWS:
            continue
        for i in n.inputs:
            if i:
                reads[i] += 1
                if n.op in REDUCTIONS:
                    by_reduction.add(i)
    for _, v in g.outputs:
        reads[v] += 1
    for n in reversed(g.nodes):  # fold view reads back onto their source
        if n.op in VIEWS and n.inputs[0]:
            total = max(reads[o] for o in n.outputs) if n.op == "split" else sum(reads[o] for o in n.outputs)
            reads[n.inputs[0]] += total
            if any(o in by_reduction for o in n.outputs):
                by_reduction.add(n.inputs[0])
    out: set[str] = set()
    for n in g.nodes:
        if n.op in VIEWS or n.op == "const":
            continue
        for v in n.outputs:
            crosses = stage[v] in ("prologue", "hoisted")  # read by a later stage through a buffer
            if n.op in REDUCTIONS or reads[v] > 1 or v in by_reduction or crosses:
                out.add(v)
    return out
