"""Split a nonlinear cell's step graph into what runs before the time loop and what runs inside it.

Why: the fused kernel should do per step only the work that depends on the recurrent state.
Every node whose inputs do not depend on a state (``linear(x, W_ih, b_ih)`` and anything built
from it) is *hoisted*: the runtime evaluates it once for all ``T * B`` rows with torch (one big
matmul), and the kernel reads the results step by step.  The remaining *loop* nodes are what the
renderer turns into Triton code.

Head-wise (block-diagonal) recurrent weights -- sLSTM's ``reshape(h) -> matmul(., R[G, NH, DH,
DH']) -> reshape`` -- are rewritten into one ``linear`` with a *derived* block-diagonal weight
(built from ``R`` at launch time, :func:`derive_param`); the tile width divides the head size,
so the renderer skips the all-zero off-diagonal tiles and the kernel does the head-wise work
only.  When nothing in the loop mixes heads (:func:`_head_parallel`) the grid gets one program
per head, each computing head 0's tiles shifted by ``pid_h * DH`` -- the solver's
single-block-per-head schedule.

Inside the kernel every ``[B, F]`` value is held as ``F / piece`` column tiles of width
``piece`` (the gcd of all feature widths in the loop), so ``split``/``concat`` are just list
operations on tiles and ``linear`` is a grid of tile products with resident weight tiles.  No
per-cell knowledge is involved: a user-written cell with the same ops plans the same way.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from rnnc.backends.triton.scalar import BINARY as _BINARY_TABLE
from rnnc.backends.triton.scalar import UNARY as _UNARY_TABLE
from rnnc.errors import UnsupportedError
from rnnc.ir.graph import Cell, Graph, Node
from rnnc.passes import plan_layer
from rnnc.passes.plan import STATE

#: ops the loop renderer knows: the keys of its table (``scalar.py``); anything else is declined
UNARY = tuple(_UNARY_TABLE)
BINARY = tuple(_BINARY_TABLE)
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
    #: derived weight -> (source param, heads): block-diagonal [G*NH*DH', NH*DH] from R [G, NH, DH, DH']
    derived: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    #: head-parallel grid: ``heads`` programs per batch tile, each owning ``head_dim`` units of
    #: every ``[.., NH, DH]`` feature group (1 / 0: one program owns all features)
    heads: int = 1
    head_dim: int = 0
    #: multi-block grid (:func:`split_hidden`): ``blocks`` programs per batch tile, each owning
    #: ``block_units`` units of every hidden-size-wide feature group; ``exchange``: the states a
    #: recurrent ``linear`` reads whole, so they go through global memory after every step
    blocks: int = 1
    block_units: int = 0
    exchange: tuple[str, ...] = ()
    #: storage dtype of a model cast to fp16/bf16 (its step graph stays fp32): what the kernel's
    #: pointers hold and what decides ``tl.dot``; "" = the step graph's input dtype
    storage: str = ""

    @property
    def store_dtype(self) -> str:
        return self.storage or self.cell.step.inputs[0][1].dtype

    @property
    def split(self) -> tuple[int, int]:
        """(programs along grid axis 1, units each owns per feature group): heads or hidden blocks."""
        return (self.blocks, self.block_units) if self.blocks > 1 else (self.heads, self.head_dim)

    def active(self, name: str, k: int) -> bool:
        """Whether tile ``k`` of value ``name`` is computed by a program (program 0's tiles, shifted
        by ``program_id(1) * units`` at run time); every tile on a one-program-per-batch-tile grid."""
        parts, units = self.split
        if parts == 1 or self.ranks.get(name, 1) == 0:
            return True
        return ((k * self.piece) % (parts * units)) // units == 0

    def zero_tile(self, weight: str, j: int, k: int) -> bool:
        """Whether weight tile (row tile j, column tile k) is structurally zero (off its head's block)."""
        if weight not in self.derived:
            return False
        shape = self.cell.step.value_types()[self.derived[weight][0]].shape
        heads, dh_in, dh_out = int(shape[1]), int(shape[2]), int(shape[3])
        p = self.piece
        return ((j * p) % (heads * dh_out)) // dh_out != (k * p) // dh_in

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
        raise _fail(cell, f"its recurrence is {cell.recurrence}; linear cells are planned as a chunked scan "
                          "(rnnc.ir.scanform)")
    derived: dict[str, tuple[str, int]] = {}
    cell = _headwise(cell, derived)
    step = cell.step
    types = step.value_types()
    x_name = step.input_names[0]
    states = set(step.input_names[1:])
    params = set(step.param_names)
    for s in cell.states:
        if len(s.shape) != 1 or s.dtype not in FLOAT_DTYPES:
            raise _fail(cell, f"state {s.name} is {s.dtype}{list(s.shape)}; only float vector states are rendered")
    depends = plan_layer(cell).depends  # the layer plan's classes: only state values need the loop
    pre_nodes: list[Node] = []
    loop_nodes: list[Node] = []
    for node in step.nodes:
        if node.op != "const" and depends[node.outputs[0]] != STATE:
            pre_nodes.append(node)
            continue
        if node.op not in LOOP_OPS:
            raise _fail(cell, f"op {node.op!r} ({node.label}) depends on the recurrent state and has no Triton "
                              "rendering")
        loop_nodes.append(node)
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
    for src, _ in derived.values():  # tiles never straddle two heads
        shape = types[src].shape
        piece = math.gcd(math.gcd(piece, int(shape[2])), int(shape[3]))
    pre = Graph(f"{step.name}_pre", step.inputs[:1], step.params, tuple(pre_nodes),
                tuple((n, n) for n in (*stepped, *[v for v in invariant if v in pre_out])))
    heads, head_dim = _head_parallel(cell, tuple(loop_nodes), widths, derived)
    return LoopPlan(cell, pre, tuple(loop_nodes), tuple(stepped), tuple(invariant), max(piece, 1), widths, ranks,
                    derived, heads, head_dim)


def _head_parallel(cell: Cell, loop_nodes: tuple[Node, ...], widths: dict[str, int],
                   derived: dict[str, tuple[str, int]]) -> tuple[int, int]:
    """(heads, head size) when the loop never mixes heads -- every recurrent product is a
    block-diagonal derived weight with square ``DH x DH`` blocks, every feature width and split
    is a multiple of ``NH * DH`` -- so one program per head suffices (what the solver's
    single-block-per-head schedule assumes); ``(1, 0)`` otherwise."""
    types = cell.step.value_types()
    blocks = {tuple(int(d) for d in types[src].shape[1:]) for src, _ in derived.values()}
    if len(blocks) != 1:
        return 1, 0
    (heads, dh_in, dh_out), = blocks
    width = heads * dh_in
    if heads == 1 or dh_in != dh_out or any(w % width for w in widths.values()):
        return 1, 0
    for node in loop_nodes:
        if node.op == "linear" and node.inputs[1] not in derived:
            return 1, 0
        if node.op == "split" and any(int(size) % width for size in node.attr("sizes")):
            return 1, 0
    return heads, dh_in


def split_hidden(plan: LoopPlan, hidden_tile: int) -> LoopPlan:
    """``plan`` on a multi-block grid: ``hidden / hidden_tile`` programs per batch tile, program
    ``n`` owning units ``[n * hidden_tile, (n + 1) * hidden_tile)`` of every hidden-size-wide
    feature group (so all gate rows of its units, and the gate math stays local).

    Why these conditions: a program computes only its rows of each recurrent product but needs
    the *whole* previous state as the product's input, so that input must be a state (written to
    global memory once per step and read back whole after a grid-wide barrier); every loop value
    must be made of whole hidden-size groups so each program's share is a fixed column set.
    Raises :class:`UnsupportedError` with the reason otherwise."""
    cell = plan.cell
    hidden = cell.hidden_size
    if hidden_tile <= 0 or hidden % hidden_tile or hidden_tile == hidden:
        raise _fail(cell, f"hidden tile {hidden_tile} does not split hidden size {hidden} into several blocks")
    if plan.heads > 1:
        raise _fail(cell, "a head-parallel cell is split per head already; more than one block per head is not "
                          "rendered")
    states = set(cell.step.input_names[1:])
    exchange: list[str] = []
    for node in plan.loop_nodes:
        if node.op == "linear":
            if node.inputs[0] not in states:
                raise _fail(cell, f"{node.label}: a multi-block kernel needs the recurrent product's input to be "
                                  f"a state (it is {node.inputs[0]!r})")
            exchange.append(node.inputs[0])
        if node.op == "split" and any(int(size) % hidden for size in node.attr("sizes")):
            raise _fail(cell, f"{node.label}: splits into widths that are not multiples of the hidden size")
    odd = sorted(n for n, w in plan.widths.items() if w % hidden)
    if odd:
        raise _fail(cell, f"values {odd[:4]} are not whole multiples of the hidden size {hidden}")
    return dataclasses.replace(plan, piece=math.gcd(plan.piece, hidden_tile), blocks=hidden // hidden_tile,
                               block_units=hidden_tile, exchange=tuple(dict.fromkeys(exchange)))


def _headwise(cell: Cell, derived: dict[str, tuple[str, int]]) -> Cell:
    """Rewrite ``reshape(v, (0, 1, NH, 1, DH)) -> matmul(., R) -> reshape(., (0, N))`` with a
    parameter ``R [G, NH, DH, DH']`` into ``linear(v, R@blockdiag)`` (recorded in ``derived``)."""
    step = cell.step
    types = step.value_types()
    params = set(step.param_names)
    users: dict[str, list[Node]] = {}
    for node in step.nodes:
        for i in node.inputs:
            users.setdefault(i, []).append(node)
    replace: dict[int, Node | None] = {}
    new_params = list(step.params)
    for k, node in enumerate(step.nodes):
        if node.op != "matmul" or node.inputs[1] not in params or types[node.inputs[1]].rank != 4:
            continue
        first = next((n for n in step.nodes if node.inputs[0] in n.outputs), None)
        after = users.get(node.outputs[0], [])
        r_shape = types[node.inputs[1]].shape
        g, heads, dh_in, dh_out = (int(d) for d in r_shape)
        if (first is None or first.op != "reshape" or len(users.get(first.outputs[0], [])) != 1
                or tuple(first.attr("shape")) != (0, 1, heads, 1, dh_in) or types[first.inputs[0]].rank != 2
                or len(after) != 1 or after[0].op != "reshape"
                or tuple(after[0].attr("shape")) != (0, g * heads * dh_out)):
            continue
        name = f"{node.inputs[1]}@blockdiag"
        derived[name] = (node.inputs[1], heads)
        w_type = types[node.inputs[1]].with_shape((g * heads * dh_out, heads * dh_in))
        new_params.append((name, w_type))
        replace[step.nodes.index(first)] = None
        replace[k] = None
        last = after[0]
        replace[step.nodes.index(last)] = Node("linear", (first.inputs[0], name, ""), last.outputs, last.types)
    if not replace:
        return cell
    nodes = tuple(replace.get(k, n) for k, n in enumerate(step.nodes))
    new_step = Graph(step.name, step.inputs, tuple(new_params), tuple(n for n in nodes if n is not None),
                     step.outputs)
    return dataclasses.replace(cell, step=new_step)


def derive_param(plan: LoopPlan, name: str, params: dict[str, Any]) -> Any:
    """The dense block-diagonal ``[G*NH*DH', NH*DH]`` weight of a head-wise ``R [G, NH, DH, DH']``."""
    import torch

    src, heads = plan.derived[name]
    r = params[src]
    return torch.cat([torch.block_diag(*[r[g, hd].transpose(0, 1) for hd in range(heads)])
                      for g in range(r.shape[0])], dim=0)


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
