"""The chunk pass: does this cell have the matrix-state family's chunkwise form, provably?

A cell of the gated linear-attention family (``kernels/linattn.py``: GLA, RetNet, HGRN2,
DeltaNet, Mamba-2, xLSTM's mLSTM, or a user's cell built with the same helpers) names its
operands in a ``chunk`` attribute -- which step values are q, k, v, the log decay g, β, mLSTM's
log input gate i and the readout o.  A
backend that runs the cell chunkwise (``rnnc.lower.chunkwise``) trusts these names only after
this pass has checked them:

* structure: the named operands exist and do not depend on the state (so they can be computed
  for all T·B rows before the recurrence), every node they need is row-wise, the cell's states
  are exactly the form's (the matrix; for mLSTM also n and m), and the readout y depends on the
  states only through o (so it too runs on all rows once o is known);
* numbers: one step of the cell's own graph, on random inputs and states, equals the family's
  step (``rnnc.ir.chunkform.step``/``step_mlstm``) applied to the operands that same graph
  computed -- every new state and o.

A cell that fails either check simply has no chunk form (``chunk_reason`` says why) and runs
step by step like any other; nothing here knows a cell by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnnc.ir.graph import Cell, Node

OPERANDS = ("q", "k", "v", "g", "beta", "i")


@dataclass(frozen=True)
class ChunkForm:
    """A verified chunkwise form: the update, the operand value names, the state, the nodes that
    compute the operands (``pre``, state-free) and those that turn o into y (``post``)."""

    form: str  # "gla" | "delta" | "mlstm"
    state: str  # the matrix state
    operands: tuple[tuple[str, str], ...]  # (operand, value name), operands present only
    out: str  # the value o_t = S_tᵀ q_t
    pre: tuple[Node, ...]
    post: tuple[Node, ...]
    extra_states: tuple[tuple[str, str], ...] = ()  # mlstm: (("norm", n), ("stab", m))

    @property
    def states(self) -> dict[str, str]:
        """The form's state keys -> the cell's state names ("state", then mLSTM's "norm", "stab")."""
        return {"state": self.state, **dict(self.extra_states)}

    def value(self, operand: str) -> str | None:
        return dict(self.operands).get(operand)


def find_chunk_form(cell: Cell, depends: Any, row_wise: frozenset[int]) -> tuple[ChunkForm | None, str]:
    """(the verified form, "") or (None, why not)."""
    text = cell.attr("chunk")
    if not text:
        return None, "the cell declares no chunkwise form"
    from rnnc.ir.chunkform import FORMS, STATE_KEYS, parse_chunk_attr

    form, names = parse_chunk_attr(str(text))
    step = cell.step
    if form not in FORMS:
        return None, f"unknown chunk form {form!r}"
    keys = STATE_KEYS[form]
    if sorted(cell.state_names) != sorted(str(names.get(k)) for k in keys):
        want = ", ".join(f"{k} {names.get(k)!r}" for k in keys)
        have = ", ".join(cell.state_names)
        return None, f"the {form} chunk form needs exactly the states {want}; the cell has {have}"
    producers = {o: (k, n) for k, n in enumerate(step.nodes) for o in n.outputs}
    operands = tuple((op, names[op]) for op in OPERANDS if op in names)
    missing = [v for _, v in operands if v not in producers] + ([] if names.get("o") in producers else ["o"])
    required = ("q", "k", "v") + {"gla": (), "delta": ("beta",), "mlstm": ("g", "i")}[form]
    if missing or any(op not in names for op in required):
        lacks = ", ".join(missing) or "/".join(required)
        return None, f"the chunk attribute names values the step graph lacks ({lacks})"
    stateful = [op for op, v in operands if depends[v] == "state"]
    if stateful:
        return None, f"operand(s) {', '.join(stateful)} depend on the state"
    pre = _closure([v for _, v in operands], producers)
    out = names["o"]
    post_needed = _closure([step.outputs[0][1]], producers, stop={out})
    post = tuple(n for n in post_needed if any(depends[o] == "state" for o in n.outputs))
    pre_all = _merge(pre, tuple(n for n in post_needed if n not in post), step.nodes)
    bad = [n.label for n in pre_all + post
           if depends[n.outputs[0]] != "weights" and n.op != "const" and step.nodes.index(n) not in row_wise]
    if bad:
        return None, f"node(s) {', '.join(bad)} mix rows, so they cannot run on all steps at once"
    if any(i in cell.state_names for n in post for i in n.inputs):
        return None, "the readout reads the state other than through o"
    gate = names.get("g")
    if form == "delta" and gate is not None and step.value_types()[gate].shape[-1] != 1:
        return None, "the delta rule's chunk form takes one decay per head, not one per key channel"
    if form == "mlstm":  # C [NH, DV, DK], n [NH, DK], m [NH]
        shape = {st.name: tuple(st.shape) for st in cell.states}
        nh, _, dk = shape[names["state"]] if len(shape[names["state"]]) == 3 else (None, None, None)
        if (shape[names["norm"]], shape[names["stab"]]) != ((nh, dk), (nh,)):
            return None, "the mlstm form's states are C [NH, DV, DK], its normaliser n [NH, DK] and stabiliser m [NH]"
    cf = ChunkForm(form, names["state"], operands, out, pre_all, post,
                   tuple((k, names[k]) for k in keys[1:]))
    try:
        why = _numeric_check(cell, cf)
    except Exception as exc:  # noqa: BLE001 - any failure of the trial step is a reason, not a crash
        first = (str(exc).splitlines() or [""])[0]
        why = f"one trial step of the named operands failed ({type(exc).__name__}: {first})"
    return (None, why) if why else (cf, "")


def _closure(targets: list[str], producers: dict[str, tuple[int, Node]], stop: frozenset[str] | set[str] = frozenset()
             ) -> tuple[Node, ...]:
    """The nodes ``targets`` need (in graph order), not looking past the values in ``stop``."""
    seen: dict[int, Node] = {}
    todo = [t for t in targets if t not in stop]
    while todo:
        v = todo.pop()
        if v not in producers:
            continue
        k, node = producers[v]
        if k in seen:
            continue
        seen[k] = node
        todo.extend(i for i in node.inputs if i and i not in stop)
    return tuple(seen[k] for k in sorted(seen))


def _merge(a: tuple[Node, ...], b: tuple[Node, ...], order: tuple[Node, ...]) -> tuple[Node, ...]:
    ids = {id(n) for n in a + b}
    return tuple(n for n in order if id(n) in ids)


def _numeric_check(cell: Cell, cf: ChunkForm) -> str:
    """"" when one random step of the graph equals the family step on its own operands (in
    float64 whatever the cell's dtype: this checks algebra, not rounding)."""
    import torch

    from rnnc.ir.chunkform import step, step_mlstm
    from rnnc.ir.interp import run_graph

    g = torch.Generator().manual_seed(0)
    step_graph = cell.step
    env: dict[str, Any] = {}
    batch = 2
    for name, ty in step_graph.inputs:
        shape = [batch if not isinstance(d, int) else d for d in ty.shape]
        env[name] = torch.randn(shape, generator=g, dtype=torch.float64) * 0.5
    for name, ty in step_graph.params:
        env[name] = torch.randn(tuple(ty.shape), generator=g, dtype=torch.float64) * 0.3
    values: dict[str, Any] = {}
    outs = run_graph(step_graph, env, values=values)
    new = dict(zip((n for n, _ in step_graph.outputs), outs, strict=True))
    ops = {op: values[v] for op, v in cf.operands}
    if cf.form == "mlstm":  # C [B, NH, DV, DK]; g and i one per head, [B, NH]
        shape = env[cf.state].shape
        q, k = ops["q"].expand(*shape[:-2], shape[-1]), ops["k"].expand(*shape[:-2], shape[-1])
        v = ops["v"].expand(*shape[:-1])
        gi = [ops[o].expand(*shape[:-2])[..., None] for o in ("g", "i")]
        names = tuple(cf.states.values())
        o_want, s_want = step_mlstm(tuple(env[n] for n in names), q, k, v, *gi)
    else:
        names = (cf.state,)
        shape = env[cf.state].shape
        q = ops["q"].expand(*shape[:-1])
        k = ops["k"].expand(*shape[:-1])
        v = ops["v"].expand(*shape[:-2], shape[-1])
        gate = None if "g" not in ops else ops["g"].expand(*shape[:-2], ops["g"].shape[-1])
        beta = None if "beta" not in ops else ops["beta"].expand(*shape[:-2], 1)
        o_want, s_one = step(cf.form, env[cf.state], q, k, v, gate, beta)
        s_want = (s_one,)
    checks = [(f"state {n}", new[n], w) for n, w in zip(names, s_want, strict=True)]
    for what, got, want in (*checks, ("readout o", values[cf.out], o_want)):
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-9, atol=1e-9):
            return f"the step graph's {what} is not the {cf.form} update of its named operands"
    return ""
