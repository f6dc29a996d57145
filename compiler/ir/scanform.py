"""Derive a linear cell's scan form from its IR step graph: which states follow ``s_t = A_t s_{t-1} + b_t``.

Why: a chunked parallel scan is legal only for recurrences that are affine (or max-plus) in the
state, and the Triton backend must find that structure in *any* cell whose ``recurrence`` is
``linear`` -- minGRU, minLSTM, LRU, Mamba S6, mLSTM and user-written cells alike -- instead of
carrying a hand-written kernel per cell.  It lives in the IR because the frontend asks it too:
whether a loop it rolled back (``frontend/scan.py``) is a linear recurrence (:func:`is_linear`).

How: the step graph is evaluated over all ``T * B`` rows at once (time-major rows) with torch,
but the states that are not known yet enter as *symbols*.  Each value is then either a tensor
(state-free: the "pre" part, one batched evaluation), an :class:`Affine` form
``sum_u coef_u * u + const`` (elementwise coefficients, built by add/sub/neg/mul/div/cast
only), a :class:`MaxPlus` form ``max(u + a, b)`` (the stabiliser of exponential gating:
``m' = max(log f + m, i)``), or :class:`Opaque` (nonlinear in an unknown state).  A *stage*
solves the unknown states whose new value is Affine/MaxPlus in unknown states of the same
stage only; once a stage's state sequences are known (the scan's output) they enter the next
evaluation as plain tensors, which makes e.g. the mLSTM's ``C``/``n`` updates affine (their
gates depend on the stabiliser ``m``, solved by the first stage).  Affine states coupled to
each other (LRU's ``h_re``/``h_im``: a complex diagonal recurrence in real arithmetic) form one
*component* scanned with ``S x S`` per-element coefficient matrices.  The readout ``y`` is the
step graph evaluated once more with every previous state known.

Nothing here knows a cell by name; a cell that does not fit is declined with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rnnc.errors import UnsupportedError
from rnnc.ir.graph import Cell, Node

#: ops that keep an affine form affine (with a state-free other operand where binary)
AFFINE_OPS = frozenset(("add", "sub", "neg", "mul", "div", "cast"))


@dataclass
class Affine:
    """``sum_u coefs[u] * u + const``; a coefficient of ``1.0`` (float) is the identity."""

    coefs: dict[str, Any]
    const: Any = None


@dataclass
class MaxPlus:
    """``max(state + a, b)`` (``a``/``b`` state-free): associative under (max, +)."""

    state: str
    a: Any
    b: Any


@dataclass
class Opaque:
    """A value that depends on the unknown ``states`` in a way no scan can express."""

    states: frozenset[str]
    why: str


@dataclass(frozen=True)
class Component:
    """States scanned together: ``kind`` ``affine`` (``S = len(states)``) or ``maxplus`` (one state)."""

    kind: str
    states: tuple[str, ...]
    features: int  # elements per batch row of each state

    @property
    def size(self) -> int:
        return len(self.states)


@dataclass(frozen=True)
class ScanPlan:
    """The stages of one linear cell; each stage is a tuple of components solved by one scan each."""

    cell: Cell
    stages: tuple[tuple[Component, ...], ...]

    @property
    def components(self) -> tuple[Component, ...]:
        return tuple(c for stage in self.stages for c in stage)


def _fail(cell: Cell, what: str) -> UnsupportedError:
    return UnsupportedError(f"the Triton backend cannot render linear cell {cell.kind!r} as a chunked scan: {what}")


def _symbolic(v: Any) -> bool:
    return isinstance(v, (Affine, MaxPlus, Opaque))


def _deps(v: Any) -> frozenset[str]:
    if isinstance(v, Affine):
        return frozenset(v.coefs)
    if isinstance(v, MaxPlus):
        return frozenset((v.state,))
    return v.states if isinstance(v, Opaque) else frozenset()


def _scale(form: Affine, factor: Any, divide: bool = False) -> Affine:
    op = (lambda c: c / factor) if divide else (lambda c: c * factor)
    return Affine({u: op(c) for u, c in form.coefs.items()}, None if form.const is None else op(form.const))


def _add(a: Any, b: Any, sign: float = 1.0) -> Affine:
    """``a + sign * b`` where at least one side is Affine and the other Affine or a tensor."""
    if not isinstance(b, Affine):
        b = Affine({}, b)
    if not isinstance(a, Affine):
        a = Affine({}, a)
    coefs = dict(a.coefs)
    for u, c in b.coefs.items():
        c = c if sign == 1.0 else -c
        coefs[u] = coefs[u] + c if u in coefs else c
    if b.const is None:
        const = a.const
    else:
        bc = b.const if sign == 1.0 else -b.const
        const = bc if a.const is None else a.const + bc
    return Affine(coefs, const)


def _symbolic_node(node: Node, args: list[Any]) -> Any:
    """The form of ``node``'s (single) output when an input is symbolic."""
    op = node.op
    deps = frozenset().union(*(_deps(a) for a in args))
    if any(isinstance(a, Opaque) for a in args):
        return Opaque(deps, next(a.why for a in args if isinstance(a, Opaque)))
    if op not in AFFINE_OPS and op != "max":
        return Opaque(deps, f"{node.label} applies {op!r} to a state")
    if any(isinstance(a, MaxPlus) for a in args):
        return Opaque(deps, f"{node.label} uses a max-plus value in {op!r}")
    if op == "cast":  # float to float keeps the form; rounding to an integer or a bool does not
        if node.attr("dtype") in ("float32", "float16", "bfloat16", "float64"):
            return args[0]
        return Opaque(deps, f"{node.label} casts a state to {node.attr('dtype')}")
    if op == "neg":
        return _scale(args[0], -1.0)
    x, y = args[0], args[1]
    if op == "add":
        return _add(x, y)
    if op == "sub":
        return _add(x, y, -1.0)
    if op == "mul":
        if isinstance(x, Affine) and isinstance(y, Affine):
            return Opaque(deps, f"{node.label} multiplies two state-dependent values")
        return _scale(x, y) if isinstance(x, Affine) else _scale(y, x)
    if op == "div":
        if isinstance(y, Affine):
            return Opaque(deps, f"{node.label} divides by a state-dependent value")
        return _scale(x, y, divide=True)
    # max: max(u + a, b) with an identity coefficient on exactly one state
    sym, other = (x, y) if isinstance(x, Affine) else (y, x)
    if isinstance(other, Affine) or len(sym.coefs) != 1:
        return Opaque(deps, f"{node.label}: max of two state-dependent values")
    (u, c), = sym.coefs.items()
    if not (isinstance(c, float) and c == 1.0):
        return Opaque(deps, f"{node.label}: max(c * state + a, b) with c != 1 is not max-plus")
    return MaxPlus(u, 0.0 if sym.const is None else sym.const, other)


def evaluate(cell: Cell, env: Mapping[str, Any], unknown: tuple[str, ...]) -> dict[str, Any]:
    """Every value of ``cell.step`` given ``env`` (x, params, known states as tensors over all
    rows); the ``unknown`` states enter as identity Affine symbols."""
    from rnnc.ir.ops import OPS

    values: dict[str, Any] = dict(env)
    for s in unknown:
        values[s] = Affine({s: 1.0})
    for node in cell.step.nodes:
        args = [values[i] if i else None for i in node.inputs]
        if any(_symbolic(a) for a in args):
            if len(node.outputs) != 1:
                deps = frozenset().union(*(_deps(a) for a in args))
                outs: tuple[Any, ...] = tuple(Opaque(deps, f"{node.label} applies {node.op!r} to a state")
                                              for _ in node.outputs)
            else:
                outs = (_symbolic_node(node, args),)
        else:
            op = OPS[node.op]
            while args and args[-1] is None and len(args) > op.min_inputs:
                args.pop()
            outs = op.evaluate(args, node.attr_dict)
        values.update(zip(node.outputs, outs, strict=True))
    return values


def solvable(cell: Cell, forms: Mapping[str, Any], unknown: tuple[str, ...]) -> tuple[Component, ...]:
    """The components of the next stage: unknown states whose update only involves unknown states
    that are themselves solvable (fixpoint), grouped by coupling; raises when none is."""
    ok = {s for s in unknown if isinstance(forms[s], (Affine, MaxPlus)) or not _symbolic(forms[s])}
    changed = True
    while changed:
        changed = False
        for s in sorted(ok):
            if not _deps(forms[s]) <= ok:
                ok.discard(s)
                changed = True
    if not ok:
        reasons = "; ".join(f"{s}: {forms[s].why}" for s in unknown if isinstance(forms[s], Opaque))
        raise _fail(cell, f"no state update is affine (a * s + b) or max-plus in the remaining states "
                          f"{list(unknown)} ({reasons or 'cyclic dependency'})")
    # coupled affine states form one component (union of dependency edges)
    groups: list[set[str]] = []
    for s in sorted(ok, key=unknown.index):
        linked = {s} | set(_deps(forms[s]))
        hit = [g for g in groups if g & linked]
        merged = set().union(linked, *hit)
        groups = [g for g in groups if not g & linked] + [merged]
    sizes = {s.name: int(_numel(s.shape)) for s in cell.states}
    out = []
    for g in groups:
        names = tuple(s for s in unknown if s in g)
        if any(isinstance(forms[s], MaxPlus) for s in names):
            if len(names) != 1:
                raise _fail(cell, f"states {list(names)} couple a max-plus update with others")
            out.append(Component("maxplus", names, sizes[names[0]]))
            continue
        if len({sizes[s] for s in names}) != 1:
            raise _fail(cell, f"coupled states {list(names)} have different sizes")
        out.append(Component("affine", names, sizes[names[0]]))
    return tuple(out)


def _numel(shape: tuple) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def plan_scan(cell: Cell) -> ScanPlan:
    """The :class:`ScanPlan` of ``cell`` from a dry run on one random row (shapes and structure
    only: coefficient *values* never decide the plan); raises :class:`UnsupportedError`."""
    import torch

    if cell.recurrence != "linear":
        raise _fail(cell, f"its recurrence is {cell.recurrence}")
    step = cell.step
    types = step.value_types()
    for s in cell.states:
        if s.dtype not in ("float32", "float16", "bfloat16") or any(not isinstance(d, int) for d in s.shape):
            raise _fail(cell, f"state {s.name} is {s.dtype}{list(s.shape)}; only float states of fixed shape scan")
    gen = torch.Generator().manual_seed(0)

    def sample(name: str, rows: int) -> Any:
        shape = [rows if not isinstance(d, int) else d for d in types[name].shape]
        return torch.rand(shape, generator=gen) * 0.5 + 0.25

    env = {step.input_names[0]: sample(step.input_names[0], 1), **{p: sample(p, 1) for p in step.param_names}}
    unknown = tuple(cell.state_names)
    stages = []
    while unknown:
        try:
            forms = evaluate(cell, env, unknown)
        except (RuntimeError, TypeError, ValueError) as exc:  # a symbolic value reached a torch op
            raise _fail(cell, f"evaluating the step graph symbolically failed: {exc}") from None
        comps = solvable(cell, {s: forms[o] for s, o in zip(cell.state_names, _new_state_values(cell), strict=True)},
                         unknown)
        stages.append(comps)
        done = {s for c in comps for s in c.states}
        for s in done:
            env[s] = sample(s, 1)
        unknown = tuple(s for s in unknown if s not in done)
    return ScanPlan(cell, tuple(stages))


def _new_state_values(cell: Cell) -> list[str]:
    """The step-graph value that is each state's next value (outputs named like the states)."""
    outs = dict(cell.step.outputs)
    return [outs[s] for s in cell.state_names]


def coefficients(comp: Component, form: Any, rows: int, shape: tuple[int, ...], device: Any = None
                 ) -> tuple[Any, Any]:
    """Dense fp32 coefficient tensors of one component's state for all ``rows``:
    affine -> ``A [rows, S, F]`` (row of the S x S matrix for this state) and ``b [rows, F]``;
    max-plus -> ``a [rows, F]``, ``b [rows, F]``; a state-free update -> ``A = 0``, ``b`` = it."""
    import torch

    def dense(v: Any) -> Any:
        t = torch.as_tensor(v, dtype=torch.float32, device=device)
        return t.float().expand(rows, *shape).reshape(rows, -1)

    if isinstance(form, MaxPlus):
        return dense(form.a), dense(form.b)
    if not isinstance(form, Affine):  # state-free: s_t = b_t
        return torch.zeros(rows, comp.size, comp.features, device=device), dense(form)
    a = torch.stack([dense(form.coefs.get(u, 0.0)) for u in comp.states], dim=1)
    return a, dense(0.0 if form.const is None else form.const)


def is_linear(cell: Cell) -> bool:
    """Whether ``cell``'s state updates are affine or max-plus in the states (a scan plan exists
    when the cell is read as ``linear``): a structural fact of the step graph, so a cell the
    frontend built from a user's loop can say it without the user declaring it."""
    from dataclasses import replace

    try:
        plan_scan(replace(cell, recurrence="linear"))
    except Exception:  # noqa: BLE001 -- no plan, for whatever reason: not known to be linear
        return False
    return True
