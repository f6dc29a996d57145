"""OR-Tools CP-SAT backend over the very same :class:`Model` the rnnc solver uses.

Why keep it: CP-SAT is an independent, industrial-strength check on rnnc's own solver (the
tests require both to return the same assignment) and a fallback for models that outgrow
pure-Python search.  OR-Tools is imported lazily because the import alone takes ~0.4 s.

Lexicographic objectives and the shared tie-break are solved in stages: minimise level 1, fix
it, minimise level 2, ...; then the ties between optimal assignments are broken by minimising
the *rank* of every decision's value in its preference order (an element constraint per
decision), weighted so that earlier decisions dominate.  When those weights would overflow
64-bit integers, the ranks are minimised one decision at a time instead.

CP-SAT's presolve is switched off: in OR-Tools 9.15 it reports INFEASIBLE for some feasible
models of this shape (google/or-tools#5274; a minimal reproducer is in the tests).
"""

from __future__ import annotations

import math
import time
from typing import Any

from .model import DECISION, LINEAR, MAXIMUM, PRODUCT, QUOTIENT, Divides, Linear, Model, ModelError, Solution

_INT_MIN, _INT_MAX = -(2**62), 2**62


def _expr(xs: list[Any], e: Any) -> Any:
    return sum((c * xs[i] for i, c in e.terms), e.const)


def _build(model: Model) -> tuple[Any, list[Any]]:
    from ortools.sat.python import cp_model

    cp = cp_model.CpModel()
    xs: list[Any] = []
    for v in model.vars:
        if v.kind == DECISION:
            xs.append(cp.new_int_var_from_domain(cp_model.Domain.from_values(list(v.values)), v.name))
        else:
            xs.append(cp.new_int_var(v.lo, v.hi, v.name))
    for i, v in enumerate(model.vars):
        if v.kind == PRODUCT:
            cp.add_multiplication_equality(xs[i], [xs[v.args[0]], xs[v.args[1]]])
        elif v.kind == QUOTIENT:
            cp.add_multiplication_equality(xs[v.args[0]], [xs[i], xs[v.args[1]]])
        elif v.kind == LINEAR:
            cp.add(xs[i] == _expr(xs, v.args[0]))
        elif v.kind == MAXIMUM:
            cp.add_max_equality(xs[i], [xs[j] for j in v.args])
    for k, c in enumerate(model.constraints):
        if isinstance(c, Linear):
            lo = _INT_MIN if c.lo is None else c.lo
            hi = _INT_MAX if c.hi is None else c.hi
            cp.add_linear_constraint(_expr(xs, c.expr), lo, hi)
        elif isinstance(c, Divides):
            d, x = model.vars[c.divisor], model.vars[c.dividend]
            mult = cp.new_int_var(0, x.hi // max(1, d.lo), f"div{k}")
            cp.add_multiplication_equality(xs[c.dividend], [xs[c.divisor], mult])
    return cp, xs


def _run(cp: Any, workers: int, time_limit_s: float) -> tuple[Any, int]:
    from ortools.sat.python import cp_model

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    # Presolve off: OR-Tools 9.15 presolve wrongly reports INFEASIBLE on some of these models
    # (see google/or-tools#5274; tests/constraints reproduces one with products and a max).
    # The models are tiny, so presolve buys nothing here anyway.
    solver.parameters.cp_model_presolve = False
    solver.parameters.max_time_in_seconds = time_limit_s
    status = solver.solve(cp)
    if status == cp_model.MODEL_INVALID:
        raise ModelError(f"CP-SAT rejected the model: {cp.validate()}")
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.INFEASIBLE):
        raise ModelError(f"CP-SAT gave up (status {solver.status_name(status)}) within {time_limit_s} s")
    if status == cp_model.FEASIBLE and cp.has_objective():
        raise ModelError(f"CP-SAT found a solution but could not prove it optimal within {time_limit_s} s")
    return solver, status


def solve(model: Model, time_limit_s: float = 30.0, workers: int = 1) -> Solution | None:
    """Optimal assignment by CP-SAT with rnnc's tie-break, or None if infeasible."""
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    if model.empty:  # a defined variable no input can produce: infeasible before any search
        return None
    cp, xs = _build(model)
    solver = None
    for level in model.objective:
        cp.minimize(_expr(xs, level))
        solver, status = _run(cp, workers, time_limit_s)
        if status == cp_model.INFEASIBLE:
            return None
        cp.add(_expr(xs, level) == int(solver.value(_expr(xs, level))))
    ranks, weights = [], []
    for i in model.decisions():
        v = model.vars[i]
        if len(v.values) < 2:
            continue
        order = list(v.values if v.prefer == "min" else v.values[::-1])
        r = cp.new_int_var(0, len(order) - 1, f"rank_{v.name}")
        cp.add_element(r, order, xs[i])
        ranks.append(r)
        weights.append(len(order))
    stages: list[Any] = []
    if ranks:
        if math.prod(weights) < _INT_MAX:
            w, coefs = 1, []
            for n in reversed(weights):
                coefs.append(w)
                w *= n
            stages = [sum(c * r for c, r in zip(reversed(coefs), ranks, strict=True))]
        else:
            stages = list(ranks)
    for stage in stages:
        cp.minimize(stage)
        solver, status = _run(cp, workers, time_limit_s)
        if status == cp_model.INFEASIBLE:
            return None
        cp.add(stage == int(solver.value(stage)))
    if solver is None:  # no objective and nothing to break ties on: any solution is the answer
        solver, status = _run(cp, workers, time_limit_s)
        if status == cp_model.INFEASIBLE:
            return None
    values = {v.name: int(solver.value(xs[i])) for i, v in enumerate(model.vars)}
    ordered = [values[v.name] for v in model.vars]
    return Solution(
        values=values,
        objective=model.objective_value(ordered),
        solver="cpsat",
        nodes=0,
        seconds=time.perf_counter() - t0,
    )
