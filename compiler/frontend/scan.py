"""Roll a Python loop over time, unrolled by tracing, back into one ``rnn`` node over symbolic T.

Why: recurrences written as loops of tensor ops -- ``for i in range(l): x = dA[:, i] * x +
dBu[:, i]`` (mamba-minimal's selective scan), QRNN's ForgetMult, SRU's cell -- trace to one copy
of the loop body per step of the example, which fixes T.  Loops over cell *modules* are merged
before conversion (``loops.py``); this pass works on the converted IR, so any body made of IR
ops rolls, whatever module or function it sits in.

How (on a graph whose time dim is symbolic, ``api._build``; steps 1-4 are ``scan_match.py``):

1. *Reads*: ``select(X, a, k)`` and ``slice(X, a, k, k + 1)`` of a symbolic dim with constant k.
2. *Carry chains*: the reads of one X, ordered by k, whose steps meet: a node that depends on the
   reads of steps k and k + 1 but not on step k + 2's is step k + 1's work on step k's carry
   (reversed for a loop running backwards).  Chains whose reads meet inside one step form a loop.
3. *Steps*: a node belongs to the last step whose reads it depends on; nodes that only feed one
   step (per-step copies of invariants, reads that do not touch the carry) join that step.
4. *Template*: the middle step's nodes, in graph order.  Every other step must be the same list
   position by position (same ops, attributes, shapes, read index moving one per step, inputs
   from the same positions of its own or the previous step, or the same invariant); the first
   step may differ (a first iteration written apart, ``if prev is None``) and stays unrolled,
   the last may miss nodes only the next step would read.
5. *Rewrite*: the template becomes a ``Cell`` step graph (per-step reads packed into ``x``,
   carried values as states, invariants as weights, or as states passed through unchanged
   when they depend on the inputs), one ``rnn`` node runs it, and the loop's ``stack``/``cat``
   of per-step values and its final values are read from the rnn's outputs.  A per-step map
   (no carry) rolls the same way, with one state of zeros.

Anything that does not fit is left as it was; ``trace`` then checks the Program at another length
and, if a loop is still unrolled, falls back to a fixed length and says so (``api.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from rnnc.frontend.scan_io import BROADCAST, Emit, an_index, batch_first_init, clock_input, step_inputs
from rnnc.frontend.scan_match import (
    BATCH,
    Indexed,
    Key,
    Match,
    Skip,
    Uses,
    depends_on_inputs,
    find_loops,
    read,
    same_node,
    steps,
    template,
    uses_after,
    value_at,
)
from rnnc.frontend.scan_step import batch_axis, from_batch_first, rest_dims, simplify_step, static, to_batch_first
from rnnc.ir import Cell, Graph, GraphBuilder, Node, StateSpec, symdims
from rnnc.ir.builder import retyped
from rnnc.ir.graph import freeze_attrs
from rnnc.ir.scanform import is_linear
from rnnc.ir.symdims import END as _END
from rnnc.ir.types import TensorType, dtype_of_torch


@dataclass
class _Scan:
    """The rolled loop's cell, and what the top level feeds it and reads from it."""

    cell: Cell
    slots: list[tuple[str, int, bool, int]]  # per-step input: (source, time axis, keeps the axis, direction)
    layout: list[tuple[int, list[int], tuple[int, ...]]]  # per slot: batch axis, other axes, their sizes
    ids: list[bool]  # per slot: integer ids carried as float32 (``ids_only``)
    carried: list[Key]  # the states' template values (a per-step map has one state of zeros instead)
    carried_axes: list[int]  # where each carried value keeps its batch (its state has it first)
    inits: list[str]  # per state, its initial value ("": zeros), pass-through states included
    init_axes: list[int]  # per state, the batch axis of its initial value
    params: list[str]  # the top-level values of the step's params
    weights: dict[str, torch.Tensor]  # invariants folded into new weights
    y_keys: list[Key]  # what y packs: the collected values (or the first state)
    y_types: dict[Key, TensorType]
    y_batch: dict[Key, int]


def _before_loop(g: Indexed, mt: Match, key: Key) -> str:
    """The value a carried value, written in each step before any read of it, has before the
    first rolled step -- what the Program returns for it where the rnn runs no step (T = 1 after
    a peeled first step: a CRF's ``score = start + e[:, 0]; for t in range(1, T): score = ...``
    rolls with the template starting at the read, ``score`` an output only).  Found where the
    template's nodes after the key's first reader match the peeled step's last nodes one for one:
    the peeled node in the reader's place reads the value wanted.  "" (zeros) where none is found
    -- not reached at T >= 2, and a wrong answer at T = 1 then, which ``dims.check_at_other_size``
    tries."""
    if mt.start < 1:
        return ""
    tmpl, peel = mt.bodies[mt.m], mt.bodies[mt.start - 1]
    made = g.nodes[tmpl[key[0]]].outputs[key[1]]
    for q in range(key[0] + 1, len(tmpl)):
        reader = g.nodes[tmpl[q]]
        if made not in reader.inputs:
            continue
        tail = len(tmpl) - q
        if tail > len(peel) or not all(same_node(g, tmpl[q + k], peel[len(peel) - tail + k]) for k in range(tail)):
            continue
        value = g.nodes[peel[len(peel) - tail]].inputs[reader.inputs.index(made)]
        return value if g.types.get(value) == g.types[made] else ""
    return ""


def _step_cell(g: Indexed, mt: Match, uses: Uses, weights: dict[str, torch.Tensor], tag: str) -> _Scan:
    """The template as a Cell: reads unpacked from ``x``, carried values as states, invariants as
    constants, folded weights or pass-through states."""
    tmpl = mt.bodies[mt.m]
    pos_m = {i: p for p, i in enumerate(tmpl)}
    b = GraphBuilder(f"{g.graph.name}_{tag}")
    carried = sorted(set(mt.carries.values()) | set(uses.finals))
    out_types = {key: g.types[value_at(g, mt, mt.m, key)] for key in carried}
    slots, layout, ids = step_inputs(g, mt)
    # a clocked loop reads nothing: its rnn runs over one zero per step (``_top_level``)
    dtype = "float32" if not slots or ids[0] else g.types[slots[0][0]].dtype
    widths = [math.prod(lay[2]) for lay in layout] or [1]
    xin = b.input("x", (BATCH, sum(widths)), dtype)
    parts = b.op("split", xin, axis=1, sizes=tuple(widths)) if len(widths) > 1 else (xin,)
    parts = (parts if isinstance(parts, tuple) else (parts,)) if slots else ()
    slot_values = []
    for part, (x, ax, keep, _d), (bpos, rest, feat), as_float in zip(parts, slots, layout, ids, strict=True):
        v = b.op("reshape", part, shape=(0, *feat))
        if as_float:
            v = b.op("cast", v, dtype=g.types[x].dtype)
        order = [bpos, *[k for k in rest if k != bpos]]  # v's dims, in the source's numbering
        perm = tuple(order.index(k) for k in rest)
        if perm != tuple(range(len(perm))):
            v = b.op("transpose", v, perm=perm)
        slot_values.append(b.op("unsqueeze", v, axis=ax) if keep else v)
    state_in: dict[Key, Any] = {}
    specs: list[StateSpec] = []
    carried_axes: list[int] = []
    for k, key in enumerate(carried):
        # a state is [B, ...]; a carried value keeps its batch anywhere (a one-step nn.LSTM or
        # cell call inside the loop carries [layers, B, H]): it is moved there and back
        t = out_types[key]
        bp = batch_axis(t, "a carried value", sized=True)  # (a coverage vector over a symbolic memory)
        carried_axes.append(bp)
        sv = b.input(f"s{k}", (BATCH, *rest_dims(t, bp)), t.dtype)
        state_in[key] = sv if bp == 0 else b.op("transpose", sv, perm=from_batch_first(bp, t.rank))
        specs.append(StateSpec(f"s{k}", rest_dims(t, bp), t.dtype))
    inits = [mt.inits.get(key) or (_before_loop(g, mt, key) if key in uses.finals else "") for key in carried]
    init_axes = list(carried_axes)  # per state, where its initial value keeps the batch
    outputs_after: list[tuple[str, Any]] = []
    if not carried:  # a per-step map carries nothing; the rnn op wants a state: one of zeros
        dummy = b.input("s0", (BATCH, 1), dtype)
        specs.append(StateSpec("s0", (1,), dtype))
        inits.append("")
        init_axes.append(0)
        outputs_after.append(("s0", dummy))
    folded: dict[str, torch.Tensor] = {}
    ext: dict[str, Any] = {}
    params: list[str] = []

    def external(v: str) -> Any:
        """An invariant: a constant copied, a weight-only value folded into a weight, a value of
        the inputs with a leading batch passed through as a state."""
        if v in ext:
            return ext[v]
        t = g.types[v]
        if v in g.prod and g.nodes[g.prod[v][0]].op == "const":
            ext[v] = b.op("const", **dict(g.nodes[g.prod[v][0]].attrs))
        elif v in g.params or not depends_on_inputs(g, v):
            top = v
            if v not in g.params:
                top = f"{tag}.w{len(folded)}"
                folded[top] = _evaluate(g, v, weights)
                g.types[top] = t
            ext[v] = b.param(f"w{len(params)}", t.shape, t.dtype)
            params.append(top)
        elif list(t.shape).count(BATCH) == 1:  # passed through unchanged, its batch moved first
            bp = t.shape.index(BATCH)
            name = f"s{len(specs)}"
            sv = b.input(name, (BATCH, *rest_dims(t, bp)), t.dtype)
            ext[v] = sv if bp == 0 else b.op("transpose", sv, perm=from_batch_first(bp, t.rank))
            specs.append(StateSpec(name, rest_dims(t, bp), t.dtype))
            inits.append(v)
            init_axes.append(bp)
            outputs_after.append((name, sv))
        elif BATCH not in t.shape and t.rank:  # (``arange(T)``): the same for every sample, a
            name = f"s{len(specs)}"  # state broadcast over the batch, of which the step reads row 0
            sv = b.input(name, (BATCH, *t.shape), t.dtype)
            ext[v] = b.op("select", sv, axis=0, index=0)
            specs.append(StateSpec(name, t.shape, t.dtype))
            inits.append(v)
            init_axes.append(BROADCAST)
            outputs_after.append((name, sv))
        else:
            raise Skip(f"the loop reads {v}: {t.text()}, computed from the inputs, with no one batch dim "
                       "(a state cannot hold it)")
        return ext[v]

    local: dict[Key, Any] = {}
    for p, i in enumerate(tmpl):
        node = g.nodes[i]
        if p in mt.reads:
            local[(p, 0)] = slot_values[slots.index(mt.reads[p])]
            continue
        args = []
        for slot, v in enumerate(node.inputs):
            if not v:
                args.append(None)
            elif v in g.prod and g.prod[v][0] in pos_m:
                args.append(local[(pos_m[g.prod[v][0]], g.prod[v][1])])
            elif (p, slot) in mt.carries:
                args.append(state_in[mt.carries[(p, slot)]])
            else:
                args.append(external(v))
        outs = b.op(node.op, *args, **dict(node.attrs))
        for j, o in enumerate(outs if isinstance(outs, tuple) else (outs,)):
            local[(p, j)] = o
    # y: the per-step values the loop collects (or, if it collects none, its first state), each
    # flattened batch first to [B, F]
    y_keys = list(dict.fromkeys(c[1] for c in uses.collects)) or carried[:1]
    if not y_keys:
        raise Skip("the loop has neither per-step outputs nor a final value")
    y_types = {key: g.types[value_at(g, mt, mt.m, key)] for key in y_keys}
    odd = [t for key, t in y_types.items() if t.dtype != dtype and not (
        dtype in ("float32", "float64") and an_index(g, value_at(g, mt, mt.m, key)))]
    if odd:  # the rnn op's y has its x's dtype (an index travels in it as a float, ``an_index``)
        raise Skip(f"a per-step output is {odd[0].text()}, its inputs {dtype}")
    y_batch = {key: batch_axis(t, "a per-step output", sized=True) for key, t in y_types.items()}
    # at most one per-step output may follow a symbol (attention weights over a memory of symbolic
    # length), last in y; its width is read at run time off a pass-through state of that size
    sized = [key for key in y_keys if not static(rest_dims(y_types[key], y_batch[key]))]
    if len(sized) > 1:
        raise Skip(f"{len(sized)} per-step outputs have sizes that follow symbols; one can")
    state_dims = {d for sp in specs for d in sp.shape if isinstance(d, str)}
    sized_dims = {d for key in sized for d in rest_dims(y_types[key], y_batch[key]) if isinstance(d, str)}
    if not sized_dims <= state_dims:
        raise Skip(f"a per-step output is {y_types[sized[0]].text()}: its size follows no value the loop reads")
    y_keys = [key for key in y_keys if key not in sized] + sized
    flat = []
    for key in y_keys:
        v, t, bp = local[key], y_types[key], y_batch[key]
        if bp:
            v = b.op("transpose", v, perm=(bp, *[k for k in range(t.rank) if k != bp]))
        width = math.prod(rest_dims(t, bp)) if key not in sized else -1
        if t.dtype != dtype:
            v = b.op("cast", v, dtype=dtype)
        flat.append(v if t.rank == 2 else b.op("reshape", v, shape=(0, width)))
    y = flat[0] if len(flat) == 1 else b.op("concat", *flat, axis=1)
    state_out = [local[key] if bp == 0 else b.op("transpose", local[key], perm=to_batch_first(bp, out_types[key].rank))
                 for key, bp in zip(carried, carried_axes, strict=True)]
    step = simplify_step(b.build([("y", y), *((f"s{k}", v) for k, v in enumerate(state_out)), *outputs_after]))
    feat_y: Any = sum(math.prod(rest_dims(y_types[key], y_batch[key])) for key in y_keys if key not in sized)
    if sized:
        feat_y = symdims.name("+", feat_y, symdims.render(symdims.product(rest_dims(y_types[sized[0]],
                                                                                y_batch[sized[0]]))))
    hidden = specs[0].shape[-1] if specs[0].shape and isinstance(specs[0].shape[-1], int) else 1
    cell = Cell(f"scan:{g.graph.name}", "nonlinear", sum(widths), hidden, feat_y, tuple(specs), step)
    if is_linear(cell):  # affine (or max-plus) in its states: parallel scans are legal
        cell = replace(cell, recurrence="linear")
    return _Scan(cell, slots, layout, ids, carried, carried_axes, inits, init_axes, params, folded, y_keys, y_types,
                 y_batch)


def _ranked(g: Indexed, init: str, carried: TensorType, emit: Emit) -> str:
    """``init`` with leading ones added up to the carried value's rank: asappresearch/sru's loop
    starts its carry at ``[B, H]`` and each step's reads (``U.chunk(length)``) are ``[1, B, H]``,
    so broadcasting makes the carry ``[1, B, H]`` from the first step on.  Only leading ones:
    they change nothing an elementwise step computes; a step they would change (a reduction over
    axis 0) fails to roll or is caught by the trace checks."""
    t = g.types[init]
    lead = carried.rank - t.rank
    if lead <= 0 or tuple(carried.shape[lead:]) != tuple(t.shape) or any(d != 1 for d in carried.shape[:lead]):
        return init
    for _ in range(lead):
        init = emit("unsqueeze", init, axis=0)
    return init


def _may_be_empty(dim: Any, stop: int | None) -> bool:
    """Whether the first ``dim + stop`` positions (``stop < 0``) can be none: ``T - 1`` at T = 1,
    where ``T + 1 - 1`` cannot (``symdims.prefix_stop``)."""
    if not stop or stop >= 0:
        return False
    p = symdims.parse(dim) if isinstance(dim, str) else None
    return p is None or symdims.bounds(symdims.add(p, symdims.const(stop)))[0] < 1


def _top_level(g: Indexed, mt: Match, uses: Uses, sc: _Scan, emit: Emit) -> dict[str, str]:
    """The rnn node and what replaces the loop's outputs: old value -> new value."""
    n, start, forward = mt.loop.n, mt.start, mt.loop.forward
    # ``for t in range(T - 1)`` over sources of length T: a prefix that is empty at T = 1, which no
    # rnn backend runs -- the whole sources instead, their last step masked off by lengths T - 1
    empty = [_may_be_empty(g.types[x].shape[ax], mt.loop.stops.get((x, ax))) for x, ax, *_ in sc.slots]
    masked_tail = bool(empty) and all(empty)
    if any(empty) and (start or not masked_tail or not forward):
        raise Skip("a loop one step shorter than its sources beside other reads or a first step apart")
    xs = []
    for (x, ax, _keep, d), (bpos, rest, feat), as_float in zip(sc.slots, sc.layout, sc.ids, strict=True):
        stop = None if masked_tail else mt.loop.stops.get((x, ax))
        v = emit("slice", x, axis=ax, start=0, stop=stop, step=1) if stop else x  # the steps read
        v = emit("flip", v, axis=ax) if d < 0 else v  # in scan order
        if as_float:
            v = emit("cast", v, dtype="float32")
        order = [bpos, ax, *[k for k in rest if k != bpos]]
        if tuple(order) != tuple(range(len(order))):
            v = emit("transpose", v, perm=tuple(order))
        xs.append(emit("reshape", v, shape=(0, 0, math.prod(feat))))
    if not xs:  # a clocked loop: one zero per step, as many steps as its length
        xs.append(clock_input(g, mt, emit))
    xcat = xs[0] if len(xs) == 1 else emit("concat", *xs, axis=2)  # [B, T, I]
    lengths = ""
    if start:
        # the steps after the first, as a sequence of T steps whose last one is masked off by
        # lengths T - 1: so T = 1 runs no step, and no backend sees an empty sequence
        xcat = emit("concat", emit("slice", xcat, axis=1, start=1, stop=_END, step=1),
                    emit("slice", xcat, axis=1, start=0, stop=1, step=1), axis=1)
    if start or masked_tail:
        ones = emit("full_dyn", xcat, shape=([0, 0], ["-", [0, 1], 1]), value=1, dtype="int64")
        lengths = emit("sum", ones, axes=(1,), keepdim=False)
    inits = [_ranked(g, s, g.types[value_at(g, mt, mt.m, sc.carried[k])], emit) if s and k < len(sc.carried)
             else s for k, s in enumerate(sc.inits)]
    state_vals = [emit("unsqueeze", batch_first_init(g, s, bp, emit), axis=0) if s else ""
                  for s, bp in zip(inits, sc.init_axes, strict=True)]
    rnn_out = emit("rnn", xcat, lengths, *state_vals, *sc.params, cells=(sc.cell,), num_layers=1,
                   bidirectional=False, batch_first=True)
    y_top, final_tops = rnn_out[0], rnn_out[1:]
    if start or masked_tail:
        y_top = emit("slice", y_top, axis=1, start=0, stop=-1, step=1)  # the masked last step
    rename: dict[str, str] = {}
    for k, key in enumerate(sc.carried):
        if key in uses.finals:
            final = emit("select", final_tops[k], axis=0, index=0)
            bp = sc.carried_axes[k]
            rank = g.types[value_at(g, mt, n - 1, key)].rank
            rename[value_at(g, mt, n - 1, key)] = final if not bp else emit(
                "transpose", final, perm=from_batch_first(bp, rank))
    if not uses.collects:
        return rename
    ytm = emit("transpose", y_top, perm=(1, 0, 2))  # [T', B, F]
    if not forward:
        ytm = emit("flip", ytm, axis=0)
    by_key: dict[Key, str] = {}
    off = 0
    for key in sc.y_keys:  # a symbolic-width output is last: it runs to the end
        rest = rest_dims(sc.y_types[key], sc.y_batch[key])
        width = math.prod(rest) if static(rest) else None
        by_key[key] = ytm if len(sc.y_keys) == 1 else emit(
            "slice", ytm, axis=2, start=off, stop=off + width if width is not None else _END, step=1)
        off += width or 0
    for ci, key, stacked, first, last in uses.collects:
        node = g.nodes[ci]
        t, bp = sc.y_types[key], sc.y_batch[key]
        piece = by_key[key]  # scan steps start..n-1, time first
        if first > start or last < n - 1:  # a collect running one step off the reads
            piece = emit("slice", piece, axis=0, start=first - start, stop=last - n + 1 if last < n - 1 else _END,
                         step=1)
        ax = node.attr("axis") % len(g.types[node.outputs[0]].shape)
        if not stacked and (ax == bp or t.shape[ax] != 1):
            raise Skip("a concatenation of per-step values that are not size 1 on its axis")
        # dims labelled by their per-step axis: the rnn gives [T, batch, the others in order]
        others = [k for k in range(t.rank) if k != bp and (stacked or k != ax)]
        if t.dtype != g.types[piece].dtype:  # an index, carried as a float (``an_index``)
            piece = emit("cast", piece, dtype=t.dtype)
        v = emit("reshape", piece, shape=(0, 0, *(t.shape[k] if isinstance(t.shape[k], int) else -1 for k in others)))
        have: list[Any] = ["T", bp, *others]
        want: list[Any] = list(range(t.rank))
        if stacked:
            want.insert(ax, "T")
        else:
            want[ax] = "T"
        perm = tuple(have.index(d) for d in want)
        if perm != tuple(range(len(perm))):
            v = emit("transpose", v, perm=perm)
        peeled = list(node.inputs[:len(node.inputs) - (last - first + 1)]) if forward else \
            [node.inputs[k] for k, s in enumerate(range(n - 1, -1, -1)) if s < start]
        if peeled:
            head = emit("stack", *peeled, axis=ax) if stacked else \
                (emit("concat", *peeled, axis=ax) if len(peeled) > 1 else peeled[0])
            v = emit("concat", head, v, axis=ax) if forward else emit("concat", v, head, axis=ax)
        if len(peeled) > 1:
            v = _no_longer_than_reads(g, mt, uses, node, xcat, v, ax, emit)
        rename[node.outputs[0]] = v
    return rename


def _no_longer_than_reads(g: Indexed, mt: Match, uses: Uses, node: Node, xcat: str, v: str, ax: int,
                          emit: Emit) -> str:
    """A collect with values from more than one step before the scan (a per-step value computed
    from the previous step's state, ahead of the cell: Skip RNN's ``c = c + min(h, 1 - c)``) is
    the peeled values and the scan's, which at a length shorter than the peel is the peel alone:
    too long.  Cut to the steps read (the read length less what the collect skips, as traced);
    the last step's carried values would be one step ahead there, so such a loop whose final
    values are read is not rolled."""
    if uses.finals:
        raise Skip("values collected from two steps before the loop, and its final values read")
    skipped = mt.loop.n - len(node.inputs)
    stop = ("-", (0, 1), skipped) if skipped else (0, 1)
    return emit("slice_dyn", v, xcat, axis=ax, start=0, stop=stop, step=1)


def _rewrite(g: Indexed, mt: Match, weights: dict[str, torch.Tensor], tag: str
             ) -> tuple[Graph, dict[str, torch.Tensor]]:
    """The graph with the loop replaced by one rnn node, and the weights it adds."""
    n, size = mt.loop.n, len(mt.bodies[mt.m])
    pos_of = [{i: p for p, i in enumerate(mt.bodies[s][:size if s < n - 1 else mt.last_len])} for s in range(n)]
    last = set(mt.bodies[n - 1][:mt.last_len])
    rolled = {i for s in range(mt.start, n - 1) for i in mt.bodies[s]} | last
    uses = uses_after(g, mt, pos_of, rolled, last)
    sc = _step_cell(g, mt, uses, weights, tag)
    emit = Emit(g, f"{tag}_")
    rename = _top_level(g, mt, uses, sc, emit)
    dead = rolled | {c[0] for c in uses.collects}
    if not mt.loop.forward:
        _from_end(g, mt)
    return _assemble(g, emit.nodes, dead, rename, sc.weights), sc.weights


def _from_end(g: Indexed, mt: Match) -> None:
    """A backward loop's steps written apart (its first iterations) read the sequence's last
    positions: index them from the end, so they still do at another length (in place, on the
    nodes ``_assemble`` keeps)."""
    n = mt.loop.n
    slots = {(x, ax) for x, ax, *_ in mt.reads.values()}
    for s in range(mt.start):
        for i in mt.bodies[s]:
            r = read(g, i)
            if r is None or (r.x, r.axis) not in slots or r.index != n - 1 - s:  # (not its own step's:
                continue  # ``zeros_like(x[:, 0])`` joined the first step, and reads position 0)
            k = r.index - n + mt.loop.stops.get((r.x, r.axis), 0)  # (a prefix of X stops short of its end)
            nd = g.nodes[i]
            attrs = dict(nd.attrs)
            if r.keep:
                attrs.update(start=k, stop=k + 1 if k + 1 < 0 else _END)
            else:
                attrs["index"] = k
            g.nodes[i] = replace(nd, attrs=freeze_attrs(attrs))


def _evaluate(g: Indexed, v: str, weights: dict[str, torch.Tensor]) -> torch.Tensor:
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


def _live_values(nodes: Any, outputs: set[str]) -> set[str]:
    """The values ``outputs`` depend on."""
    live = set(outputs)
    for nd in reversed(nodes):
        if any(o in live for o in nd.outputs):
            live.update(v for v in nd.inputs if v)
    return live


def _assemble(g: Indexed, added: list[Node], dead: set[int], rename: dict[str, str],
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
    # drop what nothing reads any more (the unrolled loop's prologue and invariants) -- only what
    # this rewrite made dead: nodes the trace left unread (a loop's last, unused update) stay, so
    # the loops still to roll keep steps alike
    was_live = _live_values(g.graph.nodes, {v for _, v in g.graph.outputs})
    live = {v for _, v in outputs}
    final: list[Node] = []
    for nd in reversed(order):
        if any(o in live for o in nd.outputs) or not any(o in was_live for o in nd.outputs):
            final.append(nd)
            live.update(v for v in nd.inputs if v)
    params = g.graph.params + tuple((k, TensorType(tuple(t.shape), dtype_of_torch(t.dtype)))
                                    for k, t in new_weights.items())
    # (what reads the rolled loop's collected values had the traced length in its type)
    return retyped(Graph(g.graph.name, g.graph.inputs, params, tuple(reversed(final)), outputs))






def roll_loops(graph: Graph, weights: dict[str, torch.Tensor], sizes: dict[str, int],
               lines: dict[str, str] | None = None) -> tuple[Graph, dict[str, torch.Tensor], int, int, list[str]]:
    """Roll every loop over a symbolic dim that fits (module docstring); returns the graph, the
    weights (with folded invariants added), how many loops rolled, how many of them by a clock
    (their length a guess the caller checks, ``scan_match.clocked``) and why the loops that were
    found did not roll.
    ``sizes``: each symbolic dim's size in the example the graph was traced at; ``lines``: the
    user's source line of values, to say where a loop that stays unrolled reads its input."""
    weights = dict(weights)
    why: list[str] = []
    tried: set[frozenset[str]] = set()  # loops tried, by their reads
    count = clocks = 0
    while True:
        g = Indexed(graph)
        progress = False
        loops, free = find_loops(g, sizes)
        for loop in loops:
            sig = frozenset(g.nodes[r].outputs[0] for reads in loop.chains for r in reads if r is not None)
            if sig in tried:
                continue
            tried.add(sig)
            try:
                try:
                    found, bodies = steps(g, loop, free)
                    graph, added = _rewrite(g, template(g, found, bodies), weights, f"scan{count}")
                except Skip:  # the same loop with values computed for the next step in it
                    found, bodies = steps(g, loop, free, late=True)
                    graph, added = _rewrite(g, template(g, found, bodies), weights, f"scan{count}")
            except Exception as exc:  # noqa: BLE001 -- a loop that does not roll stays unrolled, as traced
                if loop.clock is not None:  # a clock is a guess (three layer norms at T = 3): no loop to name
                    continue
                first = next(r for reads in loop.chains for r in reads if r is not None)
                said = str(exc) if isinstance(exc, Skip) else f"{type(exc).__name__}: {exc}"
                at = (lines or {}).get(g.nodes[first].outputs[0])
                why.append(f"the {loop.n}-step loop reading {g.nodes[first].label}{f' at {at}' if at else ''}: {said}")
                continue
            weights.update(added)
            count += 1
            clocks += loop.clock is not None
            progress = True
            break
        if not progress:
            if count:  # what the trace left unread goes now that no loop is left to match
                live = _live_values(graph.nodes, {v for _, v in graph.outputs})
                graph = Graph(graph.name, graph.inputs, graph.params,
                              tuple(nd for nd in graph.nodes if any(o in live for o in nd.outputs)), graph.outputs)
            return graph, weights, count, clocks, why
