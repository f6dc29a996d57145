"""The immutable IR: nodes, graphs, recurrent cells and programs.

A ``Graph`` is a flat SSA list of ``Node``s over named values.  Recurrent layers are ``rnn``
nodes whose attributes carry ``Cell``s: each cell's step function ``(x_t, state) -> (y_t,
state')`` is itself a ``Graph`` in the same ops, so every backend renders the cell it is given
(user-written cells included) instead of a hand-written kernel per cell name.  Everything is a
frozen dataclass; rewriting passes build new objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from rnnc.ir.types import TensorType

AttrValue = Any  # int | float | str | bool | None | tuple[AttrValue, ...] | Cell
Recurrence = Literal["nonlinear", "linear"]


def freeze_attr(value: Any) -> AttrValue:
    """Turn lists into tuples (recursively) so attributes are hashable and immutable."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze_attr(v) for v in value)
    if isinstance(value, (int, float, str, bool, type(None), Cell)):
        return value
    raise TypeError(f"attribute value {value!r} of type {type(value).__name__} is not allowed in the IR")


def freeze_attrs(attrs: Mapping[str, Any] | None) -> tuple[tuple[str, AttrValue], ...]:
    return tuple(sorted((k, freeze_attr(v)) for k, v in (attrs or {}).items()))


@dataclass(frozen=True)
class Node:
    """One op application: ``outputs = op(inputs) {attrs}``; ``""`` marks an omitted input."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    types: tuple[TensorType, ...]
    attrs: tuple[tuple[str, AttrValue], ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def attr_dict(self) -> dict[str, AttrValue]:
        return dict(self.attrs)

    @property
    def label(self) -> str:
        """How error messages name this node: ``%out (op)``."""
        return f"%{self.outputs[0] if self.outputs else '?'} ({self.op})"


@dataclass(frozen=True)
class Graph:
    """A dataflow graph: typed inputs, typed params (weights), nodes in order, named outputs."""

    name: str
    inputs: tuple[tuple[str, TensorType], ...]
    params: tuple[tuple[str, TensorType], ...]
    nodes: tuple[Node, ...]
    outputs: tuple[tuple[str, str], ...]  # (output name, value name)

    def value_types(self) -> dict[str, TensorType]:
        """Type of every value defined in the graph (inputs, params and node outputs)."""
        types = dict(self.inputs)
        types.update(self.params)
        for n in self.nodes:
            types.update(zip(n.outputs, n.types, strict=True))
        return types

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.inputs)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.params)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.outputs)

    def walk(self) -> Iterator[tuple[Graph, Node]]:
        """Every node of this graph and, recursively, of the cells its nodes carry."""
        for n in self.nodes:
            yield self, n
            for cell in cells_of(n):
                yield from cell.step.walk()


def cells_of(node: Node) -> tuple[Cell, ...]:
    """The cells carried in a node's attributes (``rnn`` nodes carry one per layer)."""
    found: list[Cell] = []

    def visit(v: AttrValue) -> None:
        if isinstance(v, Cell):
            found.append(v)
        elif isinstance(v, tuple):
            for x in v:
                visit(x)

    for _, v in node.attrs:
        visit(v)
    return tuple(found)


@dataclass(frozen=True)
class StateSpec:
    """One recurrent state tensor: its name and per-sample shape (the batch dim is implicit)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class Cell:
    """A recurrent cell: the step function as a Graph plus what backends need to know.

    ``step`` has inputs ``x`` (``[B, input_size]``) followed by one input per state
    (``[B, *state.shape]``), params for its weights, and outputs ``y`` then one per state with
    the same names.  ``recurrence`` tells backends whether the state update is linear in the
    state (``linear``: minGRU, minLSTM, LRU, Mamba S6, mLSTM -> parallel scan is legal) or not
    (``nonlinear``: LSTM, GRU, Elman, sLSTM -> sequential time loop).
    ``output_size`` is a symbol only for a rolled Python loop whose per-step output is as wide
    as one of its pass-through states (``frontend/scan.py``, ``rnn.output_width``); state
    shapes likewise may hold symbols there.  Kernel backends take cells of fixed sizes only.
    """

    kind: str
    recurrence: Recurrence
    input_size: int
    hidden_size: int
    output_size: int | str
    states: tuple[StateSpec, ...]
    step: Graph
    attrs: tuple[tuple[str, AttrValue], ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.step.param_names


class Weights(Mapping[str, Any]):
    """A read-only name -> tensor mapping.  Tensors are never mutated by rnnc."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = MappingProxyType(dict(data or {}))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Weights({len(self)} tensors)"


@dataclass(frozen=True)
class Program:
    """A whole model: the top-level graph and the weights its params name.

    Equality and the structural hash cover the graph only, never the weight values, because the
    hash keys tuning records: two models with the same structure share their tuned kernels.
    """

    graph: Graph
    weights: Weights = field(default_factory=Weights, compare=False, repr=False)
    source: str = field(default="", compare=False)
    #: the user's source line (``model.py:42``) of top-level values the frontend made, so that a
    #: backend refusing an op can say where the model wrote it; not part of the structure
    lines: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False, hash=False)

    # The methods below live in sibling modules; they are attached lazily to keep this file small.
    def verify(self) -> Program:
        """Check every invariant; raise ``IRVerificationError`` naming the node. Returns self."""
        from rnnc.ir.verify import verify_program

        verify_program(self)
        return self

    def text(self) -> str:
        """The textual form (parse it back with :meth:`parse`)."""
        from rnnc.ir.printer import print_program

        return print_program(self)

    def __str__(self) -> str:
        return self.text()

    @staticmethod
    def parse(text: str, weights: Mapping[str, Any] | None = None) -> Program:
        """Parse :meth:`text` output; ``weights`` supplies the tensors the params name."""
        from rnnc.ir.parser import parse_program

        return parse_program(text, weights)

    def hash(self) -> str:
        """Structural hash (hex sha256 of the canonical text), stable across processes."""
        from rnnc.ir.printer import structural_hash

        return structural_hash(self)

    def run(self, *inputs: Any) -> Any:
        """Execute with torch ops on the CPU (the reference interpreter)."""
        from rnnc.ir.interp import run_program

        return run_program(self, *inputs)

    def rnn_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.graph.nodes if n.op == "rnn")

    def summary(self) -> str:
        """A short human summary: inputs, op counts, recurrent layers."""
        from rnnc.ir.printer import summarize

        return summarize(self)
