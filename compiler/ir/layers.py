"""Helpers that build whole Programs around ``rnn`` nodes (used by the frontend, tests, the CLI)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rnnc.ir.builder import GraphBuilder, Value
from rnnc.ir.graph import Cell, Program, Weights


def weight_name(prefix: str, layer: int, direction: int, param: str) -> str:
    """Program-level name of a cell weight: ``{prefix}l{layer}.{fwd|rev}.{param}``."""
    return f"{prefix}l{layer}.{'rev' if direction else 'fwd'}.{param}"


def add_rnn(b: GraphBuilder, x: Value, cells: Sequence[Cell],
            weights: Sequence[Sequence[Mapping[str, Any]]], *, bidirectional: bool = False,
            batch_first: bool = True, lengths: Value | None = None,
            init_states: Sequence[Value | None] | None = None, prefix: str = "",
            out_names: Sequence[str] | None = None) -> tuple[tuple[Value, ...], dict[str, Any]]:
    """Add an ``rnn`` node to ``b``. ``weights[layer][direction]`` maps cell param names to
    tensors. Returns the node's output Values (y, then final states) and the new weight tensors
    keyed by their program-level names."""
    dirs = 2 if bidirectional else 1
    params: list[Value] = []
    tensors: dict[str, Any] = {}
    for k, cell in enumerate(cells):
        if len(weights[k]) != dirs:
            raise ValueError(f"layer {k}: {len(weights[k])} weight sets for {dirs} directions")
        ptypes = dict(cell.step.params)
        for d in range(dirs):
            for p in cell.param_names:
                name = weight_name(prefix, k, d, p)
                t = ptypes[p]
                params.append(b.param(name, t.shape, t.dtype))
                tensors[name] = weights[k][d][p]
    states = list(init_states) if init_states is not None else [None] * len(cells[0].states)
    outs = b.op("rnn", x, lengths, *states, *params, cells=tuple(cells), num_layers=len(cells),
                bidirectional=bidirectional, batch_first=batch_first, names=out_names)
    return (outs if isinstance(outs, tuple) else (outs,)), tensors


def rnn_program(cells: Sequence[Cell], weights: Sequence[Sequence[Mapping[str, Any]]], *,
                bidirectional: bool = False, batch_first: bool = True, with_states: bool = False,
                with_lengths: bool = False, name: str = "rnn") -> Program:
    """A Program holding one ``rnn`` node: inputs ``x`` (+ ``lengths``, + one initial state per
    cell state when ``with_states``); outputs ``y`` and the final states."""
    b = GraphBuilder(name)
    first = cells[0]
    x_shape = ("B", "T", first.input_size) if batch_first else ("T", "B", first.input_size)
    x = b.input("x", x_shape, first.step.inputs[0][1].dtype)
    lengths = b.input("lengths", ("B",), "int64") if with_lengths else None
    lay = len(cells) * (2 if bidirectional else 1)
    inits = [b.input(f"{s.name}0", (lay, "B", *s.shape), s.dtype) for s in first.states] if with_states else None
    outs, tensors = add_rnn(b, x, cells, weights, bidirectional=bidirectional, batch_first=batch_first,
                            lengths=lengths, init_states=inits,
                            out_names=("y", *(f"{s.name}_n" for s in first.states)))
    graph = b.build([("y", outs[0]), *((f"{s.name}_n", v) for s, v in zip(first.states, outs[1:], strict=True))])
    return Program(graph, Weights(tensors)).verify()
