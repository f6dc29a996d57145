"""``GraphBuilder``: the one way to construct IR graphs (frontend, cell builders, passes).

Shape inference runs as each node is added, so a malformed graph fails at the line that built it,
with the op and the types in the message.  ``Value`` overloads arithmetic so cell builders read
like their equations: ``c2 = b.sigmoid(f) * c + b.sigmoid(i) * b.tanh(g)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rnnc.errors import IRVerificationError
from rnnc.ir.graph import Graph, Node, freeze_attrs
from rnnc.ir.ops import OPS, ShapeError
from rnnc.ir.types import Dim, TensorType


def retyped(graph: Graph) -> Graph:
    """``graph`` with every node's types inferred again from its inputs.  Why: a rewrite that
    replaces a value by one of a more symbolic type (a rolled loop's collected outputs, ``[B, T,
    H]`` where the trace had ``[B, 9, H]``) leaves the nodes that read it typed at the traced size.
    A node whose types cannot be inferred again, or come back another dtype or rank, keeps its own."""
    types = {k: t for k, t in (*graph.inputs, *graph.params)}
    out = []
    for nd in graph.nodes:
        try:
            new = OPS[nd.op].infer([types[v] if v else None for v in nd.inputs], dict(nd.attrs))
        except Exception:  # noqa: BLE001 -- (e.g. an attribute that holds the traced size)
            new = nd.types
        if len(new) != len(nd.types) or any(a.dtype != b.dtype or a.rank != b.rank
                                            for a, b in zip(new, nd.types, strict=True)):
            new = nd.types
        types.update(zip(nd.outputs, new, strict=True))
        out.append(nd if tuple(new) == nd.types else Node(nd.op, nd.inputs, nd.outputs, tuple(new), nd.attrs))
    return Graph(graph.name, graph.inputs, graph.params, tuple(out), graph.outputs)


class Value:
    """A handle on one SSA value while a graph is being built."""

    __slots__ = ("builder", "name", "type")

    def __init__(self, builder: GraphBuilder, name: str, type_: TensorType) -> None:
        self.builder, self.name, self.type = builder, name, type_

    @property
    def shape(self) -> tuple[Dim, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def _bin(self, op: str, other: Any, swap: bool = False) -> Value:
        o = other if isinstance(other, Value) else self.builder.const(other, self.dtype)
        return self.builder.op(op, o, self) if swap else self.builder.op(op, self, o)

    def __add__(self, o: Any) -> Value:
        return self._bin("add", o)

    def __radd__(self, o: Any) -> Value:
        return self._bin("add", o, True)

    def __sub__(self, o: Any) -> Value:
        return self._bin("sub", o)

    def __rsub__(self, o: Any) -> Value:
        return self._bin("sub", o, True)

    def __mul__(self, o: Any) -> Value:
        return self._bin("mul", o)

    def __rmul__(self, o: Any) -> Value:
        return self._bin("mul", o, True)

    def __truediv__(self, o: Any) -> Value:
        return self._bin("div", o)

    def __rtruediv__(self, o: Any) -> Value:
        return self._bin("div", o, True)

    def __neg__(self) -> Value:
        return self.builder.op("neg", self)

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type.text()}"


class GraphBuilder:
    """Accumulates inputs, params and nodes, then freezes them into a ``Graph``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._inputs: list[tuple[str, TensorType]] = []
        self._params: list[tuple[str, TensorType]] = []
        self._nodes: list[Node] = []
        self._names: set[str] = set()
        self._counter = 0

    def _fresh(self, hint: str | None) -> str:
        if hint and hint not in self._names:
            self._names.add(hint)
            return hint
        base = hint or "t"
        while True:
            name = f"{base}{self._counter}"
            self._counter += 1
            if name not in self._names:
                self._names.add(name)
                return name

    def input(self, name: str, shape: Sequence[Dim], dtype: str = "float32") -> Value:
        if name in self._names:
            raise IRVerificationError(f"graph {self.name}: value name %{name} used twice")
        self._names.add(name)
        t = TensorType(tuple(shape), dtype)
        self._inputs.append((name, t))
        return Value(self, name, t)

    def param(self, name: str, shape: Sequence[Dim], dtype: str = "float32") -> Value:
        if name in self._names:
            raise IRVerificationError(f"graph {self.name}: value name %{name} used twice")
        self._names.add(name)
        t = TensorType(tuple(shape), dtype)
        self._params.append((name, t))
        return Value(self, name, t)

    def op(self, op: str, *inputs: Value | None, names: Sequence[str] | None = None,
           **attrs: Any) -> Any:
        """Add ``op(inputs) {attrs}``; returns a Value, or a tuple when the op has several outputs."""
        if op not in OPS:
            raise IRVerificationError(f"graph {self.name}: unknown op {op!r}")
        d = OPS[op]
        frozen = freeze_attrs(attrs)
        missing = [a for a in d.required_attrs if a not in attrs]
        if missing:
            raise IRVerificationError(f"graph {self.name}: op {op} is missing attributes {missing}")
        types = [v.type if v is not None else None for v in inputs]
        try:
            out_types = d.infer(types, dict(frozen))
        except ShapeError as exc:
            shown = ", ".join(t.text() if t else "_" for t in types)
            raise IRVerificationError(f"graph {self.name}: {op}({shown}): {exc}") from None
        outs = tuple(self._fresh(names[i] if names and i < len(names) else None)
                     for i in range(len(out_types)))
        node = Node(op, tuple(v.name if v is not None else "" for v in inputs), outs, tuple(out_types), frozen)
        self._nodes.append(node)
        vals = tuple(Value(self, n, t) for n, t in zip(outs, out_types, strict=True))
        return vals[0] if len(vals) == 1 else vals

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The nodes added so far, in order (passes that rewrite a graph look up producers)."""
        return tuple(self._nodes)

    def const(self, value: float | int | bool, dtype: str = "float32") -> Value:
        return self.op("const", value=value, dtype=dtype)

    def __getattr__(self, op: str) -> Any:
        # b.sigmoid(x), b.linear(x, w, bias), b.split(x, axis=-1, sizes=(4, 4)) ...
        if op in OPS:
            return lambda *inputs, **attrs: self.op(op, *inputs, **attrs)
        raise AttributeError(op)

    def build(self, outputs: Mapping[str, Value] | Sequence[tuple[str, Value]]) -> Graph:
        items = list(outputs.items()) if isinstance(outputs, Mapping) else list(outputs)
        return Graph(self.name, tuple(self._inputs), tuple(self._params), tuple(self._nodes),
                     tuple((n, v.name) for n, v in items))
