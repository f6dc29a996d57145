"""Textual form of the IR, the structural hash, and a short summary.

Format (one statement per line, attributes as JSON so they round-trip exactly)::

    rnnc-ir v1
    cell c0 {"hidden_size": 32, "input_size": 16, "kind": "lstm", ...}
    graph lstm_step
      input %x: f32[B,16]
      param %weight_ih: f32[128,16]
      %t0: f32[B,128] = linear(%x, %weight_ih, %bias_ih)
      output y = %h2
    end
    program main
      input %x: f32[B,T,16]
      %y, %h_n: f32[B,T,32], f32[1,B,32] = rnn(%x, _, _, ...) {"cells": [{"$cell": "c0"}], ...}
      output y = %y
    end

The hash is the sha256 of this text, so it depends only on structure, types and attributes,
never on weight values or on the process that computes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import Any

from rnnc.ir.graph import Cell, Graph, Program, cells_of

HEADER = "rnnc-ir v1"


class _CellNamer:
    def __init__(self) -> None:
        self.names: dict[Cell, str] = {}
        self.lines: list[str] = []

    def name(self, cell: Cell) -> str:
        if cell not in self.names:
            # nested cells first, so the parser always sees definitions before uses
            body = print_graph(cell.step, self)
            self.names[cell] = f"c{len(self.names)}"
            meta = {
                "kind": cell.kind,
                "recurrence": cell.recurrence,
                "input_size": cell.input_size,
                "hidden_size": cell.hidden_size,
                "output_size": cell.output_size,
                "states": [[s.name, list(s.shape), s.dtype] for s in cell.states],
                "attrs": {k: _jsonable(v, self) for k, v in cell.attrs},
            }
            self.lines.append(f"cell {self.names[cell]} {json.dumps(meta, sort_keys=True)}")
            self.lines.extend(body)
        return self.names[cell]


def _jsonable(v: Any, namer: _CellNamer) -> Any:
    if isinstance(v, Cell):
        return {"$cell": namer.name(v)}
    if isinstance(v, tuple):
        return [_jsonable(x, namer) for x in v]
    return v


def print_graph(graph: Graph, namer: _CellNamer, keyword: str = "graph") -> list[str]:
    lines = [f"{keyword} {graph.name}"]
    lines += [f"  input %{n}: {t.text()}" for n, t in graph.inputs]
    lines += [f"  param %{n}: {t.text()}" for n, t in graph.params]
    for node in graph.nodes:
        for c in cells_of(node):
            namer.name(c)
        outs = ", ".join(f"%{o}" for o in node.outputs)
        types = ", ".join(t.text() for t in node.types)
        ins = ", ".join(f"%{i}" if i else "_" for i in node.inputs)
        attrs = ""
        if node.attrs:
            attrs = " " + json.dumps({k: _jsonable(v, namer) for k, v in node.attrs}, sort_keys=True)
        lines.append(f"  {outs}: {types} = {node.op}({ins}){attrs}")
    lines += [f"  output {n} = %{v}" for n, v in graph.outputs]
    lines.append("end")
    return lines


def print_program(program: Program) -> str:
    namer = _CellNamer()
    body = print_graph(program.graph, namer, "program")
    return "\n".join([HEADER, *namer.lines, *body]) + "\n"


def print_cell(cell: Cell) -> str:
    namer = _CellNamer()
    namer.name(cell)
    return "\n".join([HEADER, *namer.lines]) + "\n"


def structural_hash(program: Program) -> str:
    return hashlib.sha256(print_program(program).encode()).hexdigest()


def cell_hash(cell: Cell) -> str:
    """Structural hash of one cell (the per-layer part of a tuning key)."""
    return hashlib.sha256(print_cell(cell).encode()).hexdigest()


def layer_key(cell: Cell) -> str:
    """The name every backend, manifest and ``rnnc.compile`` use for one layer kernel: the cell kind
    and its structural hash.  User cells' kinds look like ``user:MyCell``; kernel symbols and
    file names need ``[A-Za-z0-9_]``."""
    kind = re.sub(r"\W", "_", cell.kind)
    return f"{kind}_{cell_hash(cell)[:12]}"


def layer_cells(program: Program) -> dict[str, Cell]:
    """Each distinct recurrent layer of ``program`` by :func:`layer_key`, in program order: what a
    backend compiles (and an artifact loads) once, however many rnn nodes share it."""
    out: dict[str, Cell] = {}
    for node in program.rnn_nodes():
        for cell in node.attr_dict["cells"]:
            out.setdefault(layer_key(cell), cell)
    return out


def layer_storage(program: Program) -> dict[str, str]:
    """Each layer's storage dtype (what its kernels load and store: x, y, weights), by
    :func:`layer_key`.  A model cast to fp16/bf16 keeps its step graph in fp32 (the IR computes
    in fp32, the kernels' mixed precision), so the dtype is read off the layer's stored weights;
    a layer with no stored floating weight keeps its step graph's input dtype."""
    from rnnc.ir.rnn import HALF_DTYPES, direction_params, rnn_layout

    out: dict[str, str] = {}
    for node in program.rnn_nodes():
        cells, dirs, _ = rnn_layout(node.attr_dict)
        params = direction_params(node.attr_dict, node.inputs[2 + len(cells[0].states):])
        for k, cell in enumerate(cells):
            found = [str(w.dtype).removeprefix("torch.") for n in params[k * dirs].values()
                     if (w := program.weights.get(n)) is not None and w.is_floating_point()]
            half = [d for d in found if d in HALF_DTYPES]
            out.setdefault(layer_key(cell), half[0] if half else cell.step.inputs[0][1].dtype)
    return out


def summarize(program: Program) -> str:
    g = program.graph
    counts = Counter(n.op for n in g.nodes)
    n_params = sum(int(w.numel()) for w in program.weights.values())
    lines = [f"program {g.name}: {len(g.nodes)} ops, {n_params:,} weights, hash {program.hash()[:12]}"]
    lines.append("  inputs:  " + ", ".join(f"{n}: {t.text()}" for n, t in g.inputs))
    types = g.value_types()
    lines.append("  outputs: " + ", ".join(f"{n}: {types[v].text()}" for n, v in g.outputs))
    lines.append("  ops:     " + ", ".join(f"{op} x{c}" for op, c in sorted(counts.items())))
    for node in program.rnn_nodes():
        cells = node.attr("cells")
        c0 = cells[0]
        dirs = "bidirectional" if node.attr("bidirectional") else "forward"
        lines.append(f"  rnn {node.label}: {len(cells)} x {c0.kind} ({c0.recurrence}), {dirs}, "
                     f"input {c0.input_size}, hidden {c0.hidden_size}, output {c0.output_size}, "
                     f"states {', '.join(f'{s.name}{list(s.shape)}' for s in c0.states)}, "
                     f"{len(c0.step.nodes)} step ops")
    return "\n".join(lines)
