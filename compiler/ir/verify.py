"""``verify``: every IR invariant, with messages that name the graph and the node."""

from __future__ import annotations

from rnnc.errors import IRVerificationError
from rnnc.ir.graph import Cell, Graph, Program, cells_of
from rnnc.ir.ops import OPS, ShapeError
from rnnc.ir.types import TensorType, dims_compatible


def _compatible(a: TensorType, b: TensorType) -> bool:
    return a.dtype == b.dtype and a.rank == b.rank and all(
        dims_compatible(x, y) for x, y in zip(a.shape, b.shape, strict=True))


def verify_graph(graph: Graph, where: str = "") -> None:
    """Check definitions before uses, op arity/attributes, and recorded vs inferred types."""
    where = where or f"graph {graph.name}"
    defined: dict[str, TensorType] = {}
    for name, t in (*graph.inputs, *graph.params):
        if name in defined:
            raise IRVerificationError(f"{where}: %{name} is defined twice")
        defined[name] = t
    for node in graph.nodes:
        if node.op not in OPS:
            raise IRVerificationError(f"{where}: node {node.label} uses unknown op {node.op!r}")
        d = OPS[node.op]
        n_in = len(node.inputs)
        if n_in < d.min_inputs or (d.max_inputs is not None and n_in > d.max_inputs):
            raise IRVerificationError(f"{where}: node {node.label} has {n_in} inputs; {node.op} takes "
                                      f"{d.min_inputs}..{d.max_inputs if d.max_inputs is not None else 'n'}")
        attrs = node.attr_dict
        missing = [a for a in d.required_attrs if a not in attrs]
        if missing:
            raise IRVerificationError(f"{where}: node {node.label} is missing attributes {missing}")
        for i in node.inputs:
            if i and i not in defined:
                raise IRVerificationError(f"{where}: node {node.label} uses %{i} before it is defined")
        for cell in cells_of(node):
            verify_cell(cell, f"{where}: cell {cell.kind} of node {node.label}")
        try:
            inferred = d.infer([defined[i] if i else None for i in node.inputs], attrs)
        except ShapeError as exc:
            raise IRVerificationError(f"{where}: node {node.label}: {exc}") from None
        if len(inferred) != len(node.outputs) or len(node.types) != len(node.outputs):
            raise IRVerificationError(f"{where}: node {node.label} declares {len(node.outputs)} outputs, "
                                      f"{node.op} produces {len(inferred)}")
        for out, rec, inf in zip(node.outputs, node.types, inferred, strict=True):
            if not _compatible(rec, inf):
                raise IRVerificationError(f"{where}: node {node.label} declares %{out}: {rec.text()} but "
                                          f"its inputs give {inf.text()}")
            if out in defined:
                raise IRVerificationError(f"{where}: %{out} is defined twice (node {node.label})")
            defined[out] = rec
    seen_out: set[str] = set()
    for name, value in graph.outputs:
        if value not in defined:
            raise IRVerificationError(f"{where}: output {name} refers to undefined %{value}")
        if name in seen_out:
            raise IRVerificationError(f"{where}: output name {name} appears twice")
        seen_out.add(name)


def verify_cell(cell: Cell, where: str) -> None:
    """A cell's step graph must be ``(x, *states) -> (y, *states)`` with consistent sizes."""
    if cell.recurrence not in ("nonlinear", "linear"):
        raise IRVerificationError(f"{where}: recurrence must be 'nonlinear' or 'linear', not {cell.recurrence!r}")
    g = cell.step
    want_in = ("x", *cell.state_names)
    if g.input_names != want_in:
        raise IRVerificationError(f"{where}: step inputs are {g.input_names}, expected {want_in}")
    if g.output_names != ("y", *cell.state_names):
        raise IRVerificationError(f"{where}: step outputs are {g.output_names}, expected "
                                  f"{('y', *cell.state_names)}")
    verify_graph(g, where)
    types = g.value_types()
    x_t = dict(g.inputs)["x"]
    if x_t.rank != 2 or not dims_compatible(x_t.shape[1], cell.input_size):
        raise IRVerificationError(f"{where}: x is {x_t.text()}, expected [B, {cell.input_size}]")
    y_t = types[dict(g.outputs)["y"]]
    if y_t.rank != 2 or not dims_compatible(y_t.shape[1], cell.output_size):
        raise IRVerificationError(f"{where}: y is {y_t.text()}, expected [B, {cell.output_size}]")
    for s in cell.states:
        want = TensorType((x_t.shape[0], *s.shape), s.dtype)
        got_in = dict(g.inputs)[s.name]
        got_out = types[dict(g.outputs)[s.name]]
        for label, got in (("input", got_in), ("output", got_out)):
            if not _compatible(got, want):
                raise IRVerificationError(f"{where}: state {s.name} {label} is {got.text()}, expected {want.text()}")


def verify_program(program: Program) -> None:
    """Verify the graph, then that every param has a weight of the declared shape and dtype."""
    from rnnc.ir.types import dtype_of_torch

    verify_graph(program.graph, f"program {program.graph.name}")
    for name, t in program.graph.params:
        if name not in program.weights:
            raise IRVerificationError(f"program {program.graph.name}: no weight tensor for param %{name}")
        w = program.weights[name]
        shape = tuple(w.shape)
        if shape != t.shape or dtype_of_torch(w.dtype) != t.dtype:
            raise IRVerificationError(f"program {program.graph.name}: weight %{name} is "
                                      f"{dtype_of_torch(w.dtype)}{list(shape)}, param declares {t.text()}")
