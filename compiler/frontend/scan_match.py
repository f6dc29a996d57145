"""Find the loops over time in an unrolled trace and match their steps (``scan.py`` rolls them).

Steps 1-4 of ``scan.py``'s description: the time reads, the carry chains and loops (and per-step
maps), each node's step, and the template every step is matched against; then how the graph after
a matched loop reads it (``uses_after``: its collections and final values).  Pure analysis of one
IR graph: it builds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rnnc.ir import Graph, Node, symdims
from rnnc.ir.types import TensorType

#: the batch symbol the frontend gives the batch dim (``dims.py``): states keep it first
BATCH = "B"
#: at most this many first steps may differ from the rest and stay unrolled (one: a Program
#: with k steps written apart would need T >= k, where the model runs at any length)
MAX_PEELED = 1


#: the step counts a clocked loop may run, ``k * T + c`` for (k, c) (``clocked``): never fewer
#: than T (``range(T - 1)`` would run no step at T = 1, which no rnn backend takes)
CLOCK_SCALES = ((1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (4, 0))


class Skip(Exception):
    """This loop does not roll (the reason is kept for debugging, the loop stays unrolled)."""


@dataclass
class Indexed:
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

    def cone(self, nodes: Iterable[int | None]) -> int:
        """Bitmask of ``nodes`` (None: no node) and everything that depends on them."""
        mask = 0
        for i in nodes:
            if i is not None:
                mask |= self.desc[i] | (1 << i)
        return mask

    @property
    def read_derived(self) -> list[bool]:
        """Per node: a time read, or computed from reads and values that depend on no input."""
        if self._pure is None:
            pure: list[bool] = []
            for i, n in enumerate(self.nodes):
                pure.append(read(self, i) is not None or all(
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
class Read:
    node: int
    x: str
    axis: int
    index: int
    keep: bool  # slice(k, k + 1) keeps the axis; select drops it


def read(g: Indexed, i: int) -> Read | None:
    n = g.nodes[i]
    if n.op not in ("select", "slice") or not n.inputs or n.inputs[0] not in g.types:
        return None
    xt = g.types[n.inputs[0]]
    ax = n.attr("axis") % xt.rank
    if not isinstance(xt.shape[ax], str):
        return None
    if n.op == "select":
        k = n.attr("index")
        return Read(i, n.inputs[0], ax, k, False) if k >= 0 else None
    k = n.attr("start")
    if n.attr("step") == 1 and k >= 0 and n.attr("stop") == k + 1:
        return Read(i, n.inputs[0], ax, k, True)
    return None


def _meet(g: Indexed, a: Iterable[int | None], b: Iterable[int | None], later: Iterable[int | None]) -> bool:
    """Whether some node depends on a read in ``a`` and one in ``b`` but on none in ``later``."""
    return bool(g.cone(a) & g.cone(b) & ~g.cone(later))


@dataclass
class Loop:
    n: int
    forward: bool
    chains: list[list[int | None]]  # read node per scan step (None: not read), one list per chain
    #: (X, axis) -> the stop of the prefix of X the loop runs over, where it stops short of X's end
    #: (``symdims.prefix_stop``: ``range(T)`` over the ``T+1`` frames of ``cat([go, targets])``)
    stops: dict[tuple[str, int], int] = field(default_factory=dict)
    #: a loop that reads no X (``for _ in range(T)``, a pointer network feeding back its own
    #: choice): an (input, axis) of length T, and (k, c): the rolled rnn runs ``k * T + c`` steps
    #: (a greedy decoder's ``range(src.size(1) * 2)``) (``clocked``)
    clock: tuple[str, int, int, int] | None = None


def find_loops(g: Indexed, sizes: dict[str, int]) -> tuple[list[Loop], list[list[int | None]]]:
    """The loops, and the reads (by index) of the Xs that feed no carry: a loop claims those
    whose reads its steps use (``steps``).  ``sizes``: the example's size of each symbolic dim;
    only a loop over every step of its dim is one (``for k in range(4)`` on a length-9 input is
    a fixed prologue, and rolling it over T would be wrong)."""
    by_key: dict[tuple[str, int, bool], dict[int, list[int]]] = {}
    for i in range(len(g.nodes)):
        r = read(g, i)
        if r is not None:
            by_key.setdefault((r.x, r.axis, r.keep), {}).setdefault(r.index, []).append(i)
    chains: list[tuple[int, bool, list[int | None]]] = []
    free: list[list[int | None]] = []
    stops: dict[tuple[str, int], int] = {}
    for (x, axis, _keep), by_index in by_key.items():
        n = max(by_index) + 1
        dim = g.types[x].shape[axis]
        size = symdims.evaluate(dim, sizes)
        if size is None or size < n:
            continue
        if size > n:  # a loop over a prefix: only one ending a fixed distance before X's end
            stop = symdims.prefix_stop(dim, n, size, near_end=1)  # (``scan._top_level`` masks an empty one)
            if stop >= 0:
                continue
            stops[x, axis] = stop
        m = n // 2
        copies = len(by_index.get(m, []))
        # a step may not read X at all (``forgets[0]`` unused when the first step has no carry),
        # and a step may be read more often than the loops do (``zeros_like(x[:, 0])`` before
        # them): the last reads of each step are the loops'
        # (the first and last steps may read X less: a read whose value a zero initial state
        # made unused is gone once another loop's rolling dropped dead nodes)
        if n < 3 or any(0 < len(by_index.get(k, [])) < copies for k in range(1, n - 1)) or any(
                len(by_index.get(k, [])) != copies for k in (m - 1, m + 1)):
            continue
        for c in range(copies):  # copy c of every index: the c-th loop over X in graph order
            reads = [by_index[k][len(by_index[k]) - copies + c] if len(by_index.get(k, [])) > copies - 1 - c
                     else None for k in range(n)]
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
    loops: dict[int, Loop] = {}
    for i, (n, f, reads) in enumerate(chains):
        loops.setdefault(root(i), Loop(n, f, [], stops)).chains.append(reads)
    found = [*loops.values(), *_maps(g, free, stops)]
    return [*found, *clocked(g, sizes, by_key)], free


def clocked(g: Indexed, sizes: dict[str, int], by_key: dict[Any, dict[int, list[int]]]) -> list[Loop]:
    """Loops that read no step of any X: the step's work repeats once per step of a symbolic
    length, each copy computed from the one before (a one-step cell call fed back its own
    output).  Such a loop is found by its *clock*: the first node, in graph order, whose op,
    attributes and types occur exactly as often as a symbol's example size (3 or more), each
    occurrence depending on the one before and on no time read; the occurrences play the part of
    the reads (a step then runs from one occurrence to the next, its work before the first
    occurrence a prologue).  Tried after every loop that reads X; a wrong guess is caught by the
    trace's check at other sizes (``api._trace_auto`` then builds without rolling).  A loop may
    run a multiple of a length, give or take a step (``range(2 * T)``, ``range(T + 1)``:
    ``CLOCK_SCALES``); an input's own length is tried first."""
    lengths: dict[int, tuple[str, int, int, int]] = {}
    named: dict[int, set[tuple[str, int, int]]] = {}
    for k, c in CLOCK_SCALES:
        for name, t in g.graph.inputs:  # the first input dim of each symbolic size: the loop's length
            for ax, d in enumerate(t.shape):
                if isinstance(d, str) and d != BATCH and sizes.get(d, 0) >= 3 and symdims.symbols(d) == {d}:
                    n = k * sizes[d] + c
                    lengths.setdefault(n, (name, ax, k, c))
                    named.setdefault(n, set()).add((d, k, c))
    for n, syms in named.items():  # two lengths of one example size: whose the loop runs is unknown
        own = {d for d, k, c in syms if (k, c) == (1, 0)}  # (an input's own length before a multiple)
        if len(own) > 1 or (not own and len(syms) > 1):
            del lengths[n]
    if not lengths:
        return []
    read_nodes = [i for by_index in by_key.values() if len(by_index) >= 3 for reads in by_index.values() for i in reads]
    after_reads = g.cone(read_nodes)
    places: dict[Any, list[int]] = {}
    for i, nd in enumerate(g.nodes):
        if nd.op not in ("const", "select", "slice") and not after_reads >> i & 1:
            places.setdefault((nd.op, nd.attrs, nd.types), []).append(i)
    out: dict[int, Loop] = {}  # the first clock of each length
    for occ in places.values():
        n = len(occ)
        if n in lengths and n not in out and all(g.desc[a] >> b & 1 for a, b in zip(occ, occ[1:], strict=False)):
            out[n] = Loop(n, True, [list(occ)], {}, lengths[n])
    return list(out.values())


def _maps(g: Indexed, free: list[list[int | None]], stops: dict[tuple[str, int], int]) -> list[Loop]:
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
    return [Loop(len(group[0]), True, group, stops) for group in groups]


# --------------------------------------------------------------------------- 3: steps
def steps(g: Indexed, loop: Loop, free: list[list[int | None]], late: bool = False
          ) -> tuple[Loop, list[list[int]]]:
    """The nodes of each scan step, in graph order.  A read that feeds no carry (SRU's ``r_in[t]``)
    joins the step of the nodes it feeds; the reads of that X then count as the loop's too, so a
    node combining ``r_in[t]`` with the carry from step t - 1 lands in step t.

    ``late``: a node whose users are all in the next step joins that step.  Why: a node that reads
    only the previous step's values (``W_c(coverage.view(-1, 1))`` at the top of an attention
    step) belongs, by its reads, to that previous step, and what crosses the step boundary is then
    its result -- ``[B*T, 32]`` with the batch folded in, which no state can hold -- instead of
    the ``[B, T]`` coverage it was computed from.  Tried when the first assignment does not roll."""
    step = _assign(g, loop)
    m = loop.n // 2
    natural = m if loop.forward else loop.n - 1 - m  # the scan step reading index m
    own = {r for reads in loop.chains for r in reads}
    claimed = [reads for reads in free if len(reads) == loop.n and reads[m] is not None and reads[m] not in own
               and step[reads[m]] in (natural, natural - 1)]
    if claimed:
        loop = Loop(loop.n, loop.forward, [*loop.chains, *(r if loop.forward else r[::-1] for r in claimed)],
                    loop.stops)
        step = _assign(g, loop)
    bodies: list[list[int]] = [[] for _ in range(loop.n)]
    for i, s in enumerate(step):
        if s >= 0:
            bodies[s].append(i)
    if late:
        bodies = _late(g, loop, bodies)
    return loop, bodies


def _late(g: Indexed, loop: Loop, bodies: list[list[int]]) -> list[list[int]]:
    """``bodies`` with the nodes computed for the next step moved into it (``steps``, ``late``).
    Decided once, on the middle step's positions, so every step moves the same nodes.  Moving a
    set of nodes one step on keeps every edge among them; it stays legal when no node that stays
    reads a moved one in the same step, and no moved node reads a staying one of the step before
    (it would read two steps back): the largest such set of the nodes read only in this step or
    the next (the coverage vector and what the next step computes from it move together; the
    step's reads, and what is collected after the loop, stay)."""
    m = loop.n // 2
    if not 0 < m < loop.n - 1:
        return bodies
    reads = {r for chain in loop.chains for r in chain if r is not None}
    prev = {i: p for p, i in enumerate(bodies[m - 1])}
    here = {i: p for p, i in enumerate(bodies[m])}
    nxt = set(bodies[m + 1])
    moving = {p for p, i in enumerate(bodies[m]) if i not in reads and g.users[i]
              and not any(v in g.outputs for v in g.nodes[i].outputs)
              and all(u in here or u in nxt for u in g.users[i])}
    while True:
        keep = set()
        for p in moving:
            i = bodies[m][p]
            ins = [g.prod[v][0] for v in g.nodes[i].inputs if v in g.prod]
            if all(here[u] in moving for u in g.users[i] if u in here) and all(
                    prev[j] in moving for j in ins if j in prev):
                keep.add(p)
        if keep == moving:
            break
        moving = keep
    if not moving:
        return bodies
    out: list[list[int]] = [[] for _ in bodies]
    for s, body in enumerate(bodies):
        for p, i in enumerate(body):
            if not (p in moving and p < len(bodies[m]) and g.nodes[i].op == g.nodes[bodies[m][p]].op):
                out[s].append(i)
            elif s + 1 < loop.n:
                out[s + 1].append(i)
            # (the last step's: for a step that never comes; after the loop, if anything reads them)
    return [sorted(body) for body in out]


def _assign(g: Indexed, loop: Loop) -> list[int]:
    """Each node's scan step (-1: outside the loop)."""
    step = [-1] * len(g.nodes)
    for s in range(loop.n):
        mask = g.cone(reads[s] for reads in loop.chains)
        for i, bit in enumerate(bin(mask)[:1:-1]):  # later steps overwrite: the last one wins
            if bit == "1":
                step[i] = s
    # a step reads its own values and the previous step's only: a node that also reads an older
    # step's (the stack collecting every step's attention weights, computed one step behind the
    # reads) is after the loop, not in the step its latest input came from; so is a node that
    # reads such a node (the collected values placed into a preallocated buffer, ``writes.py``)
    after: set[int] = set()
    for i, node in enumerate(g.nodes):
        s = step[i]
        src = [g.prod[v][0] for v in node.inputs if v in g.prod]
        if s > 1 and any(0 <= step[j] < s - 1 for j in src) or s >= 0 and any(j in after for j in src):
            step[i] = -1
            after.add(i)
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


def depends_on_inputs(g: Indexed, v: str) -> bool:
    return g.from_inputs.get(v, False)


# --------------------------------------------------------------------------- 4: template
@dataclass
class Match:
    """The rolled loop: template step ``m``'s nodes, the steps ``start..n-1`` it covers."""

    loop: Loop
    bodies: list[list[int]]
    m: int
    start: int
    last_len: int  # how many template nodes the last step has
    carries: dict[tuple[int, int], tuple[int, int]]  # (template pos, input slot) -> (prev pos, output)
    inits: dict[tuple[int, int], str]  # carried (template pos, output) -> value before step ``start``
    reads: dict[int, tuple[str, int, bool, int]]  # template pos -> (X, axis, keep, direction)


def _index_of(g: Indexed, i: int) -> int | None:
    r = read(g, i)
    return None if r is None else r.index


def same_node(g: Indexed, ia: int, ib: int) -> bool:
    a, b = g.nodes[ia], g.nodes[ib]
    if a.op != b.op or a.types != b.types or len(a.inputs) != len(b.inputs):
        return False
    if a.op in ("select", "slice") and read(g, ia) is not None and read(g, ib) is not None:
        drop = ("index", "start", "stop")  # a read of the time dim: its index is checked apart
        return [kv for kv in a.attrs if kv[0] not in drop] == [kv for kv in b.attrs if kv[0] not in drop]
    return a.attrs == b.attrs


def _compare(g: Indexed, bodies: list[list[int]], m: int, s: int, first: bool, length: int,
             carries: dict[tuple[int, int], tuple[int, int]], inits: dict[tuple[int, int], str]) -> bool:
    """Step ``s``'s first ``length`` nodes against the template; records the carries (template)
    and, for the ``first`` rolled step, the values its carried inputs take."""
    pos_m = {i: p for p, i in enumerate(bodies[m])}
    pos_prev_m = {i: p for p, i in enumerate(bodies[m - 1])}
    pos_s = {i: p for p, i in enumerate(bodies[s])}
    pos_prev_s = {i: p for p, i in enumerate(bodies[s - 1])} if s > 0 else {}
    for p in range(length):
        tn, sn = g.nodes[bodies[m][p]], g.nodes[bodies[s][p]]
        if not same_node(g, bodies[m][p], bodies[s][p]):
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


def template(g: Indexed, loop: Loop, bodies: list[list[int]]) -> Match:
    n, m = loop.n, loop.n // 2
    size = len(bodies[m])
    # the first step may do nothing (``for t in range(1, T)``: the loop starts one step in)
    if not size or any(not bodies[s] for s in range(1, n)):
        raise Skip("a step has no nodes")
    carries: dict[tuple[int, int], tuple[int, int]] = {}
    for s in range(m + 1, n - 1):
        if len(bodies[s]) != size or not _compare(g, bodies, m, s, False, size, carries, {}):
            raise Skip(f"step {s} differs from step {m}")
    # the last step: the template's leading nodes; what follows them is after the loop
    last = size
    while last and (len(bodies[n - 1]) < last or not _compare(g, bodies, m, n - 1, False, last, carries, {})):
        last -= 1
    if not last:
        raise Skip("the last step differs")
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
        raise Skip(f"steps before {start} differ")
    inits = {}
    if not _compare(g, bodies, m, start, True, size, carries, inits):
        raise Skip("the first rolled step differs")
    # every read moves one index per step, the same way
    reads: dict[int, tuple[str, int, bool, int]] = {}
    for p, i in enumerate(bodies[m]):
        r = read(g, i)
        if r is None:
            continue
        d = 1 if loop.forward else -1
        want = [(r.index + d * (s - m)) for s in range(n)]
        got = [_index_of(g, bodies[s][p]) if p < len(bodies[s]) else None for s in range(start, n)]
        if got != want[start:] or want[n - 1 if loop.forward else 0] != n - 1:
            raise Skip(f"read {g.nodes[i].label} does not move one step per iteration")
        reads[p] = (r.x, r.axis, r.keep, d)
    return Match(loop, bodies, m, start, last, carries, inits, reads)


# --------------------------------------------------------------------------- 5: uses after the loop
#: a template value: (position in the step, output index)
Key = tuple[int, int]


def value_at(g: Indexed, mt: Match, s: int, key: Key) -> str:
    """The value step ``s`` computes at template position ``key``."""
    return g.nodes[mt.bodies[s][key[0]]].outputs[key[1]]


@dataclass
class Uses:
    """How the graph after the loop reads it: ``stack``/``cat`` nodes of one value per step
    (node, template value, stacked) and the last step's values it reads (template value -> users)."""

    collects: list[tuple[int, Key, bool, int, int]]  # ..., and the scan steps collected: first, last
    finals: dict[Key, list[int]]


def uses_after(g: Indexed, mt: Match, pos_of: list[dict[int, int]], rolled: set[int], last: set[int]) -> Uses:
    n = mt.loop.n
    index_steps = list(range(n)) if mt.loop.forward else list(range(n - 1, -1, -1))
    step_of = {i: s for s in range(n) for i in pos_of[s] if i in rolled}
    uses = Uses([], {})
    for i, node in enumerate(g.nodes):
        if i in rolled:
            continue
        from_loop = [v for v in node.inputs if v in g.prod and g.prod[v][0] in rolled]
        if not from_loop:
            continue
        if node.op in ("stack", "concat") and len(node.inputs) == n:
            found = {(pos_of[s].get(g.prod[v][0], -1), g.prod[v][1]) if v in g.prod else None
                     for v, s in zip(node.inputs, index_steps, strict=True) if s >= mt.start}
            if len(found) == 1 and None not in found:
                (key,) = found
                if key is not None and key[0] >= 0 and all(
                        node.inputs[k] == value_at(g, mt, s, key) for k, s in enumerate(index_steps) if s >= mt.start):
                    uses.collects.append((i, key, node.op == "stack", mt.start, n - 1))
                    continue
        shifted = shifted_collect(g, mt, node, step_of) if node.op in ("stack", "concat") and mt.loop.forward \
            else None
        if shifted is not None:
            uses.collects.append((i, shifted[0], node.op == "stack", *shifted[1:]))
            continue
        for v in from_loop:
            if g.prod[v][0] not in last:
                raise Skip(f"{node.label} reads a value of an earlier step")
            uses.finals.setdefault((pos_of[n - 1][g.prod[v][0]], g.prod[v][1]), []).append(i)
    for v in g.outputs:
        if v in g.prod and g.prod[v][0] in rolled:
            if g.prod[v][0] not in last:
                raise Skip("a graph output is a value of an earlier step")
            uses.finals.setdefault((pos_of[n - 1][g.prod[v][0]], g.prod[v][1]), [])
    return uses


def shifted_collect(g: Indexed, mt: Match, node: Node, step_of: dict[int, int]) -> tuple[Key, int, int] | None:
    """A forward loop's ``stack``/``cat`` whose per-step values run one step off the reads: values
    computed before the loop, then one template value per scan step ``first..last`` up to the end
    (attention weights computed from the state before the step's cell call; a loop from
    ``t = 1`` whose step 0 is its initial value).  (template value, first, last), or None."""
    ins = node.inputs
    k0 = next((k for k, v in enumerate(ins) if v in g.prod and g.prod[v][0] in step_of), None)
    if k0 is None:
        return None
    first = step_of[g.prod[ins[k0]][0]]
    last = first + len(ins) - 1 - k0
    if first < mt.start or last not in (mt.loop.n - 1, mt.loop.n - 2):
        return None
    key = (mt.bodies[first].index(g.prod[ins[k0]][0]), g.prod[ins[k0]][1])
    if key[0] >= mt.last_len and last == mt.loop.n - 1:
        return None
    for k in range(k0, len(ins)):
        s = first + k - k0
        if key[0] >= len(mt.bodies[s]) or ins[k] != value_at(g, mt, s, key):
            return None
    return key, first, last
