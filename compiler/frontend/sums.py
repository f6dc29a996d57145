"""Losses and statistics accumulated into a Python number across steps become a sum of a stack.

``kld_loss = 0; for t in range(T): ...; kld_loss += torch.sum(kld_t)`` (VRNN, a variational
decoder's per-step KL terms, an auxiliary loss or an activation statistic a model returns beside
its outputs) traces to a chain of additions whose first one adds to the number, the rest to the
previous sum.  The first step then differs from the others, so the loop could not roll, and the
running sum, often a scalar, has no batch dim to carry as a recurrent state.  Nothing in the loop
reads the running sum -- each partial sum's only use is the next addition -- so the chain is
exactly

    init + stack([g_0, ..., g_n-1]).sum(0)

(up to the order of the floating-point additions), and the stacked terms are what the rest of the
frontend reads as a loop's collected output: the loop rolls (``scan.py``) and the sum follows it.
Only chains that start from a Python number are rewritten: a running tensor (``s = s + k_t v_t``
read at the end) already steps alike, and a stack of its terms could be far larger than it.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx

from rnnc.frontend.fx_trace import Traced, add_call, call_shape, example_of

#: the shortest chain rewritten: two additions are no loop to roll
_MIN_TERMS = 3
_ADDS = (operator.add, operator.iadd, torch.add)



def _addition(node: fx.Node) -> tuple[Any, Any] | None:
    """The two operands of ``a + b`` (a plain addition: no ``alpha``, no ``out``)."""
    if node.op != "call_function" or node.target not in _ADDS or node.kwargs or len(node.args) != 2:
        return None
    return node.args[0], node.args[1]


def _number(a: Any) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def _term(node: fx.Node, prev: fx.Node) -> Any:
    """The term ``node`` adds to ``prev`` (the chain's last partial sum), when ``prev``'s only use
    is this addition and the term is a tensor shaped like the sum's other terms."""
    ops = _addition(node)
    if ops is None or len(prev.users) != 1 or sum(a is prev for a in ops) != 1:
        return None
    term = ops[1] if ops[0] is prev else ops[0]
    return term if isinstance(example_of(term), torch.Tensor) else None


def _chains(graph: fx.Graph) -> list[tuple[Any, list[fx.Node], list[Any]]]:
    """(initial number, additions, terms) of every chain that starts from a Python number."""
    out = []
    for node in graph.nodes:
        ops = _addition(node)
        if ops is None or sum(_number(a) for a in ops) != 1:
            continue
        init, first = (ops[0], ops[1]) if _number(ops[0]) else (ops[1], ops[0])
        if not isinstance(example_of(first), torch.Tensor):
            continue
        adds, terms = [node], [first]
        while len(adds[-1].users) == 1:
            (user,) = adds[-1].users
            term = _term(user, adds[-1])
            if term is None:
                break
            adds.append(user)
            terms.append(term)
        shapes = {(tuple(example_of(t).shape), example_of(t).dtype) for t in terms}
        if len(terms) >= _MIN_TERMS and len(shapes) == 1 and example_of(terms[0]).dtype.is_floating_point \
                and example_of(adds[-1]).dtype == example_of(terms[0]).dtype:
            out.append((init, adds, terms))  # (floats only: a sum over a stack widens integers, and
            # a count of booleans from 0 is an int64 eager keeps running in its own dtype)
    return out


#: elementwise calls a stack moves through: ``stack([f(a_k, c)]) == f(stack([a_k]), c)``
_POINTWISE_FNS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.pow, operator.neg,
                  torch.add, torch.sub, torch.mul, torch.div, torch.pow, torch.exp, torch.log, torch.abs,
                  torch.square, torch.sqrt, torch.tanh, torch.sigmoid, torch.relu}
_POINTWISE_METHODS = {"add", "sub", "mul", "div", "pow", "exp", "log", "abs", "square", "sqrt", "tanh", "sigmoid",
                      "relu", "neg"}
_REDUCE_FNS = {torch.sum: "sum", torch.mean: "mean"}
_REDUCE_METHODS = {"sum", "mean"}


def _same_call(nodes: list[fx.Node]) -> bool:
    """The nodes call one function the same way: node arguments at the same places, every other
    argument equal."""
    first = nodes[0]
    return first.op in ("call_function", "call_method") and all(call_shape(n) == call_shape(first) for n in nodes)


def _stacked(graph: fx.Graph, nodes: list[Any]) -> fx.Node:
    """``stack(nodes, 0)``, moved through the elementwise ops and reductions that make each node
    from per-step values (``0.5 * torch.sum(kld_t)`` becomes ``0.5 * stack(kld_t).sum(dims)``):
    the loop then collects the per-step values with their batch, not a scalar per step, and the
    work after them runs once over the whole sequence.  Checked on the example values."""
    alone = all(isinstance(n, fx.Node) and len(n.users) == 1 for n in nodes)  # (before the stack uses them)
    plain = add_call(graph, torch.stack, (nodes, 0))
    before = set(graph.nodes)
    moved = _moved(graph, nodes) if alone else _whole(graph, nodes)
    want, got = example_of(plain), example_of(moved) if moved is not None else None
    if got is not None and got.shape == want.shape and got.dtype == want.dtype and torch.allclose(
            got, want, rtol=1e-4, atol=1e-6):
        graph.erase_node(plain)
        return moved
    for node in reversed([n for n in graph.nodes if n not in before]):  # what the attempt made
        graph.erase_node(node)
    return plain


def _whole(graph: fx.Graph, nodes: list[fx.Node]) -> fx.Node | None:
    """``stack([x[0], x[1], ..., x[n-1]])`` over all of an axis (``x[:, t]`` too) is ``x`` with
    that axis first: the loss's second read of ``x[t]`` is the input itself, not one more loop."""
    if not all(n.op == "call_function" and n.target is operator.getitem and n.args[0] is nodes[0].args[0]
               for n in nodes):
        return None
    base = nodes[0].args[0]
    items = [n.args[1] if isinstance(n.args[1], tuple) else (n.args[1],) for n in nodes]
    if len({len(it) for it in items}) != 1 or not isinstance(example_of(base), torch.Tensor):
        return None
    ints = [k for k, it in enumerate(items[0]) if isinstance(it, int) and not isinstance(it, bool)]
    full = all(it == slice(None) for k, it in enumerate(items[0]) if k not in ints)
    if len(ints) != 1 or not full or any(it[:ints[0]] != items[0][:ints[0]] for it in items):
        return None
    axis = ints[0]
    if [it[axis] for it in items] != list(range(len(nodes))) or example_of(base).shape[axis] != len(nodes):
        return None
    return base if axis == 0 else add_call(graph, torch.movedim, (base, axis, 0))


def _moved(graph: fx.Graph, nodes: list[fx.Node]) -> fx.Node | None:
    whole = _whole(graph, nodes)
    if whole is not None:
        return whole
    if not _same_call(nodes) or not all(isinstance(example_of(n), torch.Tensor) for n in nodes):
        return None
    first, rank = nodes[0], example_of(nodes[0]).dim()
    name = first.target if first.op == "call_method" else None
    fn = first.target if first.op == "call_function" else None
    reduce = _REDUCE_FNS.get(fn) if fn is not None else (name if name in _REDUCE_METHODS else None)
    if reduce is None and fn not in _POINTWISE_FNS and name not in _POINTWISE_METHODS:
        return None
    places = [i for i, a in enumerate(first.args) if isinstance(a, fx.Node)]
    for i in places:  # each column stacks: one shape and dtype at every step
        kinds = {(tuple(example_of(n.args[i]).shape), example_of(n.args[i]).dtype) if isinstance(
            example_of(n.args[i]), torch.Tensor) else None for n in nodes}
        if len(kinds) != 1:
            return None
    if any(k != "dim" and isinstance(v, fx.Node) for k, v in first.kwargs.items()):
        return None
    args = list(first.args)
    for i in places:
        column = [n.args[i] for n in nodes]
        ex = example_of(column[0])
        if not isinstance(ex, torch.Tensor):
            return None
        if all(a is column[0] for a in column):  # one value for every step: broadcast over the stack
            if reduce is not None or ex.dim() > rank:
                return None
            continue
        if reduce is None and ex.dim() != rank:
            return None
        args[i] = _stacked(graph, column)
    if reduce is not None:
        if places != [0] or len(first.args) > 3:
            return None
        x = example_of(nodes[0].args[0])
        dim = first.kwargs.get("dim", first.args[1] if len(first.args) > 1 else None)
        keep = first.kwargs.get("keepdim", first.args[2] if len(first.args) > 2 else False)
        if {k for k in first.kwargs} - {"dim", "keepdim"}:
            return None
        dims = tuple(range(x.dim())) if dim is None else (dim,) if isinstance(dim, int) else tuple(dim)
        shifted = tuple(d + 1 if d >= 0 else d for d in dims) if dims else None
        if shifted is None or not all(isinstance(d, int) for d in dims):
            return None
        return add_call(graph, getattr(torch, reduce), (args[0],), {"dim": shifted, "keepdim": bool(keep)})
    if first.op == "call_method":
        node = graph.call_method(name, tuple(args), dict(first.kwargs))
        node.meta["rnnc_ex"] = getattr(example_of(args[0]), name)(*fx.node.map_arg(tuple(args[1:]), example_of),
                                                               **fx.node.map_arg(dict(first.kwargs), example_of))
        return node
    return add_call(graph, fn, tuple(args), dict(first.kwargs))


def gather_sums(gm: Traced) -> int:
    """Rewrite every chain of additions from a Python number (module docstring); returns how many."""
    graph = gm.graph
    chains = _chains(graph)
    for init, adds, terms in chains:
        last = adds[-1]
        with graph.inserting_before(last):
            total = add_call(graph, torch.sum, (_stacked(graph, terms),), {"dim": 0})
            if init != 0:
                total = add_call(graph, operator.add, (total, init))
        total.stack_trace = last.stack_trace
        last.replace_all_uses_with(total)
        for node in reversed(adds):
            graph.erase_node(node)
        for term in terms:
            _drop_unused(graph, term)
    return len(chains)


def _pure(node: fx.Node) -> bool:
    """A call ``_stacked`` moves a stack through: no effect but its value."""
    if node.op == "call_method":
        return node.target in _POINTWISE_METHODS or node.target in _REDUCE_METHODS
    return node.op == "call_function" and (node.target in _POINTWISE_FNS or node.target in _REDUCE_FNS
                                           or node.target is operator.getitem)


def _drop_unused(graph: fx.Graph, node: Any) -> None:
    """Erase the per-step terms the stack replaced, and what only they used: left in, each step
    would compute them for nothing, and their reads (``x[t]`` again) would look like a loop."""
    if not isinstance(node, fx.Node) or node.users or not _pure(node):
        return
    inputs = node.all_input_nodes
    graph.erase_node(node)
    for a in inputs:
        _drop_unused(graph, a)
