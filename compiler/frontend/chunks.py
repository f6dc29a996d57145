"""A recurrent layer run chunk after chunk becomes one layer over the whole sequence.

Streaming-style code splits the sequence and carries the state across the pieces::

    for chunk in x.split(16, dim=1):        # or x.chunk(n, 1), or x[:, i:i + 16] for i in range(0, T, 16)
        out, h = self.gru(chunk, h)
        outs.append(out)
    y = torch.cat(outs, dim=1)

Traced, that is one ``rnn`` node per chunk of the example, each reading a slice of one tensor and
starting from the previous node's final state.  A unidirectional recurrence over adjacent pieces
with the state carried is the same recurrence over their concatenation, wherever the boundaries
fall -- so the chain is one ``rnn`` node over the whole tensor, its output replaces the ``cat``
of the pieces' outputs, and T stays symbolic however many chunks another length makes.  A
bidirectional layer, a layer given lengths, or pieces that do not tile the tensor from its start
to its end stay as traced (exact at the traced length; the trace check then fixes T and says so).
"""

from __future__ import annotations

from rnnc.ir import Graph, Node
from rnnc.ir.builder import retyped
from rnnc.ir.ops import OPS
from rnnc.ir.symdims import END


def _n_states(node: Node) -> int:
    return len(node.attr("cells")[0].states)


def _piece(graph_nodes: dict[str, Node], node: Node, sizes: dict[str, int],
           types: dict) -> tuple[str, int, int] | None:
    """(source, start, stop) when the node's sequence is a unit-step slice of the time axis of a
    tensor (stop ``END`` when it reaches the end at the example's length)."""
    src = graph_nodes.get(node.inputs[0])
    ax = 1 if node.attr("batch_first") else 0
    if src is None or src.op != "slice" or src.attr("step") != 1 or src.attr("axis") != ax:
        return None
    x = src.inputs[0]
    n = types[x].shape[ax]
    stop = src.attr("stop")
    n_ex = n if isinstance(n, int) else sizes.get(n)
    if stop >= END or (n_ex is not None and stop >= n_ex):
        stop = END
    return x, src.attr("start"), stop


def _follows(a: Node, b: Node) -> bool:
    """``b`` runs the same layer as ``a`` and starts from ``a``'s final states."""
    k = _n_states(a)
    return (a.attrs == b.attrs and b.inputs[2:2 + k] == a.outputs[1:1 + k]
            and b.inputs[2 + k:] == a.inputs[2 + k:])


def merge_chunked_rnns(graph: Graph, sizes: dict[str, int]) -> Graph:
    """Merge every chain of chunked runs of one layer (module docstring); ``sizes``: the example's
    size of each symbolic dim."""
    nodes = list(graph.nodes)
    types = graph.value_types()
    made = {v: nd for nd in nodes for v in nd.outputs}
    users: dict[str, list[Node]] = {}
    for nd in nodes:
        for v in dict.fromkeys(nd.inputs):
            if v:
                users.setdefault(v, []).append(nd)
    outputs = {v for _, v in graph.outputs}
    rnns = [nd for nd in nodes if nd.op == "rnn" and not nd.attr("bidirectional") and not nd.inputs[1]]
    nxt: dict[int, Node] = {}
    for a in rnns:
        finals = a.outputs[1:]
        after = [b for b in rnns if b is not a and _follows(a, b)]
        if len(after) == 1 and not outputs & set(finals) and all(
                users.get(f, []) in ([], [after[0]]) for f in finals):
            nxt[id(a)] = after[0]
    starts = {id(b) for b in nxt.values()}
    replace: dict[int, Node | None] = {}  # id of a node -> its replacement (None: dropped)
    for a in rnns:
        if id(a) in starts or id(a) not in nxt:
            continue
        chain = [a]
        while id(chain[-1]) in nxt:
            chain.append(nxt[id(chain[-1])])
        merged = _merge(chain, made, users, outputs, sizes, types)
        if merged is not None:
            new, gone = merged
            for nd in gone:
                replace[id(nd)] = None
            replace[id(chain[-1])] = new
    if not replace:
        return graph
    kept = [replace.get(id(nd), nd) for nd in nodes]
    return retyped(Graph(graph.name, graph.inputs, graph.params, tuple(nd for nd in kept if nd is not None),
                         graph.outputs))


def _merge(chain: list[Node], made: dict[str, Node], users: dict[str, list[Node]], outputs: set[str],
           sizes: dict[str, int], types: dict) -> tuple[Node, list[Node]] | None:
    """The one node for ``chain`` and the nodes it replaces, or None when the pieces do not tile
    one tensor or their outputs are read other than by one ``cat`` of all of them, in order."""
    pieces = [_piece(made, nd, sizes, types) for nd in chain]
    if any(p is None for p in pieces) or len({p[0] for p in pieces}) != 1:
        return None
    if pieces[0][1] != 0 or pieces[-1][2] != END or any(p[2] != q[1] for p, q in zip(pieces, pieces[1:], strict=False)):
        return None
    ax = 1 if chain[0].attr("batch_first") else 0
    ys = [nd.outputs[0] for nd in chain]
    readers = {id(u): u for y in ys for u in users.get(y, [])}
    gone = list(chain[:-1]) + [made[nd.inputs[0]] for nd in chain if users[nd.inputs[0]] == [nd]]
    y_name = None
    if readers or outputs & set(ys):
        if len(readers) != 1 or outputs & set(ys):
            return None
        (cat,) = readers.values()
        if cat.op != "concat" or list(cat.inputs) != ys or cat.attr("axis") % 3 != ax:
            return None
        gone.append(cat)
        y_name = cat.outputs[0]
    first, last = chain[0], chain[-1]
    inputs = (pieces[0][0], "", *first.inputs[2:])
    tys = OPS["rnn"].infer([types[v] if v else None for v in inputs], dict(first.attrs))
    outs = (y_name or last.outputs[0], *last.outputs[1:])
    # the merged node stands where the last piece ran: after every input, before the cat's readers
    return Node("rnn", inputs, outs, tuple(tys), first.attrs), gone
