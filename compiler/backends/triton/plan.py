"""Split a nonlinear cell's step graph into what runs before the time loop and what runs inside it.

Why: the fused kernel should do per step only the work that depends on the recurrent state.
Every node whose inputs do not depend on a state (``linear(x, W_ih, b_ih)`` and anything built
from it) is *hoisted*: the runtime evaluates it once for all ``T * B`` rows with torch (one big
matmul), and the kernel reads the results step by step.  The remaining *loop* nodes are what the
renderer turns into Triton code.

Inside the kernel every ``[B, F]`` value is held as ``F / piece`` column tiles of width
``piece`` (the gcd of all feature widths in the loop), so ``split``/``concat`` are just list
operations on tiles and ``linear`` is a grid of tile products with resident weight tiles.  No
per-cell knowledge is involved: a user-written cell with the same ops plans the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnc.errors import UnsupportedError
from rnnc.ir.graph import Cell, Graph, Node

#: ops the loop renderer knows (``rnnc.backends.triton.render``); anything else is declined
UNARY = ("neg", "sigmoid", "tanh", "exp", "log", "softplus", "relu", "abs", "sqrt", "silu",
         "logsigmoid", "reciprocal", "cos", "sin")
BINARY = ("add", "sub", "mul", "div", "max", "min", "gt", "lt")
LOOP_OPS = frozenset((*UNARY, *BINARY, "linear", "split", "concat", "const", "cast", "clamp", "where"))
FLOAT_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LoopPlan:
    """The pre-loop / loop split of one cell.

    ``stepped``: hoisted ``[B, F]`` values read once per step (from ``[T, B, F]`` tensors);
    ``invariant``: hoisted or parameter ``[F]``/``[N, K]`` values read once before the loop;
    ``piece``: the tile width every loop value is cut into; ``widths``: feature width per value.
    """

    cell: Cell
    pre: Graph
    loop_nodes: tuple[Node, ...]
    stepped: tuple[str, ...]
    invariant: tuple[str, ...]
    piece: int
    widths: dict[str, int]
    ranks: dict[str, int]

    @property
    def gates(self) -> int:
        """Recurrent weight rows per hidden unit (what the solver's fused problem calls gates)."""
        types = self.cell.step.value_types()
        rows = sum(int(types[n].shape[0]) for n in self.recurrent_weights())
        return max(1, rows // self.cell.hidden_size)

    def recurrent_weights(self) -> tuple[str, ...]:
        """Params multiplied with a state inside the loop (they stay resident in the kernel)."""
        return tuple(n.inputs[1] for n in self.loop_nodes if n.op == "linear")


def _fail(cell: Cell, what: str) -> UnsupportedError:
    return UnsupportedError(f"the Triton backend cannot render cell {cell.kind!r}: {what}")


def plan_cell(cell: Cell) -> LoopPlan:
    """The :class:`LoopPlan` of ``cell``; raises :class:`UnsupportedError` naming what blocks it."""
    if cell.recurrence != "nonlinear":
        raise _fail(cell, f"its recurrence is {cell.recurrence}; the chunked scan for linear cells is "
                          "not implemented in the Triton backend yet (use --backend tvm or onnx)")
    step = cell.step
    types = step.value_types()
    x_name = step.input_names[0]
    states = set(step.input_names[1:])
    params = set(step.param_names)
    for s in cell.states:
        if len(s.shape) != 1 or s.dtype not in FLOAT_DTYPES:
            raise _fail(cell, f"state {s.name} is {s.dtype}{list(s.shape)}; only float vector states are rendered")
    dep: set[str] = set(states)  # values that depend on a state
    pre_nodes: list[Node] = []
    loop_nodes: list[Node] = []
    for node in step.nodes:
        if node.op != "const" and not any(i in dep for i in node.inputs if i):
            pre_nodes.append(node)
            continue
        if node.op not in LOOP_OPS:
            raise _fail(cell, f"op {node.op!r} ({node.label}) depends on the recurrent state and has no Triton "
                              "rendering")
        loop_nodes.append(node)
        dep.update(node.outputs)
    pre_out = {n for node in pre_nodes for n in node.outputs} | {x_name}
    loop_reads = [i for node in loop_nodes for i in node.inputs if i] + [v for _, v in step.outputs]
    stepped, invariant = [], []
    for name in dict.fromkeys(loop_reads):
        if name in pre_out:
            (stepped if _batched(types[name].shape) else invariant).append(name)
        elif name in params:
            invariant.append(name)
    widths: dict[str, int] = {}
    ranks: dict[str, int] = {}
    for name in (*states, *stepped, *invariant, *(o for node in loop_nodes for o in node.outputs)):
        shape = types[name].shape
        if types[name].dtype not in (*FLOAT_DTYPES, "bool"):
            raise _fail(cell, f"value {name} is {types[name].dtype}; the loop computes in float")
        ranks[name] = len(shape)
        batched = _batched(shape)
        if len(shape) > 2 or (batched and len(shape) != 2) or any(not isinstance(d, int) for d in shape[batched:]):
            raise _fail(cell, f"value {name} has shape {list(shape)}; the loop handles [B, F], [F], [N, K] and scalars")
        if shape:
            widths[name] = int(shape[-1])
    for node in loop_nodes:
        _check_node(cell, node, types, params, set(invariant))
    piece = 0
    for name, w in widths.items():
        if ranks[name] == 2 and name in params:  # a weight: both dims are tiled
            piece = math.gcd(piece, int(types[name].shape[0]))
        piece = math.gcd(piece, w)
    pre = Graph(f"{step.name}_pre", step.inputs[:1], step.params, tuple(pre_nodes),
                tuple((n, n) for n in (*stepped, *[v for v in invariant if v in pre_out])))
    return LoopPlan(cell, pre, tuple(loop_nodes), tuple(stepped), tuple(invariant), max(piece, 1), widths, ranks)


def _batched(shape: tuple) -> bool:
    return bool(shape) and not isinstance(shape[0], int)


def _check_node(cell: Cell, node: Node, types: dict, params: set[str], invariant: set[str]) -> None:
    """Reject loop nodes whose shapes the tile model cannot express, with the reason."""
    a = node.attr_dict
    if node.op == "linear":
        if node.inputs[1] not in params:
            raise _fail(cell, f"{node.label}: the recurrent weight must be a cell parameter")
        if types[node.inputs[0]].rank != 2:
            raise _fail(cell, f"{node.label}: the recurrent input must be [B, K]")
    elif node.op in ("split", "concat") and a.get("axis") not in (-1, 1):
        raise _fail(cell, f"{node.label}: only splits/concats along the feature axis are rendered")
    elif node.op == "cast" and a["dtype"] not in FLOAT_DTYPES:
        raise _fail(cell, f"{node.label}: cast to {a['dtype']} (the loop computes in float32)")
    elif node.op in (*BINARY, "where"):
        widths = {types[i].shape[-1] for i in node.inputs if i and types[i].rank}
        if len(widths) > 1:
            raise _fail(cell, f"{node.label}: broadcasting between feature widths {sorted(widths)}")
    for i in node.inputs:
        if i in params and i not in invariant and node.op != "linear":
            raise _fail(cell, f"{node.label}: parameter {i} used outside a linear")
