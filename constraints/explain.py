"""Why nothing fits, in the device's units, and the smallest change that would.

Three layers, each computed rather than guessed:

1. **demand**: hand-written arithmetic of the problem module ("recurrent weights need 256 MiB
   per head (4 gates x 4096 x 4096 x 4 B); nvidia/t4 has 64 KiB shared memory per block ...");
2. **shortfalls**: for every named resource, drop that one capacity and *minimise* its usage
   subject to everything else; if even the minimum exceeds the capacity, that resource is
   short by exactly that much ("shared memory per block: needs at least 255.8 MiB, has 64 KiB");
3. **suggestions**: re-solve changed problems (grid sync, a 16-bit dtype, more heads, smaller
   hidden/batch/state) and report, per kind of change, the smallest one that fits.  Sizes are
   bisected, assuming that what fits at size n also fits at smaller sizes (each hit is
   verified by a real solve).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rnnc.errors import InfeasibleError, RnncError

from . import search
from .problems import TilingProblem, build
from .spec import ProblemSpec
from .units import fmt_quantity

_ORDERED = ("hidden", "batch", "state_size")  # kinds whose candidates are sizes, largest first
_MAX_TRIES = 48


@dataclass(frozen=True)
class Shortfall:
    resource: str
    what: str
    needed: int
    available: int
    unit: str


@dataclass(frozen=True)
class Suggestion:
    kind: str
    change: str
    spec: ProblemSpec


@dataclass(frozen=True)
class Explanation:
    """Structured reasons; ``text`` is the message users see."""

    problem: ProblemSpec
    target: str
    demand: tuple[str, ...]
    shortfalls: tuple[Shortfall, ...]
    suggestions: tuple[Suggestion, ...]
    failed: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        lines = [f"{self.problem.describe()} on {self.target}: no tiling fits."]
        lines += [f"  - {d}" for d in self.demand]
        for s in self.shortfalls:
            lines.append(f"  - {s.what}: needs at least {fmt_quantity(s.needed, s.unit)}, "
                         f"{self.target} has {fmt_quantity(s.available, s.unit)}")
        if not self.shortfalls:
            lines.append("  - no single resource is short on its own: the constraints only conflict together")
        if self.suggestions:
            lines.append("Smallest changes that fit:")
            lines += [f"  - {s.change}" for s in self.suggestions]
        if self.failed:
            lines.append(f"Not enough on their own: {'; '.join(self.failed)}.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem.to_dict(),
            "target": self.target,
            "feasible": False,
            "demand": list(self.demand),
            "shortfalls": [s.__dict__ for s in self.shortfalls],
            "suggestions": [{"kind": s.kind, "change": s.change} for s in self.suggestions],
            "not_enough": list(self.failed),
            "message": self.text,
        }


class InfeasibleTiling(InfeasibleError):
    """No tiling fits; ``.explanation`` holds the structured reasons."""

    def __init__(self, explanation: Explanation) -> None:
        super().__init__(explanation.text)
        self.explanation = explanation


def shortfalls(problem: TilingProblem) -> list[Shortfall]:
    """Resources whose minimum possible usage (all else respected) exceeds their capacity."""
    out: list[Shortfall] = []
    model = problem.model
    reported: set[str] = set()
    for res in model.resources:
        if res.group in reported:
            continue  # one shortfall per group: per block and per SM say the same thing
        relaxed = model.without_resources(r.name for r in model.resources if r.group == res.group)
        relaxed.minimize(res.usage)
        sol = search.solve(relaxed)
        if sol is None:
            continue
        needed = res.usage.value([sol.values[v.name] for v in relaxed.vars])
        if needed > res.capacity:
            out.append(Shortfall(res.name, res.what, needed, res.capacity, res.unit))
            reported.add(res.group)
    return out


def _fits(spec: ProblemSpec, problem: TilingProblem) -> bool:
    try:
        candidate = build(spec, problem.target)
    except RnncError:  # a candidate the problem cannot even express does not fit
        return False
    return search.solve(candidate.model, first_only=True) is not None


def _first_fit(cands: list[Suggestion], fits: Callable[[Suggestion], bool], ordered: bool) -> Suggestion | None:
    if not cands:
        return None
    if not ordered:
        for c in cands[:_MAX_TRIES]:
            if fits(c):
                return c
        return None
    if not fits(cands[-1]):
        return None
    lo, hi = 0, len(cands) - 1  # cands[hi] fits; find the first (largest size) that fits
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(cands[mid]):
            hi = mid
        else:
            lo = mid + 1
    return cands[hi]


def explain(problem: TilingProblem) -> Explanation:
    """Explain why ``problem`` has no solution (call only when it has none)."""
    groups: dict[str, list[Suggestion]] = {}
    for kind, change, spec in problem.relaxations():
        groups.setdefault(kind, []).append(Suggestion(kind, change, spec))
    found, failed = [], []
    for kind, cands in groups.items():
        hit = _first_fit(cands, lambda c: _fits(c.spec, problem), kind in _ORDERED)
        if hit is not None:
            found.append(hit)
        elif kind not in _ORDERED:
            failed.append(cands[0].change if len(cands) == 1 else f"any {kind} change")
    return Explanation(
        problem=problem.spec,
        target=problem.target.tag,
        demand=tuple(problem.demand()),
        shortfalls=tuple(shortfalls(problem)),
        suggestions=tuple(found),
        failed=tuple(failed),
    )
