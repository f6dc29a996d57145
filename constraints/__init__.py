"""rnnc.constraints: integer tiling models, two solvers over them, and the ``Schedule`` type.

Pure library (docs/design.md convention 5): imports neither torch nor the IR nor any backend.

Typical use::

    from rnnc.constraints import ProblemSpec, solve
    sched = solve(ProblemSpec("lstm", hidden=768, batch=16, dtype="bf16"), "nvidia/h100-sxm")
    sched.param("hidden_tile"), sched.resources.shared_memory_per_block

``solve`` raises :class:`InfeasibleTiling` (an ``rnnc.errors.InfeasibleError``) with a
structured ``.explanation`` when nothing fits.  Lower level: build a :class:`Model` yourself
and call :func:`solve_model` with ``solver="rnnc"`` or ``"cpsat"``; :func:`brute_force`
enumerates small models exactly (what the tests compare both solvers against).
"""

from __future__ import annotations

from collections.abc import Callable

from rnnc.errors import UserInputError
from rnnc.targets import HardwareSpec
from rnnc.targets import get as get_target

from . import brute, rank, search
from .explain import Explanation, InfeasibleTiling, Shortfall, Suggestion, explain
from .model import IntVar, LinExpr, Model, ModelError, Solution
from .problems import PROBLEMS, TilingProblem, build
from .schedule import Estimate, Resources, Schedule
from .spec import CELLS, CellInfo, ProblemSpec

__all__ = [
    "CELLS",
    "PROBLEMS",
    "SOLVERS",
    "CellInfo",
    "Estimate",
    "Explanation",
    "InfeasibleTiling",
    "IntVar",
    "LinExpr",
    "Model",
    "ModelError",
    "ProblemSpec",
    "Resources",
    "Schedule",
    "Shortfall",
    "Solution",
    "Suggestion",
    "TilingProblem",
    "brute_force",
    "build",
    "candidates",
    "explain",
    "solve",
    "solve_model",
]


def _cpsat(model: Model) -> Solution | None:
    from . import cpsat  # OR-Tools is imported only when asked for

    return cpsat.solve(model)


SOLVERS: dict[str, Callable[[Model], Solution | None]] = {"rnnc": search.solve, "cpsat": _cpsat}


def solve_model(model: Model, solver: str = "rnnc") -> Solution | None:
    """Optimal solution of ``model`` (None if infeasible) with the named solver."""
    if solver not in SOLVERS:
        raise UserInputError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[solver](model)


def brute_force(model: Model, limit: int = 2_000_000) -> Solution | None:
    """Exact optimum by enumeration (refuses models with more than ``limit`` combinations)."""
    return brute.solve(model, limit=limit)


def solve(problem: ProblemSpec, target: HardwareSpec | str, solver: str = "rnnc") -> Schedule:
    """The best tiling of ``problem`` on ``target`` as a :class:`Schedule`.

    Raises :class:`InfeasibleTiling` (with ``.explanation``) when no tiling fits, and
    ``UserInputError`` for an unknown target/solver or a dtype the target cannot run.
    """
    spec = get_target(target)
    if not spec.supports(problem.dtype):
        alt = next((d for d in ("bf16", "fp16", "fp32") if d != problem.dtype and spec.supports(d)), None)
        hint = f" (try {alt})" if alt else ""
        raise UserInputError(
            f"{spec.tag} does not support dtype {problem.dtype}{hint}; it supports {', '.join(spec.dtypes)}"
        )
    tiling = build(problem, spec)
    sol = solve_model(tiling.model, solver)
    if sol is None:
        raise InfeasibleTiling(explain(tiling))
    return tiling.schedule(sol, f"solver:{solver}")


def candidates(problem: ProblemSpec, target: HardwareSpec | str, k: int = 8) -> list[Schedule]:
    """Up to ``k`` distinct feasible Schedules of ``problem`` on ``target``, best predicted first.

    What the tuner measures: the top of the cost model's ranking, not a fixed config list.
    ``candidates(p, t, 1)[0]`` equals ``solve(p, t)``.  Raises like :func:`solve` when nothing fits.
    """
    spec = get_target(target)
    first = solve(problem, spec)  # validates dtype/target and explains infeasibility
    tiling = build(problem, spec)
    out: list[Schedule] = []
    seen: set[tuple] = set()
    for sol in rank.top_k(tiling.model, max(k, 1)):
        sched = tiling.schedule(sol, "solver:rnnc")
        if sched.params not in seen:
            seen.add(sched.params)
            out.append(sched)
    return out or [first]
