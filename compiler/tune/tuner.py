"""The tuner: solver-ranked candidates, each compiled, checked, timed; winners recorded.

Per layer: the backend's untuned default (what compile builds without a record, so a tuned
layer is never slower than an untuned one), then ``rnnc.constraints.candidates``: the top-k
feasible Schedules by the cost model
(the search stays small: no fixed config lists, no 20-minute Triton autotunes); candidates
already measured for this key in the overlay are skipped (so an interrupted run resumes where
it stopped); the rest go to an executor (in-process, or Ray with ``ray=``).

Measured in-process, one timing per candidate is not enough to rank them: on a shared machine
a candidate timed while another process (or another library's spinning thread pool) had a core
reads 10-25% slow or fast, and a tuned record picked by that noise made a layer slower than its
untuned default (GRU B=16 H=128: a "winner" 0.80x the default in the next run).  So the
fastest :data:`FINALISTS` and the untuned default are timed again in :data:`CONFIRM_ROUNDS`
interleaved rounds, and each finalist's record holds the best of those rounds (the first pass
only chooses who is confirmed; one that fails its second check is not recorded); a layer's
records are written once it is confirmed (with first-pass times when the run is interrupted or
the time budget ends first; such records are not confirmed later by a resumed run).  With Ray
(timings from several hosts) and for estimated (compile-only) targets every verified outcome is
appended *as soon as it arrives*, so progress survives a crash.  A wall-clock ``time_budget``
stops launching (and, with Ray, cancels) what is left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnc.autotune_db import OVERLAY, Database, Record
from rnnc.constraints.units import fmt_seconds
from rnnc.tune.evaluate import OK, evaluate
from rnnc.tune.layers import Layer
from rnnc.tune.protocol import ESTIMATE, tunable

#: how many ranked candidates are drawn per wanted one (those a backend renders alike are skipped)
POOL_FACTOR = 8
#: fastest first-pass candidates timed again, beside the untuned default, before recording
FINALISTS = 3
#: interleaved rounds of those second timings
CONFIRM_ROUNDS = 2


@dataclass
class LayerReport:
    """What happened to one layer: every trial, the record now used for it, and why it stopped."""

    label: str
    key_id: str
    mode: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    resumed: int = 0  # candidates skipped because the database already had them
    best: Record | None = None
    stopped: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.label, "key": self.key_id, "mode": self.mode, "resumed": self.resumed,
                "stopped": self.stopped or None, "trials": self.trials,
                "best": self.best.to_dict() if self.best else None}


@dataclass
class TuneReport:
    target: str
    backend: str
    layers: list[LayerReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(lr.best is not None for lr in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "backend": self.backend, "ok": self.ok, "seconds": round(self.seconds, 3),
                "layers": [lr.to_dict() for lr in self.layers]}

    def text(self) -> str:
        lines = [f"tuned {len(self.layers)} layer(s) for {self.target} with the {self.backend} backend "
                 f"in {self.seconds:.1f} s"]
        for lr in self.layers:
            counts: dict[str, int] = {}
            for t in lr.trials:
                counts[t["status"]] = counts.get(t["status"], 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing new"
            lines.append(f"  {lr.label} [{lr.key_id}]: {summary}" + (f", {lr.resumed} already in the database"
                                                                     if lr.resumed else ""))
            if lr.best is None:
                lines.append("    no verified kernel" + (f" ({lr.stopped})" if lr.stopped else ""))
                for t in lr.trials[:3]:
                    if t["reason"]:
                        lines.append(f"    {t['status']}: {t['reason']}")
                continue
            b = lr.best
            what = f"estimated {fmt_seconds(b.estimate_s)} (cost model)" if b.estimated else \
                f"{fmt_seconds(b.time_s)} measured"
            params = ", ".join(f"{k}={v}" for k, v in sorted(b.schedule.get("params", {}).items()))
            lines.append(f"    best: {what}; {params}")
            if lr.stopped:
                lines.append(f"    stopped early: {lr.stopped}")
        return "\n".join(lines)


class Tuner:
    """Tunes layers for one (target, backend) into one database."""

    def __init__(self, target: Any, backend: str = "c", db: Database | None = None, max_candidates: int = 8,
                 time_budget: float | None = None, repeats: int = 5, progress: bool = True,
                 ray: str | bool | None = None, resume: bool = True) -> None:
        from rnnc.targets import get

        self.target = get(target)
        self.backend = backend
        self.adapter = tunable(backend)
        self.mode = self.adapter.mode(self.target)  # raises early for an impossible pairing
        self.db = db if db is not None else Database()
        self.max_candidates = max(1, int(max_candidates))
        self.time_budget = time_budget
        self.repeats = repeats
        self.progress = progress
        self.ray = ray
        self.resume = resume

    # --------------------------------------------------------------------- run
    def tune(self, layers: Sequence[Layer]) -> TuneReport:
        t0 = time.perf_counter()
        deadline = t0 + self.time_budget if self.time_budget else None
        report = TuneReport(self.target.tag, self.backend)
        for layer in layers:
            report.layers.append(self.tune_layer(layer, deadline))
        report.seconds = time.perf_counter() - t0
        return report

    def tune_layer(self, layer: Layer, deadline: float | None = None) -> LayerReport:
        from rnnc.constraints import candidates

        key = layer.key(self.target.tag, self.backend)
        lr = LayerReport(layer.label, key.id, self.mode)
        done = set()
        if self.resume:
            done = {e.record.params() for e in self.db.entries_for(key, warn=False)
                    if e.layer == OVERLAY and not e.stale}
        todo, distinct = [], set()
        # the untuned default first (tuning must never make a layer slower than not tuning), then
        # a wider ranked pool, keeping the first max_candidates the backend renders differently
        default = getattr(self.adapter, "untuned_default", None)
        variants = getattr(self.adapter, "knob_variants", None)
        ranked = list(candidates(self.adapter.problem(layer.problem()), self.target,
                                 self.max_candidates * POOL_FACTOR))
        own = variants(layer, self.target) if variants is not None else []
        # the default, then the backend's own knob variants and the solver's ranked tilings in turn
        pool = ([default(layer, self.target)] if default is not None else []) + _alternate(own, ranked)
        for sched in pool:
            form = self.adapter.rendered(layer, sched)
            if form in distinct:
                continue
            distinct.add(form)
            if tuple(sorted(dict(sched.params).items())) in done:
                lr.resumed += 1
            else:
                todo.append(sched)
            if len(distinct) == self.max_candidates:
                break
        if todo:
            expected = layer.program().run(*layer.inputs())
            bar = _bar(len(todo), layer.label, self.progress)
            seen: set[str] = set()
            confirm = self.mode != ESTIMATE and not self._on_ray
            measured: list[tuple[Any, dict[str, Any]]] = []
            try:
                for sched, outcome in self._execute(layer, todo, expected, seen, deadline):
                    lr.trials.append(outcome)
                    if outcome["status"] == OK:
                        seen.add(outcome["identity"])
                        if confirm:
                            measured.append((sched, outcome))
                        else:
                            self.db.add([self._record(layer, key, sched, outcome)])
                    bar.update(1)
                    bar.set_postfix_str(outcome["status"])
                if measured:
                    lr.trials += self._confirm(layer, measured, expected, pool[0] if default is not None else None,
                                               deadline)
            finally:
                bar.close()
                # written even when interrupted (then with first-pass times), so a resumed run skips them
                if measured:
                    self.db.add([self._record(layer, key, sched, outcome) for sched, outcome in measured])
            if len(lr.trials) < len(todo):
                lr.stopped = f"time budget reached after {len(lr.trials)} of {len(todo)} candidates"
        lr.best = self.db.lookup(key, warn=False)
        return lr

    def _execute(self, layer: Layer, todo: list[Any], expected: Any, seen: set[str],
                 deadline: float | None) -> Iterator[tuple[Any, dict[str, Any]]]:
        if self._on_ray:
            from rnnc.tune.distributed import run_on_ray

            yield from run_on_ray(self.ray, layer, todo, self.target.tag, self.backend, self.repeats, expected,
                                  deadline)
            return
        for sched in todo:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            yield sched, evaluate(layer, sched.to_json(), self.target.tag, self.backend, self.repeats,
                                  expected=expected, seen=frozenset(seen))

    @property
    def _on_ray(self) -> bool:
        """Candidates run as Ray tasks (``ray=`` an address or True), not in this process."""
        return self.ray is not None and self.ray is not False

    def _confirm(self, layer: Layer, measured: list[tuple[Any, dict[str, Any]]], expected: Any,
                 default: Any, deadline: float | None) -> list[dict[str, Any]]:
        """Time the fastest :data:`FINALISTS` and the untuned ``default`` again, in interleaved
        rounds (order rotated each round), and give each the best of those rounds as its
        ``time_s`` (the first pass is kept as ``first_pass_s``).  Until the fastest record is a
        confirmed one it is confirmed too, timed beside the default again (a fourth candidate's
        first time may be below the finalists' second ones).  A candidate that fails a second
        check is dropped (removed from ``measured``; its failed outcome is returned for the
        report).  Past ``deadline`` nothing more is confirmed (the first-pass times stand)."""
        ranked = sorted(range(len(measured)), key=lambda i: measured[i][1]["time_s"])
        base = next((i for i in ranked if measured[i][0] is default), None)
        want = set(ranked[:FINALISTS]) | ({base} if base is not None else set())
        done: set[int] = set()
        failed: dict[int, dict[str, Any]] = {}
        while want - done and (deadline is None or time.perf_counter() < deadline):
            batch = sorted(want - done)
            if done and base is not None and base not in failed:
                batch.append(base)  # later confirmations are timed beside the default again
            again: dict[int, float] = {}
            for r in range(CONFIRM_ROUNDS):
                for i in batch[r % len(batch):] + batch[:r % len(batch)]:
                    if i in failed:
                        continue
                    out = evaluate(layer, measured[i][0].to_json(), self.target.tag, self.backend, self.repeats,
                                   expected=expected)
                    if out["status"] == OK:
                        again[i] = min(again.get(i, float("inf")), out["time_s"])
                    else:
                        failed[i] = out
            for i, t in again.items():
                if i in failed:
                    continue
                outcome = measured[i][1]
                outcome.setdefault("first_pass_s", outcome["time_s"])
                outcome["time_s"] = min(t, outcome["time_s"]) if i in done else t
            done |= set(batch)
            alive = [i for i in range(len(measured)) if i not in failed]
            if not alive:
                break
            want = done | {min(alive, key=lambda i: measured[i][1]["time_s"])}
        for i in sorted(failed, reverse=True):
            del measured[i]
        return list(failed.values())

    def _record(self, layer: Layer, key: Any, sched: Any, outcome: dict[str, Any]) -> Record:
        return Record(
            key=key,
            schedule=sched.with_source("tuned").to_dict(),
            time_s=outcome["time_s"],
            verified=True,
            estimated=self.mode == ESTIMATE,
            estimate_s=outcome["estimate_s"],
            max_error=outcome["max_error"],
            # the identity of the source that was timed: compile checks it builds the same bytes
            resources={**outcome["resources"], "source_sha": outcome["identity"]},
            target_fingerprint=self.db.fingerprint(self.target.tag) or "",
            label=layer.label,
            host={k: str(v) for k, v in outcome["host"].items() if k != "pid"},
        )


def _alternate(a: list[Any], b: list[Any]) -> list[Any]:
    """``a[0], b[0], a[1], b[1], ...`` then the rest of the longer: neither source crowds out the other."""
    out: list[Any] = []
    for i in range(max(len(a), len(b))):
        out += [seq[i] for seq in (a, b) if i < len(seq)]
    return out


def _bar(total: int, label: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="cand", file=sys.stderr, disable=not enabled, leave=False)

