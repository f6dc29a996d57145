"""Evaluating one candidate: compile, check against the IR interpreter, then time.

A plain top-level function of picklable arguments, so the same code runs in-process and in a
Ray worker.  It never raises for a bad candidate: a kernel that fails to build, crashes or
disagrees with the reference is a *result* (``status="failed"`` with the reason), because one
broken tiling must not end a tuning run.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rnnc.autotune_db import host_info
from rnnc.errors import RnncError
from rnnc.tune.protocol import ESTIMATE, tunable

OK, FAILED, DUPLICATE = "ok", "failed", "duplicate"


@dataclass
class Outcome:
    """What one candidate came to (JSON-friendly: it crosses process boundaries)."""

    params: dict[str, Any]
    status: str
    identity: str = ""
    time_s: float | None = None
    estimated: bool = False
    estimate_s: float | None = None
    max_error: float | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    seconds: float = 0.0  # wall time spent on this candidate
    host: dict[str, Any] = field(default_factory=dict)  # where it ran (a Ray worker's machine, say)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def max_abs_error(actual: Any, expected: Any) -> float:

    acts = actual if isinstance(actual, tuple) else (actual,)
    exps = expected if isinstance(expected, tuple) else (expected,)
    if len(acts) != len(exps):
        raise RnncError(f"kernel returned {len(acts)} outputs, the reference {len(exps)}")
    worst = 0.0
    for a, e in zip(acts, exps, strict=True):
        if a.shape != e.shape:
            raise RnncError(f"output shape {tuple(a.shape)} differs from the reference {tuple(e.shape)}")
        worst = max(worst, float((a.double() - e.double()).abs().max()) if a.numel() else 0.0)
    return worst


def check(actual: Any, expected: Any, dtype: str, backend: str) -> str:
    """'' when every output matches the reference within the tolerance table, else why not."""
    from rnnc.tolerances import assert_close

    acts = actual if isinstance(actual, tuple) else (actual,)
    exps = expected if isinstance(expected, tuple) else (expected,)
    try:
        for i, (a, e) in enumerate(zip(acts, exps, strict=True)):
            assert_close(a, e, dtype, backend, msg=f"output {i}")
    except AssertionError as exc:
        return f"wrong result vs the IR interpreter: {str(exc).splitlines()[0]}"
    return ""


def time_call(fn: Any, inputs: tuple[Any, ...], repeats: int, max_seconds: float) -> float:
    """Median wall time of ``fn(*inputs)`` over up to ``repeats`` runs after one warm-up,
    stopping early once ``max_seconds`` have been spent (at least one timed run)."""
    fn(*inputs)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < max_seconds):
        t0 = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def evaluate(layer: Any, schedule_json: str, target_tag: str, backend: str, repeats: int = 5,
             max_seconds: float = 2.0, expected: Any = None, seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Compile, check and time one candidate; returns an :class:`Outcome` as a dict.

    ``seen``: identities of kernels already evaluated in this run; a candidate that compiles to
    one of them (two Schedules the backend renders identically) is not timed again."""
    from rnnc.constraints import Schedule
    from rnnc.targets import get

    t0 = time.perf_counter()
    schedule = Schedule.from_json(schedule_json)
    out = Outcome(params=dict(schedule.params), status=FAILED, host={**host_info(), "pid": os.getpid()},
                  estimate_s=schedule.estimate.seconds if schedule.estimate else None)
    try:
        adapter = tunable(backend)
        target = get(target_tag)
        mode = adapter.mode(target)
        built = adapter.build(layer, schedule, target)
        out.identity, out.resources = built.identity, built.resources
        if built.identity in seen:
            out.status, out.reason = DUPLICATE, "compiles to a kernel already measured in this run"
            out.seconds = time.perf_counter() - t0
            return out.to_dict()
        inputs = layer.inputs()
        if expected is None:
            expected = layer.program().run(*inputs)
        actual = built.run(*inputs)
        out.max_error = max_abs_error(actual, expected)
        out.reason = check(actual, expected, layer.dtype, adapter.tolerance)
        if not out.reason:
            if mode == ESTIMATE:
                out.estimated = True
                if out.estimate_s is None:
                    raise RnncError("the schedule has no cost-model estimate to record")
            else:
                out.time_s = time_call(built.run, inputs, repeats, max_seconds)
            out.status = OK
    except RnncError as exc:
        out.reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except Exception as exc:  # a crash in generated code must not end the run
        out.reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    out.seconds = time.perf_counter() - t0
    return out.to_dict()
