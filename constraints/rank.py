"""The k best tilings, in cost-model order: the candidate list an autotuner measures.

The solver answers "the one best tiling"; a tuner needs the top of the feasible set, because
the cost model ranks well but is not a measurement.  Enumerating the whole feasible set and
sorting would work on small CPU models and explode on GPU ones, so :func:`top_k` runs the same
propagation + branch and bound as :mod:`rnnc.constraints.search`, with the incumbent replaced by
the *k-th best* assignment found so far: a subtree is cut once it cannot beat that one.

Order is total and solver-independent: by objective tuple, ties in the enumeration order of
:mod:`rnnc.constraints.brute` (decisions in creation order, values by preference), so
``top_k(model, 1)`` is exactly what :func:`rnnc.constraints.solve_model` returns and the whole
list equals a sorted brute-force enumeration (what the tests check).
"""

from __future__ import annotations

import bisect
import time

from .model import Model, Solution
from .search import RnncSolver, _Fail, _set


def top_k(model: Model, k: int) -> list[Solution]:
    """The ``k`` best feasible assignments of ``model``, best first (fewer if fewer exist)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    t0 = time.perf_counter()
    solver = RnncSolver(model)
    if model.empty:
        return []
    state = solver._root()
    try:
        solver._propagate(state, list(range(len(solver.props))))
    except _Fail:
        return []
    dec = solver.decisions
    kept: list[tuple[tuple[int, ...], int, list[int]]] = []  # (objective, visit order, values)
    seen = 0
    nodes = 0

    def dfs(i: int, s: tuple[list, list, list]) -> None:
        nonlocal seen, nodes
        L, H, D = s
        while i < len(dec) and L[dec[i]] == H[dec[i]]:
            i += 1
        if i == len(dec):
            vals = model.evaluate({j: L[j] for j in dec})
            if vals is None or not model.feasible(vals):
                return
            entry = (model.objective_value(vals), seen, vals)
            seen += 1
            bisect.insort(kept, entry, key=lambda e: (e[0], e[1]))
            del kept[k:]
            return
        var = dec[i]
        for v in D[var][::-1] if solver.descending[var] else D[var]:
            nodes += 1
            child = (L[:], H[:], D[:])
            try:
                _set(child, var, v, v)
                solver._propagate(child, list(solver.watch[var]))
                if len(kept) == k and solver.obj_vars:
                    solver.impose_better(child, kept[-1][0])
            except _Fail:
                continue
            dfs(i + 1, child)
            if len(kept) == k and not solver.obj_vars:
                return  # no objective: the first k in search order are the answer

    dfs(0, state)
    names = [v.name for v in model.vars]
    seconds = time.perf_counter() - t0
    return [Solution(values=dict(zip(names, vals, strict=True)), objective=obj, solver="rnnc", nodes=nodes,
                     seconds=seconds) for obj, _, vals in kept]
