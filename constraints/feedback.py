"""Compiler feedback: solve, build, read what the compiler did, recalibrate the model, solve again.

Why one loop for every backend: a register model counts what the solver knows (weights,
accumulators, a fixed overhead), while the kernel also needs what only the compiler knows
(index math, layout conversions, broadcast temporaries).  Each GPU backend therefore compiles
the solver's pick, compares the compiler's registers and spills with the prediction and feeds
the difference back as calibration (``ProblemSpec.register_overhead``, ``min_warps``, ...) until
the prediction holds.  The loop itself -- rounds, history, the best acceptable build, when to
stop and why -- is the same everywhere and lives here; a backend supplies only its policy:

* ``solve(calibration)`` returns a Schedule (or raises ``InfeasibleError``);
* ``build(schedule)`` renders and compiles it and returns whatever the backend measures;
* ``judge(calibration, schedule, built)`` returns a :class:`Verdict`: whether the build is
  acceptable (no spills), whether the prediction converged, the next calibration and the round's
  record for the manifest;
* ``infeasible(calibration, error, state)`` (optional) decides what a solve that finds nothing
  means: a new calibration to try, or it raises.

Any callable may raise :class:`Stop` to end the loop with a reason.  Pure library: the callables
carry all backend knowledge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rnnc.errors import InfeasibleError


class Stop(Exception):  # noqa: N818 -- a signal to end the loop, not an error of the user's
    """Raised by a backend's callable to end the feedback loop; its message becomes the note."""


@dataclass(frozen=True)
class Verdict:
    """``fits``: the build is acceptable as it is (spill-free); ``converged``: and its measured
    resources match the prediction, so the loop ends with it; ``calibration``: what to solve with
    next (None: stop); ``record``: the round's entry in the history."""

    fits: bool
    converged: bool = False
    calibration: Mapping[str, Any] | None = None
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Refined:
    """The loop's outcome.  ``best``: the last acceptable (schedule, built), or None; ``last``: the
    last (schedule, built) at all; ``converged``: ``best`` ended the loop by converging;
    ``rounds``: one record per build; ``calibration``: the last one solved with (or the next one,
    when the rounds ran out); ``note``: why the loop stopped without converging (empty when it
    converged); ``exhausted``: it stopped because the rounds ran out."""

    best: tuple[Any, Any] | None
    last: tuple[Any, Any] | None
    converged: bool
    rounds: list[dict[str, Any]]
    calibration: dict[str, Any]
    note: str = ""
    exhausted: bool = False


@dataclass
class State:
    """What an ``infeasible`` policy may look at: the rounds so far and the best build."""

    rounds: list[dict[str, Any]]
    best: tuple[Any, Any] | None


def refine_exhausted(max_rounds: int) -> str:
    """The note of a loop that used all its rounds without converging."""
    return f"no convergence after {max_rounds} rounds of compiler feedback"


def refine(solve: Callable[[Mapping[str, Any]], Any], build: Callable[[Any], Any],
           judge: Callable[[Mapping[str, Any], Any, Any], Verdict], calibration: Mapping[str, Any],
           max_rounds: int, infeasible: Callable[[Mapping[str, Any], InfeasibleError, State], Mapping[str, Any]]
           | None = None) -> Refined:
    """Run the feedback loop for at most ``max_rounds`` solves (see the module docstring).

    A solve that finds nothing goes to ``infeasible`` (default: re-raised); its answer is the
    next calibration.  Builds of a Schedule already built are the backend's to cache."""
    cal = dict(calibration)
    rounds: list[dict[str, Any]] = []
    best = last = None
    note = refine_exhausted(max_rounds)
    for _ in range(max_rounds):
        try:
            try:
                schedule = solve(cal)
            except InfeasibleError as exc:
                if infeasible is None:
                    raise
                cal = dict(infeasible(cal, exc, State(rounds, best)))
                continue
            built = build(schedule)
            last = (schedule, built)
            verdict = judge(cal, schedule, built)
        except Stop as stop:
            note = str(stop)
            break
        rounds.append({**cal, **verdict.record})
        if verdict.fits:
            best = (schedule, built)
            if verdict.converged:
                return Refined(best, last, True, rounds, cal)
        if verdict.calibration is None:
            note = "the backend stopped the feedback" if not verdict.fits else "no further calibration"
            break
        cal = dict(verdict.calibration)
    else:
        return Refined(best, last, False, rounds, cal, note, exhausted=True)
    return Refined(best, last, False, rounds, cal, note)
