"""The reference interpreter: runs any Graph/Program with torch ops on the CPU.

Every backend is tested against this (and against ``kernels/<cell>/reference.py``); it favours
obviously-correct over fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rnnc.errors import UserInputError
from rnnc.ir import symdims
from rnnc.ir.graph import Graph, Node, Program
from rnnc.ir.ops import OPS

RnnHook = Callable[[Node, list[Any]], tuple[Any, ...]]


def run_graph(graph: Graph, env: Mapping[str, Any], rnn: RnnHook | None = None,
              values: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """Evaluate ``graph`` given values for its inputs and params; returns its outputs in order.

    ``rnn`` lets a backend run the recurrent layers with its compiled kernels while every other
    op keeps the interpreter's torch semantics: it gets the ``rnn`` node and its full argument
    list (``None`` for omitted inputs) and returns the node's outputs.  ``values``, when given,
    receives every value the graph computed (analyses that check intermediate values)."""
    values = {} if values is None else values
    values.update(env)
    run_nodes(graph.nodes, values, rnn)
    return tuple(values[v] for _, v in graph.outputs)


def run_nodes(nodes: Sequence[Node], values: dict[str, Any], rnn: RnnHook | None = None) -> None:
    """Evaluate ``nodes`` in order, reading their inputs from and writing their outputs to
    ``values`` (a sub-graph: the chunkwise runner evaluates the nodes before and after the
    recurrence on all rows at once)."""
    for node in nodes:
        op = OPS[node.op]
        args = [values[i] if i else None for i in node.inputs]
        if rnn is not None and node.op == "rnn":
            outs = rnn(node, args)
        else:
            # trailing omitted optionals are dropped so torch functions see their defaults
            while args and args[-1] is None and len(args) > op.min_inputs:
                args.pop()
            outs = op.evaluate(args, node.attr_dict)
        if len(outs) != len(node.outputs):
            raise RuntimeError(f"{node.label} produced {len(outs)} values, expected {len(node.outputs)}")
        values.update(zip(node.outputs, outs, strict=True))


def run_with_kernels(program: Program, inputs: Sequence[Any], rnn: RnnHook) -> Any:
    """Run ``program`` with its ``rnn`` nodes on a backend's kernels (``rnn``) and every other op
    in the interpreter: what each CPU runner's call is.  One output bare, several as a tuple."""
    import torch

    env = check_inputs(program, inputs)
    env.update(program.weights)
    with torch.no_grad():
        res = run_graph(program.graph, env, rnn=rnn)
    return res[0] if len(res) == 1 else res


def check_inputs(program: Program, inputs: Sequence[Any]) -> dict[str, Any]:
    """The inputs by name, after one clear error if any does not fit the program: the count, a
    tensor each, the rank, every fixed size, and one size per symbol across inputs.

    Why: every runner (interpreter, kernel backends, the native engine) calls this first; a
    native program planned at the call's shapes would otherwise run a Program traced at length
    24 on a length-40 input and return length 24, without a word."""
    import torch

    g = program.graph
    if len(inputs) != len(g.inputs):
        names = ", ".join(n for n, _ in g.inputs)
        raise UserInputError(f"program {g.name} takes {len(g.inputs)} inputs ({names}), got {len(inputs)}")
    env: dict[str, Any] = {}
    sizes: dict[str, tuple[int, str]] = {}
    for (name, ty), value in zip(g.inputs, inputs, strict=True):
        if not isinstance(value, torch.Tensor):
            raise UserInputError(f"input {name} must be a torch.Tensor, got {type(value).__name__}")
        if value.dim() != ty.rank or any(
                isinstance(d, int) and d != s for d, s in zip(ty.shape, value.shape, strict=True)):
            raise UserInputError(f"input {name} has shape {tuple(value.shape)}, program expects {ty.text()}")
        for d, n in zip(ty.shape, value.shape, strict=True):
            if isinstance(d, str) and d != "?":
                seen = sizes.setdefault(d, (int(n), name))
                if seen[0] != n:
                    raise UserInputError(f"input {name} has {d} = {n}, input {seen[1]} has {d} = {seen[0]} "
                                         f"(program inputs: {', '.join(t.text() for _, t in g.inputs)})")
        env[name] = value
    # a dim named by an expression of others (``4*T``: samples tied to frames) must equal it
    known = {d: n for d, (n, _) in sizes.items() if symdims.symbols(d) == {d}}
    for d, (n, name) in sizes.items():
        want = None if d in known else symdims.evaluate(d, known)
        if want is not None and want != n:
            raise UserInputError(f"input {name} has {d} = {n}, but {want} at the sizes of the other inputs "
                                 f"({', '.join(f'{k} = {v}' for k, v in known.items())}; program inputs: "
                                 f"{', '.join(t.text() for _, t in g.inputs)})")
    return env


def run_program(program: Program, *inputs: Any) -> Any:
    """Run a Program on torch tensors. One output is returned bare, several as a tuple."""
    import torch

    g = program.graph
    env = check_inputs(program, inputs)
    for name, _ in g.params:
        env[name] = program.weights[name]
    with torch.no_grad():
        outs = run_graph(g, env)
    return outs[0] if len(outs) == 1 else outs
