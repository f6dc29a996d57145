"""Roll a Python loop over time, unrolled by tracing, back into one ``rnn`` node over symbolic T.

Why: recurrences written as loops of tensor ops -- ``for i in range(l): x = dA[:, i] * x +
dBu[:, i]`` (mamba-minimal's selective scan), QRNN's ForgetMult, SRU's cell -- trace to one copy
of the loop body per step of the example, which fixes T.  Loops over cell *modules* are merged
before conversion (``loops.py``); this pass works on the converted IR, so any body made of IR
ops rolls, whatever module or function it sits in.

How (on a graph whose time dim is symbolic, ``api._build``):

1. *Reads*: ``select(X, a, k)`` and ``slice(X, a, k, k + 1)`` of a symbolic dim with constant k.
2. *Carry chains*: the reads of one X, ordered by k, whose steps meet: a node that depends on the
   reads of steps k and k + 1 but not on step k + 2's is step k + 1's work on step k's carry
   (reversed for a loop running backwards).  Chains whose reads meet inside one step form a loop.
3. *Steps*: a node belongs to the last step whose reads it depends on; nodes that only feed one
   step (per-step copies of invariants, reads that do not touch the carry) join that step.
4. *Template*: the middle step's nodes, in graph order.  Every other step must be the same list
   position by position (same ops, attributes, shapes, read index moving one per step, inputs
   from the same positions of its own or the previous step, or the same invariant); the first
   one or two steps may differ (a first iteration written apart, ``if prev is None``) and stay
   unrolled, the last may miss nodes only the next step would read.
5. *Rewrite*: the template becomes a ``Cell`` step graph (per-step reads packed into ``x``,
   carried values as states, invariants as weights, or as states passed through unchanged
   when they depend on the inputs), one ``rnn`` node runs it, and the loop's ``stack``/``cat``
   of per-step values and its final values are read from the rnn's outputs.

Anything that does not fit is left as it was; ``trace`` then checks the Program at another length
and, if a loop is still unrolled, falls back to a fixed length and says so (``api.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnc.ir import Cell, Graph, GraphBuilder, Node, StateSpec
from rnnc.ir.graph import freeze_attrs
from rnnc.ir.ops import OPS
from rnnc.ir.types import TensorType

_END = 2**62
#: the batch symbol the frontend gives the batch dim (``dims.py``): states keep it first
BATCH = "B"
#: at most this many first steps may differ from the rest and stay unrolled (one: a Program
#: with k steps written apart would need T >= k, where the model runs at any length)
MAX_PEELED = 1


class _Skip(Exception):
    """This loop does not roll (the reason is kept for debugging, the loop stays unrolled)."""


@dataclass
class _G:
    """The graph being rolled, indexed: producer and users of each value, descendants per node."""

    graph: Graph
    nodes: list[Node] = field(init=False)
    prod: dict[str, tuple[int, int]] = field(init=False)  # value -> (node index, output index)
    users: list[list[int]] = field(init=False)
    types: dict[str, TensorType] = field(init=False)
    outputs: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.nodes = list(self.graph.nodes)
        self.types = self.graph.value_types()
        self.prod = {v: (i, j) for i, n in enumerate(self.nodes) for j, v in enumerate(n.outputs)}
        self.users = [[] for _ in self.nodes]
        for i, n in enumerate(self.nodes):
            for v in set(n.inputs):
                if v in self.prod:
                    self.users[self.prod[v][0]].append(i)
        self.outputs = {v for _, v in self.graph.outputs}
        self._desc: list[int] | None = None
        self.params = {p for p, _ in self.graph.params}
        self.input_names = {p for p, _ in self.graph.inputs}
        self._pure: list[bool] | None = None
        # one forward pass (nodes are in dependency order; no recursion however long the loop):
        # a structural key per value (hash-consed to ints) and whether it depends on an input
        ids: dict[Any, int] = {}
        self._keys: dict[str, int] = {}
        self.from_inputs: dict[str, bool] = {v: True for v in self.input_names}
        for v in self.params:
            self._keys[v] = ids.setdefault(("value", v), len(ids))
        for v in self.input_names:
            self._keys[v] = ids.setdefault(("value", v), len(ids))
        for n in self.nodes:
            args = tuple(self._keys.get(x, -1) if x else -2 for x in n.inputs)
            dep = any(self.from_inputs.get(x, False) for x in n.inputs if x)
            for j, v in enumerate(n.outputs):
                self._keys[v] = ids.setdefault((n.op, n.attrs, j, args), len(ids))
                self.from_inputs[v] = dep

    @property
    def desc(self) -> list[int]:
        """Bitmask of every node's descendants (not itself)."""
        if self._desc is None:
            desc = [0] * len(self.nodes)
            for i in range(len(self.nodes) - 1, -1, -1):
                m = 0
                for u in self.users[i]:
                    m |= (1 << u) | desc[u]
                desc[i] = m
            self._desc = desc
        return self._desc

    @property
    def read_derived(self) -> list[bool]:
        """Per node: a time read, or computed from reads and values that depend on no input."""
        if self._pure is None:
            pure: list[bool] = []
            for i, n in enumerate(self.nodes):
                pure.append(_read(self, i) is not None or all(
                    not v or (pure[self.prod[v][0]] if v in self.prod else v not in self.input_names)
                    for v in n.inputs))
            self._pure = pure
        return self._pure

    def key(self, v: str) -> int:
        """A structural key of value ``v``: equal keys compute equal values (per-step copies of
        an invariant, ``w.view(...)[0]`` emitted once per iteration, compare equal)."""
        return self._keys[v]


# --------------------------------------------------------------------------- 1-2: reads, chains, loops
@dataclass(frozen=True)
class _Read:
    node: int
    x: str
    axis: int
    index: int
    keep: bool  # slice(k, k + 1) keeps the axis; select drops it


def _read(g: _G, i: int) -> _Read | None:
    n = g.nodes[i]
    if n.op not in ("select", "slice") or not n.inputs or n.inputs[0] not in g.types:
        return None
    xt = g.types[n.inputs[0]]
    ax = n.attr("axis") % xt.rank
    if not isinstance(xt.shape[ax], str):
        return None
    if n.op == "select":
        k = n.attr("index")
        return _Read(i, n.inputs[0], ax, k, False) if k >= 0 else None
    k = n.attr("start")
    if n.attr("step") == 1 and k >= 0 and n.attr("stop") == k + 1:
        return _Read(i, n.inputs[0], ax, k, True)
    return None


def _meet(g: _G, a: Iterable[int | None], b: Iterable[int | None], later: Iterable[int | None]) -> bool:
    """Whether some node depends on a read in ``a`` and one in ``b`` but on none in ``later``."""
    d = g.desc
    ma = mb = ml = 0
    for i in a:
        ma |= d[i] | (1 << i) if i is not None else 0
    for i in b:
        mb |= d[i] | (1 << i) if i is not None else 0
    for i in later:
        ml |= d[i] | (1 << i) if i is not None else 0
    return bool(ma & mb & ~ml)


@dataclass
class _Loop:
    n: int
    forward: bool
    chains: list[list[int | None]]  # read node per scan step (None: not read), one list per chain


def _find_loops(g: _G, sizes: dict[str, int]) -> tuple[list[_Loop], list[list[int | None]]]:
    """The loops, and the reads (by index) of the Xs that feed no carry: a loop claims those
    whose reads its steps use (``_steps``).  ``sizes``: the example's size of each symbolic dim;
    only a loop over every step of its dim is one (``for k in range(4)`` on a length-9 input is
    a fixed prologue, and rolling it over T would be wrong)."""
    by_key: dict[tuple[str, int, bool], dict[int, list[int]]] = {}
    for i in range(len(g.nodes)):
        r = _read(g, i)
        if r is not None:
            by_key.setdefault((r.x, r.axis, r.keep), {}).setdefault(r.index, []).append(i)
    chains: list[tuple[int, bool, list[int | None]]] = []
    free: list[list[int | None]] = []
    for (x, axis, _keep), by_index in by_key.items():
        n = max(by_index) + 1
        if sizes.get(str(g.types[x].shape[axis])) != n:
            continue
        copies = max(len(r) for r in by_index.values())
        m = n // 2
        # a step may not read X at all (``forgets[0]`` unused when the first step has no carry)
        if n < 3 or any(len(by_index.get(k, [])) not in (0, copies) for k in range(n)) or any(
                len(by_index.get(k, [])) != copies for k in (m - 1, m, m + 1)):
            continue
        for c in range(copies):  # copy c of every index: the c-th loop over X in graph order
            reads = [by_index[k][c] if by_index.get(k) else None for k in range(n)]
            fwd = _meet(g, [reads[m - 1]], [reads[m]], [reads[m + 1]])
            bwd = _meet(g, [reads[m + 1]], [reads[m]], [reads[m - 1]])
            if fwd != bwd:
                chains.append((n, fwd, reads if fwd else reads[::-1]))
            elif not fwd:
                free.append(reads)
    # chains meeting inside one step form one loop (union-find over the chains)
    parent = list(range(len(chains)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (n, f, a) in enumerate(chains):
        for j in range(i + 1, len(chains)):
            nb, fb, b = chains[j]
            m = n // 2
            if (nb, fb) == (n, f) and _meet(g, [a[m]], [b[m]], [a[m + 1], b[m + 1]]):
                parent[root(j)] = root(i)
    loops: dict[int, _Loop] = {}
    for i, (n, f, reads) in enumerate(chains):
        loops.setdefault(root(i), _Loop(n, f, [])).chains.append(reads)
    return [*loops.values(), *_maps(g, free)], free


def _maps(g: _G, free: list[list[int | None]]) -> list[_Loop]:
    """Loops with no carry (``torch.stack([f(x[:, t]) for t in range(T)], 1)``, a per-step map):
    the free reads that meet inside one step, each group tried after the carried loops (a carried
    loop claims the free reads its steps use first)."""
    groups: list[list[list[int | None]]] = []
    for reads in free:
        n, m = len(reads), len(reads) // 2
        if any(r is None for r in reads):
            continue
        for group in groups:
            other = group[0]
            if len(other) == n and _meet(g, [other[m]], [reads[m]], [other[m + 1], reads[m + 1]]):
                group.append(reads)
                break
        else:
            groups.append([reads])
    return [_Loop(len(group[0]), True, group) for group in groups]


# --------------------------------------------------------------------------- 3: steps
def _steps(g: _G, loop: _Loop, free: list[list[int | None]]) -> tuple[_Loop, list[list[int]]]:
    """The nodes of each scan step, in graph order.  A read that feeds no carry (SRU's ``r_in[t]``)
    joins the step of the nodes it feeds; the reads of that X then count as the loop's too, so a
    node combining ``r_in[t]`` with the carry from step t - 1 lands in step t."""
    step = _assign(g, loop)
    m = loop.n // 2
    natural = m if loop.forward else loop.n - 1 - m  # the scan step reading index m
    claimed = [reads for reads in free if len(reads) == loop.n and reads[m] is not None
               and step[reads[m]] in (natural, natural - 1)]
    if claimed:
        loop = _Loop(loop.n, loop.forward, [*loop.chains, *(r if loop.forward else r[::-1] for r in claimed)])
        step = _assign(g, loop)
    bodies: list[list[int]] = [[] for _ in range(loop.n)]
    for i, s in enumerate(step):
        if s >= 0:
            bodies[s].append(i)
    return loop, bodies


def _assign(g: _G, loop: _Loop) -> list[int]:
    """Each node's scan step (-1: outside the loop)."""
    d = g.desc
    step = [-1] * len(g.nodes)
    for s in range(loop.n):
        mask = 0
        for reads in loop.chains:
            r = reads[s]
            mask |= d[r] | (1 << r) if r is not None else 0
        for i, bit in enumerate(bin(mask)[:1:-1]):  # later steps overwrite: the last one wins
            if bit == "1":
                step[i] = s
    # nodes computed from reads and invariants only (per-step copies of invariants, work on a
    # read before it meets the carry) that feed one step join it; a value computed from the
    # inputs otherwise (a prologue value, an initial state) stays outside
    pure = g.read_derived
    for i in range(len(g.nodes) - 1, -1, -1):
        if step[i] >= 0 or not pure[i] or not g.users[i] or any(v in g.outputs for v in g.nodes[i].outputs):
            continue
        at = {step[u] for u in g.users[i]}
        if len(at) == 1 and -1 not in at:
            step[i] = at.pop()
    return step


def _depends_on_inputs(g: _G, v: str) -> bool:
    return g.from_inputs.get(v, False)


# --------------------------------------------------------------------------- 4: template
@dataclass
class _Match:
    """The rolled loop: template step ``m``'s nodes, the steps ``start..n-1`` it covers."""

    loop: _Loop
    bodies: list[list[int]]
    m: int
    start: int
    last_len: int  # how many template nodes the last step has
    carries: dict[tuple[int, int], tuple[int, int]]  # (template pos, input slot) -> (prev pos, output)
    inits: dict[tuple[int, int], str]  # carried (template pos, output) -> value before step ``start``
    reads: dict[int, tuple[str, int, bool, int]]  # template pos -> (X, axis, keep, direction)


def _index_of(g: _G, i: int) -> int | None:
    r = _read(g, i)
    return None if r is None else r.index


def _same_node(g: _G, ia: int, ib: int) -> bool:
    a, b = g.nodes[ia], g.nodes[ib]
    if a.op != b.op or a.types != b.types or len(a.inputs) != len(b.inputs):
        return False
    if a.op in ("select", "slice") and _read(g, ia) is not None and _read(g, ib) is not None:
        drop = ("index", "start", "stop")  # a read of the time dim: its index is checked apart
        return [kv for kv in a.attrs if kv[0] not in drop] == [kv for kv in b.attrs if kv[0] not in drop]
    return a.attrs == b.attrs


def _compare(g: _G, bodies: list[list[int]], m: int, s: int, first: bool, length: int,
             carries: dict[tuple[int, int], tuple[int, int]], inits: dict[tuple[int, int], str]) -> bool:
    """Step ``s``'s first ``length`` nodes against the template; records the carries (template)
    and, for the ``first`` rolled step, the values its carried inputs take."""
    pos_m = {i: p for p, i in enumerate(bodies[m])}
    pos_prev_m = {i: p for p, i in enumerate(bodies[m - 1])}
    pos_s = {i: p for p, i in enumerate(bodies[s])}
    pos_prev_s = {i: p for p, i in enumerate(bodies[s - 1])} if s > 0 else {}
    for p in range(length):
        tn, sn = g.nodes[bodies[m][p]], g.nodes[bodies[s][p]]
        if not _same_node(g, bodies[m][p], bodies[s][p]):
            return False
        for slot, (tv, sv) in enumerate(zip(tn.inputs, sn.inputs, strict=True)):
            if not tv or tv not in g.prod:
                if tv != sv:
                    return False
                continue
            ti, tj = g.prod[tv]
            si, sj = g.prod[sv] if sv in g.prod else (-1, -1)
            if ti in pos_m:  # from the same step
                if si not in pos_s or pos_s[si] != pos_m[ti] or sj != tj:
                    return False
            elif ti in pos_prev_m:  # carried from the previous step
                carry = (pos_prev_m[ti], tj)
                if carries.setdefault((p, slot), carry) != carry:
                    return False
                if first:
                    if si in pos_s or inits.setdefault(carry, sv) != sv:
                        return False
                elif si not in pos_prev_s or (pos_prev_s[si], sj) != carry:
                    return False
            elif g.key(tv) != g.key(sv):  # an invariant, or the time read's source
                return False
    return True


def _template(g: _G, loop: _Loop, bodies: list[list[int]]) -> _Match:
    n, m = loop.n, loop.n // 2
    size = len(bodies[m])
    if not size or any(not bodies[s] for s in range(n)):
        raise _Skip("a step has no nodes")
    carries: dict[tuple[int, int], tuple[int, int]] = {}
    for s in range(m + 1, n - 1):
        if len(bodies[s]) != size or not _compare(g, bodies, m, s, False, size, carries, {}):
            raise _Skip(f"step {s} differs from step {m}")
    # the last step: the template's leading nodes; what follows them is after the loop
    last = size
    while last and (len(bodies[n - 1]) < last or not _compare(g, bodies, m, n - 1, False, last, carries, {})):
        last -= 1
    if not last:
        raise _Skip("the last step differs")
    start = m  # walk down while steps match; the first one may take its carried values from anywhere
    for s in range(m - 1, -1, -1):
        if len(bodies[s]) != size:
            break
        if s > 0 and _compare(g, bodies, m, s, False, size, carries, {}):
            start = s
            continue
        if _compare(g, bodies, m, s, True, size, dict(carries), {}):
            start = s
        break
    if start > MAX_PEELED:
        raise _Skip(f"steps before {start} differ")
    inits = {}
    if not _compare(g, bodies, m, start, True, size, carries, inits):
        raise _Skip("the first rolled step differs")
    # every read moves one index per step, the same way
    reads: dict[int, tuple[str, int, bool, int]] = {}
    for p, i in enumerate(bodies[m]):
        r = _read(g, i)
        if r is None:
            continue
        d = 1 if loop.forward else -1
        want = [(r.index + d * (s - m)) for s in range(n)]
        got = [_index_of(g, bodies[s][p]) if p < len(bodies[s]) else None for s in range(start, n)]
        if got != want[start:] or want[n - 1 if loop.forward else 0] != n - 1:
            raise _Skip(f"read {g.nodes[i].label} does not move one step per iteration")
        reads[p] = (r.x, r.axis, r.keep, d)
    return _Match(loop, bodies, m, start, last, carries, inits, reads)


# --------------------------------------------------------------------------- 5: rewrite
class _Emit:
    """New top-level nodes with fresh names and inferred types."""

    def __init__(self, g: _G, tag: str) -> None:
        self.g, self.tag, self.count, self.nodes = g, tag, 0, []
        self.taken = set(g.types)

    def __call__(self, op: str, *inputs: str, n_out: int | None = None, **attrs: Any) -> Any:
        frozen = freeze_attrs(attrs)
        types = OPS[op].infer([self.g.types[v] if v else None for v in inputs], dict(frozen))
        names = []
        for _ in types:
            while f"{self.tag}{self.count}" in self.taken:
                self.count += 1
            names.append(f"{self.tag}{self.count}")
            self.taken.add(names[-1])
        self.nodes.append(Node(op, tuple(inputs), tuple(names), tuple(types), frozen))
        self.g.types.update(zip(names, types, strict=True))
        return names[0] if len(names) == 1 else tuple(names)


def _static(shape: tuple[Any, ...]) -> bool:
    return all(isinstance(d, int) for d in shape)


def _batch_axis(t: TensorType, what: str) -> int:
    """Where a per-step value keeps the batch; its other dims must be fixed."""
    found = [k for k, d in enumerate(t.shape) if d == BATCH]
    if len(found) != 1 or not _static(_rest(t, found[0])):
        raise _Skip(f"{what} is {t.text()}, not a batch and fixed sizes")
    return found[0]


def _rest(t: TensorType, bp: int) -> tuple[Any, ...]:
    return tuple(d for k, d in enumerate(t.shape) if k != bp)


def _per_step_layout(t: TensorType, what: str) -> tuple[int, ...]:
    """The shape after the batch of a per-step value ``[B, ...]``."""
    if not t.shape or t.shape[0] != BATCH or not _static(t.shape[1:]):
        raise _Skip(f"{what} is {t.text()}, not [B, fixed sizes...]")
    return tuple(t.shape[1:])


def _numel(shape: Iterable[int]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _rewrite(g: _G, mt: _Match, weights: dict[str, torch.Tensor], tag: str) -> tuple[Graph, dict[str, torch.Tensor]]:
    loop, bodies, m, start, n = mt.loop, mt.bodies, mt.m, mt.start, mt.loop.n
    tmpl = bodies[m]
    pos_of = [{i: p for p, i in enumerate(bodies[s][:len(tmpl) if s < n - 1 else mt.last_len])} for s in range(n)]
    last_nodes = set(bodies[n - 1][:mt.last_len])
    rolled = {i for s in range(start, n - 1) for i in bodies[s]} | last_nodes
    # values each step computes, by (template pos, output)
    def value_at(s: int, pos: int, out: int) -> str:
        return g.nodes[bodies[s][pos]].outputs[out]

    # ---------------------------------------------------------------- uses after the loop
    collects: list[tuple[int, tuple[int, int], bool]] = []  # (node, (pos, out), stacked)
    finals: dict[tuple[int, int], list[int]] = {}  # (pos, out) -> users outside the loop
    for i, node in enumerate(g.nodes):
        if i in rolled:
            continue
        from_loop = [v for v in node.inputs if v in g.prod and g.prod[v][0] in rolled]
        if not from_loop:
            continue
        if node.op in ("stack", "concat") and len(node.inputs) == n:
            index_steps = list(range(n)) if loop.forward else list(range(n - 1, -1, -1))
            found = {(pos_of[s].get(g.prod[v][0], -1), g.prod[v][1]) if v in g.prod else None
                     for v, s in zip(node.inputs, index_steps, strict=True) if s >= start}
            if len(found) == 1 and None not in found and (-1, 0) not in found:
                where = found.pop()
                ok = all(node.inputs[k] == value_at(s, *where) for k, s in enumerate(index_steps) if s >= start)
                if ok:
                    collects.append((i, where, node.op == "stack"))
                    continue
        for v in from_loop:
            pi = g.prod[v][0]
            if pi not in last_nodes:
                raise _Skip(f"{node.label} reads a value of an earlier step")
            finals.setdefault((pos_of[n - 1][pi], g.prod[v][1]), []).append(i)
    for v in g.outputs:
        if v in g.prod and g.prod[v][0] in rolled:
            pi = g.prod[v][0]
            if pi not in last_nodes:
                raise _Skip("a graph output is a value of an earlier step")
            finals.setdefault((pos_of[n - 1][pi], g.prod[v][1]), [])

    # ---------------------------------------------------------------- the step graph
    b = GraphBuilder(f"{g.graph.name}_scan{tag}")
    emit = _Emit(g, f"{tag}_")
    carried = sorted(set(mt.carries.values()) | set(finals))
    out_types = {key: g.types[g.nodes[tmpl[key[0]]].outputs[key[1]]] for key in carried}
    # per-step inputs packed into x: one slot per distinct read
    slots: dict[tuple[str, int, bool, int], int] = {}
    for key in mt.reads.values():
        slots.setdefault(key, len(slots))
    if not slots:
        raise _Skip("no per-step input")
    slot_layout = []
    for x, ax, keep, _d in slots:
        xt = g.types[x]
        rest = [k for k in range(xt.rank) if k != ax]
        bpos = [k for k in rest if xt.shape[k] == BATCH]
        if len(bpos) != 1 or not _static(tuple(xt.shape[k] for k in rest if k != bpos[0])):
            raise _Skip(f"read source {xt.text()} has no batch dim or a symbolic feature dim")
        slot_layout.append((bpos[0], rest, tuple(xt.shape[k] for k in rest if k != bpos[0]), keep))
    dtypes = {g.types[x].dtype for x, *_ in slots}
    if len(dtypes) != 1:
        raise _Skip("per-step inputs of several dtypes")
    if len({g.types[x].shape[ax] for x, ax, *_ in slots}) != 1:
        raise _Skip("the loop reads sequences of different symbolic lengths")
    dtype = dtypes.pop()
    widths = [_numel(lay[2]) for lay in slot_layout]
    xin = b.input("x", (BATCH, sum(widths)), dtype)
    parts = b.op("split", xin, axis=1, sizes=tuple(widths)) if len(widths) > 1 else (xin,)
    parts = parts if isinstance(parts, tuple) else (parts,)
    slot_values = []
    for part, (bpos, rest, feat, keep) in zip(parts, slot_layout, strict=True):
        v = b.op("reshape", part, shape=(0, *feat))
        order = [bpos, *[k for k in rest if k != bpos]]  # v's dims, in the source's numbering
        perm = tuple(order.index(k) for k in rest)
        if perm != tuple(range(len(perm))):
            v = b.op("transpose", v, perm=perm)
        if keep:
            v = b.op("unsqueeze", v, axis=list(slots)[len(slot_values)][1])
        slot_values.append(v)
    state_in: dict[tuple[int, int], Any] = {}
    specs: list[StateSpec] = []
    for k, key in enumerate(carried):
        shape = _per_step_layout(out_types[key], "a carried value")
        state_in[key] = b.input(f"s{k}", (BATCH, *shape), out_types[key].dtype)
        specs.append(StateSpec(f"s{k}", shape, out_types[key].dtype))
    inits: list[str] = [mt.inits.get(key, "") for key in carried]
    dummy = None
    if not carried:  # a per-step map carries nothing; the rnn op wants a state: one of zeros
        dummy = b.input("s0", (BATCH, 1), dtype)
        specs.append(StateSpec("s0", (1,), dtype))
        inits.append("")
    # invariants: constants copied, weight-only values folded into weights, batch-carrying inputs
    # passed through as states
    new_weights: dict[str, torch.Tensor] = {}
    ext: dict[str, Any] = {}
    through: list[tuple[Any, str]] = []
    params: list[tuple[str, Any]] = []  # (top-level value, step param)
    param_names = g.params

    def external(v: str) -> Any:
        if v in ext:
            return ext[v]
        t = g.types[v]
        if v in g.prod and g.nodes[g.prod[v][0]].op == "const":
            node = g.nodes[g.prod[v][0]]
            ext[v] = b.op("const", **dict(node.attrs))
        elif v in param_names or not _depends_on_inputs(g, v):
            top = v
            if v not in param_names:
                top = f"{tag}.w{len(new_weights)}"
                new_weights[top] = _evaluate(g, v, weights)
                g.types[top] = t
            ext[v] = b.param(f"w{len(params)}", t.shape, t.dtype)
            params.append((top, ext[v]))
        elif t.shape and t.shape[0] == BATCH and _static(t.shape[1:]):
            name = f"s{len(specs)}"
            ext[v] = b.input(name, t.shape, t.dtype)
            specs.append(StateSpec(name, tuple(t.shape[1:]), t.dtype))
            through.append((ext[v], v))
        else:
            raise _Skip(f"the loop reads {v}: {t.text()}, computed from the inputs, whose sizes besides a leading "
                        "batch are not all fixed (a state cannot hold it)")
        return ext[v]

    local: dict[tuple[int, int], Any] = {}
    for p, i in enumerate(tmpl):
        node = g.nodes[i]
        if p in mt.reads:
            local[(p, 0)] = slot_values[slots[mt.reads[p]]]
            continue
        args = []
        for slot, v in enumerate(node.inputs):
            if not v:
                args.append(None)
            elif v in g.prod and g.prod[v][0] in pos_of[m]:
                args.append(local[(pos_of[m][g.prod[v][0]], g.prod[v][1])])
            elif (p, slot) in mt.carries:
                args.append(state_in[mt.carries[(p, slot)]])
            else:
                args.append(external(v))
        outs = b.op(node.op, *args, **dict(node.attrs))
        for j, o in enumerate(outs if isinstance(outs, tuple) else (outs,)):
            local[(p, j)] = o
    # y: the per-step values the loop collects (or, if it collects none, its first state)
    y_keys = list(dict.fromkeys(w for _, w, _ in collects))
    if not y_keys:
        if not carried:
            raise _Skip("the loop has neither per-step outputs nor a final value")
        y_keys = [carried[0]]
    # each collected value flattened batch first: ``[B, F]``
    y_types = {key: out_types.get(key) or g.types[value_at(m, *key)] for key in y_keys}
    y_batch = {key: _batch_axis(t, "a per-step output") for key, t in y_types.items()}
    flat = []
    for key in y_keys:
        v, t, bp = local[key], y_types[key], y_batch[key]
        if bp:
            v = b.op("transpose", v, perm=(bp, *[k for k in range(t.rank) if k != bp]))
        flat.append(v if t.rank == 2 else b.op("reshape", v, shape=(0, _numel(_rest(t, bp)))))
    y = flat[0] if len(flat) == 1 else b.op("concat", *flat, axis=1)
    outputs = [("y", y)]
    for k, key in enumerate(carried):
        outputs.append((f"s{k}", local[key]))
    if dummy is not None:
        outputs.append(("s0", dummy))
    for v, _top in through:
        outputs.append((v.name, v))
    step = b.build(outputs)
    feat_y = [_numel(_rest(y_types[key], y_batch[key])) for key in y_keys]
    cell = Cell(f"scan:{g.graph.name}", "nonlinear", sum(widths), specs[0].shape[-1] if specs[0].shape else 1,
                sum(feat_y), tuple(specs), step)

    # ---------------------------------------------------------------- the top level
    xs = []
    for (x, ax, _keep, d), (bpos, rest, feat, _k) in zip(slots, slot_layout, strict=True):
        v = emit("flip", x, axis=ax) if d < 0 else x  # in scan order
        order = [bpos, ax, *[k for k in rest if k != bpos]]
        if tuple(order) != tuple(range(len(order))):
            v = emit("transpose", v, perm=tuple(order))
        xs.append(emit("reshape", v, shape=(0, 0, _numel(feat))))
    xcat = xs[0] if len(xs) == 1 else emit("concat", *xs, axis=2)  # [B, T, I]
    lengths = ""
    if start:
        # the steps after the first, as a sequence of T steps whose last one is masked off by
        # lengths T - 1: so T = 1 runs no step, and no backend sees an empty sequence
        xcat = emit("concat", emit("slice", xcat, axis=1, start=1, stop=_END, step=1),
                    emit("slice", xcat, axis=1, start=0, stop=1, step=1), axis=1)
        ones = emit("full_dyn", xcat, shape=([0, 0], ["-", [0, 1], 1]), value=1, dtype="int64")
        lengths = emit("sum", ones, axes=(1,), keepdim=False)
    state_inits = [*inits, *(top for _v, top in through)]
    state_vals = [emit("unsqueeze", s, axis=0) if s else "" for s in state_inits]
    rnn_out = emit("rnn", xcat, lengths, *state_vals, *[top for top, _ in params], cells=(cell,), num_layers=1,
                   bidirectional=False, batch_first=True)
    y_top, final_tops = rnn_out[0], rnn_out[1:]
    if start:
        y_top = emit("slice", y_top, axis=1, start=0, stop=-1, step=1)  # the masked last step
    rename: dict[str, str] = {}
    for k, key in enumerate(carried):
        if key in finals:
            rename[value_at(n - 1, *key)] = emit("select", final_tops[k], axis=0, index=0)
    if collects:
        ytm = emit("transpose", y_top, perm=(1, 0, 2))  # [T', B, F]
        if not loop.forward:
            ytm = emit("flip", ytm, axis=0)
        pieces = emit("split", ytm, axis=2, sizes=tuple(feat_y)) if len(feat_y) > 1 else (ytm,)
        pieces = pieces if isinstance(pieces, tuple) else (pieces,)
        by_key = dict(zip(y_keys, pieces, strict=True))
        for ci, key, stacked in collects:
            node = g.nodes[ci]
            t, bp = y_types[key], y_batch[key]
            ax = node.attr("axis") % len(g.types[node.outputs[0]].shape)
            if not stacked and (ax == bp or t.shape[ax] != 1):
                raise _Skip("a concatenation of per-step values that are not size 1 on its axis")
            # dims labelled by their per-step axis: the rnn gives [T, batch, the others in order]
            others = [k for k in range(t.rank) if k != bp and (stacked or k != ax)]
            v = emit("reshape", by_key[key], shape=(0, 0, *(t.shape[k] for k in others)))
            have = ["T", bp, *others]
            want: list[Any] = list(range(t.rank))
            if stacked:
                want.insert(ax, "T")
            else:
                want[ax] = "T"
            perm = tuple(have.index(d) for d in want)
            if perm != tuple(range(len(perm))):
                v = emit("transpose", v, perm=perm)
            peeled = [node.inputs[k] for k, s in enumerate(range(n) if loop.forward else range(n - 1, -1, -1))
                      if s < start]
            if peeled:
                head = emit("stack", *peeled, axis=ax) if stacked else \
                    (emit("concat", *peeled, axis=ax) if len(peeled) > 1 else peeled[0])
                v = emit("concat", head, v, axis=ax) if loop.forward else emit("concat", v, head, axis=ax)
            rename[node.outputs[0]] = v
    dead = rolled | {ci for ci, _, _ in collects}
    return _assemble(g, emit.nodes, dead, rename, new_weights), new_weights


def _evaluate(g: _G, v: str, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """The value of ``v``, which depends on weights and constants only."""
    from rnnc.ir.interp import run_nodes

    seen: set[int] = set()
    todo = [v]
    while todo:
        x = todo.pop()
        if x in g.prod and g.prod[x][0] not in seen:
            seen.add(g.prod[x][0])
            todo.extend(y for y in g.nodes[g.prod[x][0]].inputs if y)
    values: dict[str, Any] = dict(weights)
    with torch.no_grad():
        run_nodes([g.nodes[i] for i in sorted(seen)], values)  # node order is dependency order
    return values[v].detach().clone()


def _assemble(g: _G, added: list[Node], dead: set[int], rename: dict[str, str],
              new_weights: dict[str, torch.Tensor]) -> Graph:
    """The graph without the rolled nodes, with ``added``, uses renamed, in dependency order."""
    def fix(v: str) -> str:
        return rename.get(v, v)

    kept = [Node(nd.op, tuple(fix(v) for v in nd.inputs), nd.outputs, nd.types, nd.attrs)
            for i, nd in enumerate(g.nodes) if i not in dead]
    pool = kept + added
    made = {v: k for k, nd in enumerate(pool) for v in nd.outputs}
    order: list[Node] = []
    done: set[int] = set()
    for root in range(len(pool)):  # depth first, producers before users (no recursion)
        stack = [(root, False)]
        while stack:
            k, ready = stack.pop()
            if ready:
                order.append(pool[k])
                continue
            if k in done:
                continue
            done.add(k)
            stack.append((k, True))
            stack.extend((made[v], False) for v in reversed(pool[k].inputs) if v in made and made[v] not in done)
    outputs = tuple((name, fix(v)) for name, v in g.graph.outputs)
    # drop what nothing reads any more (the unrolled loop's prologue and invariants)
    live = {v for _, v in outputs}
    final: list[Node] = []
    for nd in reversed(order):
        if any(o in live for o in nd.outputs):
            final.append(nd)
            live.update(v for v in nd.inputs if v)
    params = g.graph.params + tuple((k, TensorType(tuple(t.shape), _dtype(t))) for k, t in new_weights.items())
    return Graph(g.graph.name, g.graph.inputs, params, tuple(reversed(final)), outputs)


def _dtype(t: torch.Tensor) -> str:
    from rnnc.ir.types import dtype_of_torch

    return dtype_of_torch(t.dtype)


def roll_loops(graph: Graph, weights: dict[str, torch.Tensor], sizes: dict[str, int]
               ) -> tuple[Graph, dict[str, torch.Tensor], list[str]]:
    """Roll every loop over a symbolic dim that fits (module docstring); returns the graph, the
    weights (with folded invariants added) and why the loops that were found did not roll.
    ``sizes``: each symbolic dim's size in the example the graph was traced at."""
    weights = dict(weights)
    why: list[str] = []
    tried: set[frozenset[int]] = set()
    count = 0
    while True:
        g = _G(graph)
        progress = False
        loops, free = _find_loops(g, sizes)
        for loop in loops:
            sig = frozenset(g.nodes[r].outputs[0] for reads in loop.chains for r in reads if r is not None)
            if sig in tried:
                continue
            tried.add(sig)
            try:
                loop, bodies = _steps(g, loop, free)
                match = _template(g, loop, bodies)
                graph, added = _rewrite(g, match, weights, f"scan{count}")
            except Exception as exc:  # noqa: BLE001 -- a loop that does not roll stays unrolled, as traced
                first = next(r for reads in loop.chains for r in reads if r is not None)
                said = str(exc) if isinstance(exc, _Skip) else f"{type(exc).__name__}: {exc}"
                why.append(f"the {loop.n}-step loop reading {g.nodes[first].label}: {said}")
                continue
            weights.update(added)
            count += 1
            progress = True
            break
        if not progress:
            return graph, weights, why
