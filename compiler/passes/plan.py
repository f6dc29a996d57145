"""One :class:`LayerPlan` per recurrent layer, built by an ordered list of analysis passes.

Each pass reads the cell and the facts earlier passes found and adds its own; the plan is the
frozen result.  The facts, and which backend decision rests on each:

* ``depends`` (pass :func:`dependencies`): every step value is ``weights`` (computable from
  parameters alone: once per call), ``input`` (from ``x`` and parameters, not the state: for all
  time steps at once, before the loop) or ``state`` (inside the serial time loop).  The C
  generic path, the TVM stages, the Triton pre-loop graph and the ONNX Scan split all start
  from these three classes.
* ``row_wise`` (pass :func:`row_parallel`): nodes that never mix axis 0 of their input-derived
  operands, so evaluating them on ``[T*B, ...]`` rows computes every step at once exactly.
  :meth:`LayerPlan.hoistable` is the closure of that under "all producers hoistable".
* ``gate_plan``/``gates`` (pass :func:`gate_structure`): the fused GEMM structure (linears of
  ``x`` or the state with ``G*H`` outputs, gate-wise math) and ``G``.
* ``heads``, ``family``, ``scan`` (pass :func:`recurrence_form`): how the solver sees the layer.
* ``chunk``/``chunk_reason`` (pass :func:`chunk_structure`): the verified chunkwise form of a
  matrix-state cell (``rnnc.lower.chunkwise`` runs it), or why there is none.

:meth:`LayerPlan.problem` is the only Cell -> ``ProblemSpec`` adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from rnnc.ir.graph import Cell, Node
from rnnc.ir.types import TensorType

WEIGHTS, INPUT, STATE = "weights", "input", "state"
#: torch dtype name -> the solver's dtype name (anything else is solved as fp32)
SOLVER_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}


@dataclass(frozen=True)
class LayerPlan:
    """The analysis of one cell (module docstring); built by :func:`plan_layer`, never by hand."""

    cell: Cell
    depends: MappingProxyType  # value name -> WEIGHTS | INPUT | STATE
    row_wise: frozenset[int]  # indices into cell.step.nodes
    per_step_quant: frozenset[int]  # dynamically quantized projections (one scale per step's rows)
    gate_plan: Any  # rnnc.lower.gates.GatePlan | None
    gates: int
    heads: int
    family: str  # "fused" (nonlinear) | "scan" (linear in the state) | "chunk" (matrix-state chunk form)
    scan: str  # the solver's scan kind for known scan cells ("diag", "selective", "matrix"), else ""
    known: bool  # the solver's cell table has this kind
    chunk: Any  # rnnc.passes.chunk.ChunkForm | None: the verified chunkwise form
    chunk_reason: str  # why there is none ("" when there is)

    # -- node classes ------------------------------------------------------------------------
    def stage(self, node: Node) -> str:
        """The class of ``node`` (that of its first output)."""
        return self.depends[node.outputs[0]]

    def values_of(self, *classes: str) -> frozenset[str]:
        """Values (graph inputs included) whose class is one of ``classes``."""
        return frozenset(v for v, c in self.depends.items() if c in classes)

    def hoistable(self, per_step_quant: bool = True) -> tuple[Node, ...]:
        """Input-class nodes that may run on all ``T*B`` rows at once: row-wise themselves and fed
        only by hoistable values, ``x`` and parameters.  ``per_step_quant=False`` keeps the
        dynamically quantized projections (and what they feed) in the loop."""
        step = self.cell.step
        derived = {step.input_names[0]}
        free = set(step.param_names)
        out: list[Node] = []
        for k, node in enumerate(step.nodes):
            ins = [i for i in node.inputs if i]
            if node.op == "const":
                free.update(node.outputs)
                continue
            if (k in self.row_wise and (per_step_quant or k not in self.per_step_quant)
                    and all(i in derived or i in free for i in ins) and any(i in derived for i in ins)):
                derived.update(node.outputs)
                out.append(node)
        return tuple(out)

    # -- the solver's view -------------------------------------------------------------------
    def problem(self, batch: int = 1, dtype: str | None = None, seq_len: int | None = None, **calibration: Any) -> Any:
        """The solver's ``ProblemSpec`` of this layer.

        Sized by the state's channels: the hidden size (LRU's N complex states, an LSTM's H),
        except for selective scans, whose state is ``[D, N]``: D channels (``output_size``),
        each with ``state_size`` N.  ``dtype``: a torch dtype
        name (default: the cell's); ``calibration``: ProblemSpec's kernel-calibration fields
        (``register_overhead``, ``min_warps``, ``shared_weights``, ``grid_sync``)."""
        from rnnc.constraints import ProblemSpec

        cell = self.cell
        dtype = dtype or cell.step.inputs[0][1].dtype
        extra: dict[str, Any] = dict(calibration)
        if seq_len is not None:
            extra["seq_len"] = int(seq_len)
        if not self.known:
            extra["family"] = self.family
            if self.family == "fused":
                extra["gates"] = self.gates
        hidden = cell.hidden_size  # the state's channels (LRU's N, an LSTM's H)
        if self.family == "chunk":  # a [DK, DV] matrix per head: DK is the spec's state_size
            from rnnc.lower.chunkwise import kernel_shape

            extra["state_size"] = kernel_shape(cell, self.chunk).dk if self.chunk is not None \
                else int(cell.states[0].shape[1])
        if self.scan == "selective" and cell.states and len(cell.states[0].shape) > 1:
            hidden = cell.output_size  # Mamba: D channels, each with N states
            extra["state_size"] = int(cell.states[0].shape[-1])
        heads = self.heads if hidden % self.heads == 0 else 1
        return ProblemSpec(cell.kind if self.known else "custom", hidden=hidden, heads=heads, batch=int(batch),
                           dtype=SOLVER_DTYPES.get(dtype, "fp32"), input_size=cell.input_size, **extra)


# -- the passes ----------------------------------------------------------------------------
Facts = dict[str, Any]
Pass = Callable[[Cell, Facts], None]


def dependencies(cell: Cell, facts: Facts) -> None:
    """``depends``: WEIGHTS / INPUT / STATE for every value (the state wins over the input)."""
    step = cell.step
    dep: dict[str, str] = {v: WEIGHTS for v in step.param_names}
    dep[step.input_names[0]] = INPUT
    for s in step.input_names[1:]:
        dep[s] = STATE
    rank = {WEIGHTS: 0, INPUT: 1, STATE: 2}
    for node in step.nodes:
        cls = max((dep.get(i, WEIGHTS) for i in node.inputs if i), key=rank.__getitem__, default=WEIGHTS)
        for o in node.outputs:
            dep[o] = cls
    facts["depends"] = dep


def row_parallel(cell: Cell, facts: Facts) -> None:
    """``row_wise``: nodes that treat axis 0 of their input-derived operands as independent rows;
    ``per_step_quant``: dynamically quantized projections (row-wise only with one scale per step,
    which the ONNX renderer provides, see ``rnnc.backends.onnx.hoist``)."""
    step = cell.step
    types = step.value_types()
    dep = facts["depends"]
    rows = {v for v, c in dep.items() if c != WEIGHTS}
    facts["row_wise"] = frozenset(k for k, n in enumerate(step.nodes) if _keeps_rows(n, types, rows))
    facts["per_step_quant"] = frozenset(k for k, n in enumerate(step.nodes)
                                        if n.op == "qlinear" and n.attr("act") == "dynamic")


def gate_structure(cell: Cell, facts: Facts) -> None:
    """``gate_plan``: the fused GEMM structure (``rnnc.lower.gates.analyse_gates``) or None;
    ``gates``: recurrent weight rows per hidden unit (from the gate plan, else from the linears
    that read a state)."""
    from rnnc.lower.gates import analyse_gates

    plan = analyse_gates(cell)
    facts["gate_plan"] = plan
    if plan is not None:
        facts["gates"] = plan.gates
        return
    types = cell.step.value_types()
    states = set(cell.step.input_names[1:])
    rows = sum(int(types[n.inputs[1]].shape[0]) for n in cell.step.nodes
               if n.op == "linear" and n.inputs[0] in states and n.inputs[1] in types)
    facts["gates"] = max(1, rows // max(cell.hidden_size, 1))


def recurrence_form(cell: Cell, facts: Facts) -> None:
    """``family``/``scan``/``known``/``heads``: how the solver's cell table sees this layer."""
    from rnnc.constraints import CELLS

    info = CELLS.get(cell.kind)
    facts["known"] = info is not None
    unknown = "chunk" if facts["chunk"] is not None else "scan" if cell.recurrence == "linear" else "fused"
    facts["family"] = info.family if info is not None else unknown
    facts["scan"] = info.scan if info is not None else ""
    facts["heads"] = int(cell.attr("num_heads", cell.attr("heads", 1)) or 1)


def chunk_structure(cell: Cell, facts: Facts) -> None:
    """``chunk``/``chunk_reason``: the matrix-state family's chunkwise form, checked
    (``rnnc.passes.chunk``)."""
    from rnnc.passes.chunk import find_chunk_form

    facts["chunk"], facts["chunk_reason"] = find_chunk_form(cell, facts["depends"], facts["row_wise"])


#: the analysis passes, in order (each may read what earlier ones found)
PASSES: tuple[Pass, ...] = (dependencies, row_parallel, gate_structure, chunk_structure, recurrence_form)
_CACHE: dict[int, tuple[Cell, LayerPlan]] = {}


def plan_layer(cell: Cell) -> LayerPlan:
    """The :class:`LayerPlan` of ``cell`` (computed once per cell object)."""
    hit = _CACHE.get(id(cell))
    if hit is not None and hit[0] is cell:
        return hit[1]
    facts: Facts = {}
    for p in PASSES:
        p(cell, facts)
    facts["depends"] = MappingProxyType(facts["depends"])
    plan = LayerPlan(cell, **facts)  # every LayerPlan field but the cell is one pass's fact
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[id(cell)] = (cell, plan)
    return plan


def _norm(axis: int, rank: int) -> int:
    return axis % rank if rank else 0


def _keeps_rows(node: Node, types: dict[str, TensorType], rows: set[str]) -> bool:
    """Whether ``node`` treats axis 0 as an independent row axis of its row-carrying inputs."""
    from rnnc.ir.ops import OPS

    ins = [i for i in node.inputs if i]
    x_in = [i for i in ins if i in rows]
    rank = types[x_in[0]].rank if x_in else 0
    a = node.attr_dict
    if OPS[node.op].elementwise or node.op == "cast":
        out_rank = node.types[0].rank
        others_ok = all(types[i].rank < out_rank or types[i].rank == 0 or types[i].shape[0] == 1  # (scalars)
                        for i in ins if i not in rows)
        return all(types[i].rank == out_rank for i in x_in) and others_ok
    if node.op in ("linear", "qlinear"):
        return node.inputs[0] in rows and not any(i in rows for i in ins[1:])
    if node.op in ("split", "concat", "slice", "softmax", "select", "flip", "squeeze"):
        return _norm(a["axis"], rank) != 0
    if node.op == "unsqueeze":
        return _norm(a["axis"], rank + 1) != 0
    if node.op in ("sum", "mean", "amax"):
        axes = (a["axes"],) if isinstance(a["axes"], int) else a["axes"]
        return all(_norm(x, rank) != 0 for x in axes)
    if node.op == "transpose":
        return a["perm"][0] == 0
    if node.op == "reshape":
        return a["shape"][0] == 0  # copies the row dim; -1 elsewhere is per row
    return False
