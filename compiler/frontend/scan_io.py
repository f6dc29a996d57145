"""What a rolled loop reads and gives back at the top level (``scan.py`` builds the cell).

The per-step inputs (``step_inputs``): reads of one symbolic length, integer ids carried as float32
where that is exact (``ids_only``), positions collected per step carried in the rnn's output
(``an_index``); a loop reading no input step runs over one zero per step of its clock
(``clock_input``); a value with no batch dim that the step reads is a state repeated over the batch
(``batch_first_init``).  New top-level nodes come from ``Emit``.
"""

from __future__ import annotations

from typing import Any

from rnnc.frontend.scan_match import BATCH, Indexed, Match, Skip
from rnnc.frontend.scan_step import static, to_batch_first
from rnnc.ir import Node, symdims
from rnnc.ir.graph import freeze_attrs
from rnnc.ir.ops import OPS
from rnnc.ir.symdims import END as _END


class Emit:
    """New top-level nodes with fresh names and inferred types."""

    def __init__(self, g: Indexed, tag: str) -> None:
        self.g, self.tag, self.count, self.nodes = g, tag, 0, []
        self.taken = set(g.types)

    def __call__(self, op: str, *inputs: str, **attrs: Any) -> Any:
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


def step_inputs(g: Indexed, mt: Match) -> tuple[list[tuple[str, int, bool, int]],
                                                list[tuple[int, list[int], tuple[int, ...]]], list[bool]]:
    """The loop's per-step inputs: one slot per distinct read (source, axis, keep, direction),
    each source's batch axis and feature sizes, and whether it travels as float32 (ids, masks).  One rnn
    sequence holds them all, so they share a dtype and a length (a prefix counts as its length)."""
    slots = list(dict.fromkeys(mt.reads.values()))  # one per distinct read
    if not slots and mt.loop.clock is None:
        raise Skip("no per-step input")
    layout = []
    for x, ax, _keep, _d in slots:
        xt = g.types[x]
        rest = [k for k in range(xt.rank) if k != ax]
        bpos = [k for k in rest if xt.shape[k] == BATCH]
        if len(bpos) != 1 or not static(tuple(xt.shape[k] for k in rest if k != bpos[0])):
            raise Skip(f"read source {xt.text()} has no batch dim or a symbolic feature dim")
        layout.append((bpos[0], rest, tuple(xt.shape[k] for k in rest if k != bpos[0])))
    # (a mask read per step, pytorch-crf's ``mask[i]``, bool or its older uint8, travels as
    # float32 too: every value of a dtype of 16 bits or fewer is exact there)
    ids = [g.types[slot[0]].dtype in EXACT_AS_FLOAT or ids_only(g, mt, slot) for slot in slots]
    if len({"float32" if as_float else g.types[x].dtype for (x, *_), as_float in zip(slots, ids, strict=True)}) > 1:
        raise Skip("per-step inputs of several dtypes")
    if len({symdims.slice_length(g.types[x].shape[ax], 0, mt.loop.stops.get((x, ax), _END), 1)
            for x, ax, *_ in slots}) > 1:
        raise Skip("the loop reads sequences of different symbolic lengths")
    return slots, layout, ids


#: per-step inputs of these dtypes travel in the rnn's float32 sequence, every value exact
EXACT_AS_FLOAT = frozenset({"bool", "uint8", "int8", "int16"})
#: token ids up to this many rows are exact in float32 (2**24)
EXACT_IDS = 1 << 24


def ids_only(g: Indexed, mt: Match, slot: tuple[str, int, bool, int]) -> bool:
    """Whether a slot of integer reads only indexes embedding tables of at most 2**24 rows (a
    teacher-forced decoder's ``emb(tgt[:, t])``): then the sequence travels as float32 -- exact
    for every valid id -- and the step casts it back, since an rnn's sequence has one dtype."""
    if not g.types[slot[0]].dtype.startswith("int"):
        return False
    tmpl = mt.bodies[mt.m]
    reads = [tmpl[p] for p, sl in mt.reads.items() if sl == slot]
    todo = list(reads)
    while todo:  # through views that move ids unchanged (``emb(tgt[t].unsqueeze(0))``)
        i = todo.pop()
        for u in g.users[i]:
            node = g.nodes[u]
            if node.inputs[0] != g.nodes[i].outputs[0]:
                return False
            if node.op in ID_VIEWS:
                todo.append(u)
                continue
            rows = g.types[node.inputs[1]].shape[0] if node.op == "embedding" else None
            if not isinstance(rows, int) or rows > EXACT_IDS:
                return False
    return bool(reads)


#: ops that move integer ids without computing on them
ID_VIEWS = frozenset({"unsqueeze", "squeeze", "reshape", "transpose", "select", "slice", "expand_dyn"})
#: torch ops whose integer output (by index) is a position along a dim
INDEX_OUTPUTS = {"max.dim": 1, "min.dim": 1, "argmax.default": 0, "argmin.default": 0, "topk.default": 1,
                  "sort.default": 1, "sort.stable": 1}


def an_index(g: Indexed, v: str) -> bool:
    """Whether integer ``v`` is a position along a dim (a pointer network's ``scores.max(1)``
    choice, collected per step): it then travels in the rnn's float y, exact for positions
    below 2**24 -- a per-step reduction over more than 16M positions is no recurrent step."""
    while v in g.prod:
        i, j = g.prod[v]
        node = g.nodes[i]
        if node.op in ID_VIEWS:
            v = node.inputs[0]
            continue
        target = dict(node.attrs).get("target") if node.op == "aten" else None
        return INDEX_OUTPUTS.get(str(target)) == j
    return False


#: ``init_axes`` of a value with no batch dim, which its state holds once per sample
BROADCAST = -1


def batch_first_init(g: Indexed, s: str, bp: int, emit: Emit) -> str:
    """Initial value ``s`` with its batch (at ``bp``) first, or repeated over the batch."""
    if bp == BROADCAST:
        batched = batched_input(g)
        return emit("expand_dyn", emit("unsqueeze", s, axis=0), batched[0],
                    shape=((0, batched[1]), *[-1] * g.types[s].rank))
    return s if not bp else emit("transpose", s, perm=to_batch_first(bp, g.types[s].rank))


def batched_input(g: Indexed) -> tuple[str, int]:
    batched = next(((v, t.shape.index(BATCH)) for v, t in g.graph.inputs if BATCH in t.shape), None)
    if batched is None:
        raise Skip("the loop needs the batch size, and no input has a batch dim")
    return batched


def clock_input(g: Indexed, mt: Match, emit: Emit) -> str:
    """``[B, k * T + c, 1]`` zeros, ``k * T + c`` the clocked loop's step count (``Loop.clock``:
    T an input's dim), B read off an input."""
    assert mt.loop.clock is not None
    ref, ax, k, c = mt.loop.clock
    batched = batched_input(g)
    refs = [ref] if batched[0] == ref else [batched[0], ref]
    one = emit("full_dyn", *refs, shape=((0, batched[1]), (len(refs) - 1, ax), 1), value=0, dtype="float32")
    clock = one if k == 1 else emit("concat", *[one] * k, axis=1)
    if c:  # (``scan_match.CLOCK_SCALES``: never negative)
        clock = emit("concat", clock, emit("full_dyn", batched[0], shape=((0, batched[1]), c, 1), value=0,
                                           dtype="float32"), axis=1)
    return clock
