"""One answer to "which schedule does this layer get, and where did it come from?".

``rnnc.compile`` (API) and ``rnnc compile`` (CLI) both ask :func:`resolve_schedules`: a verified
record of the tuning database for (layer, shapes, target, backend) first, else the backend's
untuned default, which each backend names truthfully (``DEFAULTS``) -- so ``explain()`` and the
manifest say what really shaped each kernel, not what might have.  The tuner's first candidate
is that same untuned default (``Tuner.tune_layer``), so a record can only replace it with
something measured faster.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from rnnc.errors import RnncError

#: what a backend builds a layer from when the database has no record for it
DEFAULTS = {
    "c": "untuned default: knobs from the target's vector width, registers and caches, int8 weights "
         "streamed or widened by the CPU cost model (rnnc.lower.knobs.cpu_knobs, rnnc.lower.cpu_cost)",
    "cuda": "solver (rnnc.constraints), refitted until ptxas meets its register prediction",
    "triton": "solver (rnnc.constraints)",
    "tvm": "solver (rnnc.constraints)",
    "onnx": "onnxruntime's own kernels (no schedule)",
}


@dataclass
class Resolved:
    """Per layer key: the Schedule to build with (absent: the backend default) and its source."""

    schedules: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)  # measured seconds of each tuned layer
    identities: dict[str, str] = field(default_factory=dict)  # the timed kernel's source hash, per layer

    def check_built(self, backend: str, runner: Any) -> None:
        """Append to each tuned layer's provenance whether the kernel just built is byte for byte
        the one the record timed (a changed rnnc may render a record's schedule differently)."""
        from rnnc.tune.protocol import tunable

        try:
            adapter = tunable(backend)
        except RnncError:
            return
        built = getattr(adapter, "built_identity", None)
        for key, want in self.identities.items():
            got = built(runner, key, self.schedules[key]) if built is not None else None
            if got is None:
                continue
            self.provenance[key] += ("; source identical to the timed kernel" if got == want else
                                     "; WARNING: the source differs from the timed kernel (rnnc changed since "
                                     "tuning): re-tune this layer")

    @property
    def fully_measured(self) -> bool:
        """Every layer has a measured (not estimated) record: the backend's time is known."""
        return bool(self.provenance) and set(self.times) == set(self.provenance)

    @property
    def total_s(self) -> float:
        return sum(self.times.values())

    def lines(self) -> list[str]:
        return [f"layer {key}: schedule from {src}" for key, src in self.provenance.items()]


def fastest_backend(program: Any, target: Any, able: list[str], batch: int = 1,
                    db: Any = None) -> tuple[str | None, dict[str, Resolved], str]:
    """Among ``able`` backends, the one whose measured records make ``program`` fastest (every
    layer recorded; the backend is part of the search, ``rnnc tune --backend all``), the
    resolutions of each, and a sentence for ``explain()``; ``None`` when no backend has
    measured records for every layer (then the preference order decides)."""
    from rnnc.constraints.units import fmt_seconds

    db = db if db is not None else _open_db()  # one database (and one environment probe) for all
    per = {name: resolve_schedules(program, target, name, batch, db=db) for name in able}
    timed = {name: r.total_s for name, r in per.items() if r.fully_measured}
    if not timed:
        return None, per, ""
    best = min(timed, key=timed.__getitem__)
    text = "tuned records: " + ", ".join(f"{n} {fmt_seconds(t)}" for n, t in sorted(timed.items(),
                                                                                   key=lambda kv: kv[1]))
    return best, per, text + f" -> {best}"


def node_backends(program: Any, per: dict[str, Resolved]) -> tuple[dict[str, str], list[str]]:
    """Per ``rnn`` node (by its first output), the backend whose measured records make that node
    fastest -- among those with a measured record for every layer of the node -- and a line per
    node for ``explain()``; nodes no backend has measured are left out."""
    from rnnc.constraints.units import fmt_seconds
    from rnnc.ir import layer_key

    assign, lines = {}, []
    for node in program.rnn_nodes():
        keys = [layer_key(cell) for cell in node.attr("cells")]
        timed = {b: sum(r.times[k] for k in keys) for b, r in per.items() if all(k in r.times for k in keys)}
        if timed:
            best = min(timed, key=timed.__getitem__)
            assign[node.outputs[0]] = best
            lines.append(f"rnn node {node.outputs[0]} on {best} (" + ", ".join(
                f"{b} {fmt_seconds(t)}" for b, t in sorted(timed.items(), key=lambda kv: kv[1])) + ")")
    return assign, lines


def _open_db() -> Any:
    """The tuning database (overlay + shipped), or None with a warning when it cannot be opened."""
    from rnnc.autotune_db import Database

    try:
        return Database()
    except Exception as exc:  # the database is an accelerator, never a reason to fail
        warnings.warn(f"tuning database not used: {type(exc).__name__}: {exc}", stacklevel=3)
        return None


def default_source(backend: str) -> str:
    return DEFAULTS.get(backend, "solver (rnnc.constraints)")


def _record_source(rec: Any) -> str:
    from rnnc.constraints.units import fmt_seconds

    params = ", ".join(f"{k}={v}" for k, v in sorted(rec.schedule.get("params", {}).items())) or "untuned knobs"
    what = f"estimated {fmt_seconds(rec.estimate_s)}" if rec.estimated else f"{fmt_seconds(rec.time_s)} measured"
    return f"tuned record ({what}; {params})"


def resolve_schedules(program: Any, target: Any, backend: str, batch: int = 1, use_db: bool = True,
                      db: Any = None) -> Resolved:
    """Schedules for every recurrent layer of ``program`` (layer key -> Schedule) and where each
    came from.  A broken database is reported once and never stops a compile."""
    from rnnc.constraints import Schedule
    from rnnc.ir import layer_key
    from rnnc.ir.printer import layer_storage
    from rnnc.tune.api import lookup_record

    out = Resolved()
    tag = getattr(target, "tag", target)
    storage = layer_storage(program)
    if use_db and db is None:
        db = _open_db()
        use_db = db is not None
    for node in program.rnn_nodes():
        for cell in node.attr("cells"):
            key = layer_key(cell)
            if key in out.provenance:
                continue
            rec = None
            if use_db:
                try:
                    rec = lookup_record(cell, tag, backend, batch=batch, db=db, dtype=storage[key])
                except Exception as exc:  # the database is an accelerator, never a reason to fail
                    warnings.warn(f"tuning database not used: {type(exc).__name__}: {exc}", stacklevel=2)
                    use_db = False
            if rec is not None:
                out.schedules[key] = Schedule.from_dict(rec.schedule)
                out.provenance[key] = _record_source(rec)
                if not rec.estimated and rec.time_s is not None:
                    out.times[key] = float(rec.time_s)
                if rec.resources.get("source_sha"):
                    out.identities[key] = str(rec.resources["source_sha"])
            else:
                out.provenance[key] = default_source(backend)
    return out
