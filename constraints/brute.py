"""Brute-force enumeration: the ground truth the two real solvers are tested against.

It walks every combination of decision values in exactly the tie-break order the solvers use
(decisions in creation order, values by preference, ``itertools.product`` order) and keeps a
combination only if it is strictly better than the best so far, so on any model small enough
to enumerate it returns the one assignment both solvers must return.
"""

from __future__ import annotations

import itertools
import math
import time

from .model import Model, ModelError, Solution


def combinations(model: Model) -> int:
    """How many decision combinations brute force would visit."""
    return math.prod(len(model.vars[i].values or ()) for i in model.decisions())


def solve(model: Model, limit: int = 2_000_000) -> Solution | None:
    """The optimal assignment by enumeration, or None if infeasible; refuses beyond ``limit``."""
    total = combinations(model)
    if total > limit:
        raise ModelError(f"brute force over {total} combinations exceeds the limit of {limit}")
    t0 = time.perf_counter()
    dec = model.decisions()
    orders = []
    for i in dec:
        v = model.vars[i]
        orders.append(v.values if v.prefer == "min" else v.values[::-1])
    best_vals, best_obj = None, None
    for combo in itertools.product(*orders):
        vals = model.evaluate(dict(zip(dec, combo, strict=True)))
        if vals is None or not model.feasible(vals):
            continue
        obj = model.objective_value(vals)
        if best_obj is None or obj < best_obj:
            best_vals, best_obj = vals, obj
            if not model.objective:
                break
    if best_vals is None:
        return None
    return Solution(
        values={v.name: x for v, x in zip(model.vars, best_vals, strict=True)},
        objective=best_obj or (),
        solver="brute",
        nodes=total,
        seconds=time.perf_counter() - t0,
    )
