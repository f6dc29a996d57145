"""The one ``Schedule`` type of rnnc (docs/design.md convention 6).

Everything that decides *how* a recurrent kernel runs on a target produces a ``Schedule``: the
constraint solvers (``source="solver:rnnc"`` / ``"solver:cpsat"``), hand-written heuristics
(``"heuristic"``) and the tuner (``"tuned"``).  Every backend (Triton, CUDA, C, TVM) renders
from one, and the autotune DB stores them.  So it is deliberately general:

* ``kernel`` names the kernel family the parameters belong to (``fused_recurrence``,
  ``chunked_scan``, ``cpu_fused_recurrence``, ``cpu_chunked_scan``); a backend looks up the
  parameter names it needs in that family's documentation (the problem modules in
  ``rnnc.constraints.problems``) and must not assume anything else;
* ``params`` are the chosen integers/strings as sorted ``(name, value)`` pairs (hashable,
  stable JSON);
* ``resources`` are what the chosen tiling is *predicted* to use (registers per thread,
  shared memory per block, ...) so a backend can check them against what its compiler reports;
* ``estimate`` is a roofline time estimate from the target's datasheet numbers, labelled as
  such: it ranks schedules, it is not a measurement.

``Schedule`` is frozen and hashable, and ``to_json``/``from_json`` round-trip exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from rnnc.errors import UserInputError

from .units import fmt_bytes, fmt_seconds

SCHEMA_VERSION = 1
SOURCES = ("solver:rnnc", "solver:cpsat", "heuristic", "tuned")
KERNELS = ("fused_recurrence", "chunked_scan", "cpu_fused_recurrence", "cpu_chunked_scan")

Value = int | str


@dataclass(frozen=True)
class Resources:
    """Predicted resource use of one kernel launch; fields that do not apply stay None.

    GPU: ``registers_per_thread`` (allocated, rounded to the allocation unit),
    ``shared_memory_per_block`` (bytes, dynamic), ``threads_per_block``, ``blocks`` (grid
    size), ``blocks_per_sm`` (resident), ``occupancy`` (resident warps / max warps per SM),
    ``grid_sync`` (the kernel needs a cooperative launch and a grid-wide barrier per step).
    CPU: ``threads`` and ``cache_footprint`` (bytes per cache level per thread).
    """

    registers_per_thread: int | None = None
    shared_memory_per_block: int | None = None
    threads_per_block: int | None = None
    blocks: int | None = None
    blocks_per_sm: int | None = None
    occupancy: float | None = None
    grid_sync: bool = False
    threads: int | None = None
    cache_footprint: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Estimate:
    """Roofline time estimate for one sequence (all ``seq_len`` steps) -- NOT a measurement."""

    seconds: float
    bound: str
    flops: float
    bytes: float
    note: str = "roofline estimate from datasheet peaks; not measured"


@dataclass(frozen=True)
class Schedule:
    """The chosen tiling of one kernel for one problem on one target."""

    kernel: str
    cell: str
    target: str
    problem: tuple[tuple[str, Any], ...]
    params: tuple[tuple[str, Value], ...]
    resources: Resources = field(default_factory=Resources)
    estimate: Estimate | None = None
    source: str = "heuristic"
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        params = tuple(sorted((str(k), v) for k, v in dict(self.params).items()))
        for name, value in params:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise UserInputError(f"schedule parameter {name!r} must be an int or a string, got {value!r}")
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "problem", tuple(sorted(dict(self.problem).items())))
        if self.source not in SOURCES and not self.source.startswith("solver:"):
            raise UserInputError(f"schedule source must be one of {', '.join(SOURCES)}, got {self.source!r}")

    # ------------------------------------------------------------------ access
    def param(self, name: str, default: Value | None = None) -> Value | None:
        return dict(self.params).get(name, default)

    @property
    def params_dict(self) -> dict[str, Value]:
        return dict(self.params)

    def with_source(self, source: str) -> Schedule:
        return replace(self, source=source)

    def replace(self, **changes: Any) -> Schedule:
        return replace(self, **changes)

    # -------------------------------------------------------------------- json
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "kernel": self.kernel,
            "cell": self.cell,
            "target": self.target,
            "source": self.source,
            "problem": dict(self.problem),
            "params": dict(self.params),
            "resources": {**asdict(self.resources), "cache_footprint": dict(self.resources.cache_footprint)},
            "estimate": asdict(self.estimate) if self.estimate is not None else None,
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        try:
            version = int(data.get("version", SCHEMA_VERSION))
            if version != SCHEMA_VERSION:
                raise UserInputError(f"schedule has schema version {version}; this rnnc reads version {SCHEMA_VERSION}")
            res = dict(data.get("resources") or {})
            res["cache_footprint"] = tuple(sorted((res.get("cache_footprint") or {}).items()))
            known = {f.name for f in fields(Resources)}
            est = data.get("estimate")
            return cls(
                kernel=data["kernel"],
                cell=data["cell"],
                target=data["target"],
                problem=tuple(dict(data["problem"]).items()),
                params=tuple(dict(data["params"]).items()),
                resources=Resources(**{k: v for k, v in res.items() if k in known}),
                estimate=Estimate(**est) if est is not None else None,
                source=data["source"],
                version=version,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserInputError(f"not a valid rnnc schedule: {exc!r}") from None

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"schedule is not valid JSON ({exc.msg} at char {exc.pos})") from None
        if not isinstance(data, dict):
            raise UserInputError("a schedule must be a JSON object")
        return cls.from_dict(data)

    # -------------------------------------------------------------------- text
    def describe(self) -> str:
        """Multi-line human summary (what `rnnc solve` prints)."""
        lines = [f"{self.kernel} for {self.cell} on {self.target} ({self.source})"]
        lines.append("  params:    " + ", ".join(f"{k}={v}" for k, v in self.params))
        r = self.resources
        res = []
        if r.registers_per_thread is not None:
            res.append(f"{r.registers_per_thread} registers/thread")
        if r.shared_memory_per_block is not None:
            res.append(f"{fmt_bytes(r.shared_memory_per_block)} shared memory/block")
        if r.threads_per_block is not None:
            res.append(f"{r.threads_per_block} threads/block")
        if r.blocks is not None:
            res.append(f"{r.blocks} blocks" + (" with grid sync" if r.grid_sync else ""))
        if r.occupancy is not None:
            res.append(f"occupancy {r.occupancy:.0%}")
        if r.threads is not None:
            res.append(f"{r.threads} threads")
        res += [f"{fmt_bytes(v)} in {k}" for k, v in r.cache_footprint]
        lines.append("  resources: " + ", ".join(res))
        if self.estimate is not None:
            e = self.estimate
            lines.append(f"  estimate:  {fmt_seconds(e.seconds)} per sequence, {e.bound}-bound ({e.note})")
        return "\n".join(lines)
