"""What a tuning record is: its key, its value, the file header, and when a record is stale.

A record file is JSONL: line 1 is a header naming the schema and the library versions of the
process that wrote it; every other line is one :class:`Record`.  A record's key is
(layer structural hash, shapes, dtype, target tag, backend) -- never the candidate list, so a
record stays valid however the search space evolves.  Its value is the winning ``Schedule``
(as JSON), the measured time or, when the hardware was not present, ``estimated: true`` with
the cost model's figure and the compiled resources, and when/where it was measured.

This module is pure data (docs/design.md: autotune_db never imports backends or torch): versions are
read from package metadata, not by importing the packages.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from rnnc.errors import UserInputError

SCHEMA_VERSION = 1
#: distribution names whose versions go into every header (``tvm`` ships as ``apache-tvm``)
PACKAGES = {"rnnc": "rnnc", "torch": "torch", "triton": "triton", "tvm": "apache-tvm",
            "onnxruntime": "onnxruntime", "ortools": "ortools"}
#: versions that can change a kernel's speed or correctness, per backend; rnnc itself (it
#: generates the code) always counts.  A backend missing here compares every version.
RELEVANT = {"c": (), "cuda": (), "onnx": ("onnxruntime",), "triton": ("triton", "torch"), "tvm": ("tvm",)}


class RecordError(UserInputError):
    """A record or header that does not follow the schema (the message names what is wrong)."""


def environment() -> dict[str, str]:
    """Versions of the libraries a record depends on ('none' when not installed)."""
    out = {}
    for name, dist in PACKAGES.items():
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = "none"
    return out


def env_id(versions: dict[str, str]) -> str:
    """Short stable fingerprint of a versions dict (names the overlay file a process writes)."""
    return hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:12]


def host_info() -> dict[str, str]:
    """Where a measurement ran: enough to tell machines apart, nothing secret."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "machine": platform.machine(), "system": platform.system(),
            "cpu": cpu}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_header(versions: dict[str, str] | None = None) -> dict[str, Any]:
    return {"rnnc_db": SCHEMA_VERSION, "versions": dict(versions or environment()), "created": now()}


def check_header(data: Any) -> dict[str, Any]:
    """The header as a dict, or RecordError saying why line 1 is not one."""
    if not isinstance(data, dict) or "rnnc_db" not in data:
        raise RecordError("line 1 is not an rnnc record-file header (expected an object with 'rnnc_db')")
    if data["rnnc_db"] != SCHEMA_VERSION:
        raise RecordError(f"schema version {data['rnnc_db']}; this rnnc reads version {SCHEMA_VERSION}")
    if not isinstance(data.get("versions"), dict):
        raise RecordError("header has no 'versions' object")
    return data


@dataclass(frozen=True)
class RecordKey:
    """What a record is for.  ``shapes`` are the sizes the kernel was measured at (batch,
    seq_len, input/hidden sizes); ``layer`` is the cell's structural hash."""

    layer: str
    shapes: tuple[tuple[str, int], ...]
    dtype: str
    target: str
    backend: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "shapes", tuple(sorted((str(k), int(v)) for k, v in dict(self.shapes).items())))

    @property
    def id(self) -> str:
        """Stable short id (what `rnnc db show` takes); independent of process and field order."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "shapes": dict(self.shapes), "dtype": self.dtype, "target": self.target,
                "backend": self.backend}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecordKey:
        return cls(str(d["layer"]), tuple(dict(d["shapes"]).items()), str(d["dtype"]), str(d["target"]),
                   str(d["backend"]))


@dataclass(frozen=True)
class Record:
    """One verified kernel configuration for one key.

    ``time_s`` is the measured median seconds per call (None when ``estimated``);
    ``estimate_s`` the cost model's figure; ``resources`` what the compiler reported (registers,
    shared memory, spills) for compile-only records; ``target_fingerprint`` hashes the target's
    hardware data, so a record for ``cpu/host`` measured on another CPU is recognised as such.
    """

    key: RecordKey
    schedule: dict[str, Any]
    time_s: float | None
    verified: bool = True
    estimated: bool = False
    estimate_s: float | None = None
    max_error: float | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    target_fingerprint: str = ""
    label: str = ""
    measured_at: str = field(default_factory=now)
    host: dict[str, str] = field(default_factory=host_info)

    def __post_init__(self) -> None:
        if not self.estimated and self.time_s is None:
            raise RecordError("a measured record needs time_s (or estimated: true)")
        if self.estimated and self.estimate_s is None:
            raise RecordError("an estimated record needs estimate_s")

    @property
    def score(self) -> tuple[int, float]:
        """Lower is better: verified measurements beat estimates, then faster beats slower."""
        if not self.verified:
            return (2, float("inf"))
        if self.estimated:
            return (1, float(self.estimate_s))
        return (0, float(self.time_s))

    @property
    def seconds(self) -> float:
        return float(self.estimate_s if self.estimated else self.time_s)

    def params(self) -> tuple[tuple[str, Any], ...]:
        """The schedule's parameters: what tells two candidates of one key apart."""
        return tuple(sorted(dict(self.schedule.get("params", {})).items()))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key"] = self.key.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Any) -> Record:
        if not isinstance(d, dict):
            raise RecordError(f"a record must be a JSON object, got {type(d).__name__}")
        try:
            key = RecordKey.from_dict(d["key"])
            if not isinstance(d["schedule"], dict) or "params" not in d["schedule"]:
                raise RecordError("'schedule' is not a Schedule object")
            known = set(cls.__dataclass_fields__) - {"key"}
            return cls(key=key, **{k: v for k, v in d.items() if k in known})
        except RecordError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not a valid record ({type(exc).__name__}: {exc})") from None


def stale_reason(header: dict[str, Any], record: Record, current: dict[str, str],
                 fingerprints: dict[str, str | None]) -> str:
    """Why ``record`` (from a file with ``header``) must not be used here, or '' if it may.

    ``fingerprints`` maps target tags to their current hardware fingerprint (None: unknown
    target on this installation).
    """
    written = header.get("versions", {})
    names = ("rnnc", *RELEVANT.get(record.key.backend, tuple(PACKAGES)))
    changed = [f"{n} {written.get(n, '?')} -> {current.get(n, '?')}" for n in names
               if written.get(n) != current.get(n)]
    if changed:
        return "written by other library versions (" + ", ".join(changed) + ")"
    fp = fingerprints.get(record.key.target)
    if fp is None:
        return f"target {record.key.target!r} is not known to this installation"
    if record.target_fingerprint and record.target_fingerprint != fp:
        return (f"measured on different {record.key.target} hardware "
                f"({record.host.get('cpu') or record.host.get('machine', '?')})")
    return ""
