"""The record database: the shipped records plus a local overlay, looked up overlay first.

* **Shipped** records live in the package (``rnnc/autotune_db/records/*.jsonl``): what the rnnc
  authors measured on real hardware.  Read-only.
* **Overlay**: ``$RNNC_DB`` (a directory), default ``$XDG_CACHE_HOME/rnnc/autotune_db`` (or
  ``~/.cache/rnnc/autotune_db``): what this user's tuning runs wrote.  A process appends to
  ``<target>.<backend>.<env id>.jsonl`` -- one file per library-version environment, so a file's
  header always describes every record in it.

A lookup takes the best usable record of the overlay and falls back to the shipped ones only when
the overlay has none for that key.  Records from other library versions or other hardware
are never used silently: each is skipped with a ``RecordWarning`` saying why (once per file).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import Record, RecordKey, env_id, environment, stale_reason
from .store import FileContents, Problem, RecordWarning, append, read_file, rewrite

SHIPPED_DIR = Path(__file__).resolve().parent / "records"
OVERLAY, SHIPPED = "overlay", "shipped"


def default_overlay() -> Path:
    """``$RNNC_DB`` or the user cache directory (created on first write, not here)."""
    env = os.environ.get("RNNC_DB")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "rnnc" / "autotune_db"


def target_fingerprint(tag: str) -> str | None:
    """Hash of a target's hardware data (None if the tag is unknown here)."""
    from rnnc.errors import RnncError
    from rnnc.targets import get

    try:
        data = get(tag).to_dict()
    except RnncError:
        return None
    data.pop("path", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


@dataclass(frozen=True)
class Entry:
    """A record as found on disk: where, from which layer, and whether it may be used."""

    record: Record
    path: str
    line: int
    layer: str
    stale: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.record.key.id, "file": self.path, "line": self.line, "layer": self.layer,
                "stale": self.stale or None, **self.record.to_dict()}


@dataclass
class Scan:
    """Everything found in the database files."""

    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def usable(self) -> list[Entry]:
        return [e for e in self.entries if not e.stale and e.record.verified]

    def stale(self) -> list[Entry]:
        return [e for e in self.entries if e.stale]


def best(entries: Iterable[Entry]) -> Entry | None:
    """The best usable entry (verified measurements first, then fastest), overlay winning ties."""
    pool = [e for e in entries if not e.stale and e.record.verified]
    return min(pool, key=lambda e: (e.record.score, e.layer != OVERLAY), default=None)


class Database:
    """Shipped records plus a local overlay (see the module docstring)."""

    def __init__(self, overlay: str | Path | None = None, shipped: str | Path | None = SHIPPED_DIR,
                 versions: dict[str, str] | None = None) -> None:
        self.overlay = Path(overlay).expanduser() if overlay is not None else default_overlay()
        self.shipped = Path(shipped) if shipped is not None else None
        self.versions = dict(versions or environment())
        self._fingerprints: dict[str, str | None] = {}

    # ------------------------------------------------------------------ reading
    def files(self) -> list[tuple[str, Path]]:
        out = [(OVERLAY, p) for p in sorted(self.overlay.glob("*.jsonl"))] if self.overlay.is_dir() else []
        if self.shipped is not None and self.shipped.is_dir():
            out += [(SHIPPED, p) for p in sorted(self.shipped.glob("*.jsonl"))]
        return out

    def fingerprint(self, tag: str) -> str | None:
        if tag not in self._fingerprints:
            self._fingerprints[tag] = target_fingerprint(tag)
        return self._fingerprints[tag]

    def classify(self, contents: FileContents, layer: str) -> list[Entry]:
        """Entries of one file with their staleness decided against this environment."""
        out = []
        for line, rec in contents.records:
            fps = {rec.key.target: self.fingerprint(rec.key.target)}
            reason = stale_reason(contents.header or {}, rec, self.versions, fps)
            out.append(Entry(rec, str(contents.path), line, layer, reason))
        return out

    def scan(self, warn: bool = True) -> Scan:
        """Read every file; corrupt lines and stale records are warned about (once per file)."""
        result = Scan()
        for layer, path in self.files():
            contents = read_file(path, warn=warn)
            result.problems += contents.problems
            entries = self.classify(contents, layer)
            result.entries += entries
            stale = [e for e in entries if e.stale]
            if warn and stale:
                warnings.warn(f"{path}: {len(stale)} record(s) not used: {stale[0].stale}; run `rnnc db prune` "
                              "to drop them or re-tune", RecordWarning, stacklevel=2)
        return result

    def entries_for(self, key: RecordKey, warn: bool = True) -> list[Entry]:
        kid = key.id
        return [e for e in self.scan(warn).entries if e.record.key.id == kid]

    def lookup(self, key: RecordKey, warn: bool = True) -> Record | None:
        """The record to use for ``key``: the overlay's best, else the shipped best, else None."""
        entries = self.entries_for(key, warn)
        hit = best(e for e in entries if e.layer == OVERLAY) or best(entries)
        return hit.record if hit is not None else None

    # ------------------------------------------------------------------ writing
    def overlay_file(self, key: RecordKey) -> Path:
        return self.overlay / f"{_slug(key.target)}.{_slug(key.backend)}.{env_id(self.versions)}.jsonl"

    def add(self, records: Sequence[Record]) -> None:
        """Append records to the overlay (grouped per file, one atomic append each)."""
        groups: dict[Path, list[Record]] = {}
        for r in records:
            if not r.verified:
                raise ValueError("only verified records are written to the database")
            groups.setdefault(self.overlay_file(r.key), []).append(r)
        for path, recs in groups.items():
            append(path, recs, self.versions)

    def merge(self, sources: Sequence[str | Path], dest: str | Path) -> dict[str, Any]:
        """Write ``dest`` with the best usable record per key from ``sources`` (files or dirs);
        stale and unverified records are dropped, never relabelled with this header."""
        paths: list[Path] = []
        for s in map(Path, sources):
            paths += sorted(s.glob("*.jsonl")) if s.is_dir() else [s]
        dest = Path(dest)
        entries, problems, dropped = [], [], []
        for p in paths:
            contents = read_file(p, warn=False)
            problems += contents.problems
            for e in self.classify(contents, "source"):
                (dropped if e.stale or not e.record.verified else entries).append(e)
        if dest.exists():  # merging into an existing file keeps its usable records
            contents = read_file(dest, warn=False)
            problems += contents.problems
            entries += [e for e in self.classify(contents, "dest") if not e.stale]
        winners: dict[str, Entry] = {}
        for e in entries:
            cur = winners.get(e.record.key.id)
            if cur is None or e.record.score < cur.record.score:
                winners[e.record.key.id] = e
        rewrite(dest, [e.record for e in winners.values()], self.versions)
        return {"dest": str(dest), "read": len(entries), "kept": len(winners),
                "dropped_stale": [f"{e.path}:{e.line}: {e.stale or 'unverified'}" for e in dropped],
                "problems": [str(p) for p in problems]}

    def prune(self, dedupe: bool = False, dry_run: bool = False) -> dict[str, Any]:
        """Drop stale records and corrupt lines from the overlay (shipped files are read-only);
        ``dedupe`` also keeps only the best record per key in each file."""
        report: dict[str, Any] = {"files": [], "removed_records": 0, "removed_lines": 0}
        for layer, path in self.files():
            if layer != OVERLAY:
                continue
            contents = read_file(path, warn=False)
            entries = self.classify(contents, layer)
            keep = [e for e in entries if not e.stale]
            if dedupe:
                bests: dict[str, Entry] = {}
                for e in keep:
                    if e.record.key.id not in bests or e.record.score < bests[e.record.key.id].record.score:
                        bests[e.record.key.id] = e
                keep = sorted(bests.values(), key=lambda e: e.line)
            removed = len(entries) - len(keep)
            if removed or contents.problems:
                report["files"].append({"file": str(path), "removed_records": removed,
                                        "removed_lines": len(contents.problems), "kept": len(keep)})
                report["removed_records"] += removed
                report["removed_lines"] += len(contents.problems)
                if not dry_run:
                    versions = (contents.header or {}).get("versions", self.versions)
                    rewrite(path, [e.record for e in keep], versions)
        return report
