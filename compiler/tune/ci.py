"""CI mode: does every model x target in ``models.yaml`` have a valid, current record?

``rnnc tune --ci --models models.yaml --targets cpu/host`` and ``rnnc db check --models ...``
exit non-zero when a layer has no record, only stale ones (other library versions or other
hardware), when a database file has corrupt lines, or -- with ``remeasure`` -- when the recorded
kernel now runs slower than its record by more than ``threshold``.  ``refresh`` tunes what is
missing, stale or regressed and checks again.

``models.yaml``::

    defaults: {batch: 1, seq_len: 100, backends: {cpu: c, gpu: cuda}}
    targets: [cpu/host]                       # --targets overrides
    models:
      - {name: vad-gru, cell: gru, input_size: 40, hidden: 64}
      - {name: kws, model: models/kws.py:model, input_shape: [1, 100, 40], batch: 8}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnnc.autotune_db import Database
from rnnc.constraints.units import fmt_seconds
from rnnc.errors import UserInputError
from rnnc.tune.evaluate import OK, evaluate
from rnnc.tune.layers import Layer, cell_layers, layers_of

DEFAULT_BACKENDS = {"cpu": "c", "gpu": "cuda"}
MISSING, STALE, REGRESSED, CORRUPT = "missing", "stale", "regressed", "corrupt"


@dataclass
class Finding:
    model: str
    target: str
    backend: str
    layer: str
    key: str
    status: str  # ok | missing | stale | regressed
    detail: str = ""


@dataclass
class CiReport:
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # corrupt lines/files in the database
    refreshed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(f.status == OK for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings], "corrupt": self.problems,
                "refreshed": self.refreshed}

    def text(self) -> str:
        bad = [f for f in self.findings if f.status != OK]
        lines = [f"{len(self.findings) - len(bad)}/{len(self.findings)} model layer x target pairs have a valid "
                 f"record" + (f"; {len(self.problems)} corrupt database line(s)" if self.problems else "")]
        for f in self.findings:
            mark = "ok  " if f.status == OK else "FAIL"
            lines.append(f"  {mark} {f.model} / {f.layer} on {f.target} ({f.backend}): {f.status}"
                         + (f" - {f.detail}" if f.detail else ""))
        lines += [f"  FAIL {CORRUPT}: {p}" for p in self.problems]
        if self.refreshed:
            lines.append(f"  refreshed: {', '.join(self.refreshed)}")
        if not self.ok:
            lines.append("fix: `rnnc tune --ci --refresh ...` re-tunes what failed; `rnnc db prune` drops stale and "
                         "corrupt lines")
        return "\n".join(lines)


def load_models(path: str | Path) -> dict[str, Any]:
    """Parse and validate ``models.yaml`` (messages name the file and the entry)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UserInputError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or not data["models"]:
        raise UserInputError(f"{path} needs a non-empty 'models:' list")
    for i, m in enumerate(data["models"]):
        if not isinstance(m, dict) or "name" not in m or ("cell" in m) == ("model" in m):
            raise UserInputError(f"{path}: models[{i}] needs 'name' and exactly one of 'cell' or 'model'")
    return data


def model_layers(entry: dict[str, Any], defaults: dict[str, Any]) -> list[Layer]:
    """The layers of one models.yaml entry at its batch and sequence length."""
    opts = {**defaults, **entry}
    batch, seq_len = int(opts.get("batch", 1)), int(opts.get("seq_len", 64))
    if "cell" in entry:
        try:
            return cell_layers(entry["cell"], int(entry["input_size"]), int(entry["hidden"]), batch, seq_len,
                               **dict(entry.get("hparams") or {}))
        except KeyError as exc:
            raise UserInputError(f"model {entry['name']!r}: a cell entry needs {exc}") from None
    import torch

    from rnnc.commands._load import load_model
    from rnnc.frontend import trace

    shapes = entry.get("input_shape")
    if not shapes:
        raise UserInputError(f"model {entry['name']!r}: a 'model' entry needs input_shape, e.g. [1, 100, 40]")
    shapes = shapes if isinstance(shapes[0], list) else [shapes]
    program = trace(load_model(str(entry["model"])), tuple(torch.randn(*s) for s in shapes))
    return layers_of(program, batch, seq_len)


def _pairs(data: dict[str, Any], targets: list[str] | None) -> list[tuple[str, str]]:
    from rnnc.targets import get

    defaults = data.get("defaults") or {}
    backends = {**DEFAULT_BACKENDS, **(defaults.get("backends") or {})}
    out = []
    for t in targets or data.get("targets") or ["cpu/host"]:
        tag, _, backend = str(t).partition(":")
        out.append((tag, backend or backends[get(tag).kind]))
    return out


def run_ci(models: str | Path, targets: list[str] | None = None, db: Database | None = None,
           refresh: bool = False, remeasure: bool = False, threshold: float = 0.25, max_candidates: int = 8,
           time_budget: float | None = None, progress: bool = False, ray: Any = None) -> CiReport:
    """Check (and with ``refresh``, fix) the records every model x target needs."""
    from rnnc.tune.tuner import Tuner

    data = load_models(models)
    db = db if db is not None else Database()
    defaults = data.get("defaults") or {}
    work = [(m["name"], model_layers(m, defaults)) for m in data["models"]]
    pairs = _pairs(data, targets)
    report = _check(work, pairs, db, remeasure, threshold)
    if refresh and not report.ok:
        failed = {(f.target, f.backend, f.key) for f in report.findings if f.status != OK}
        for tag, backend in pairs:
            layers = {lyr.key(tag, backend).id: lyr for _, ls in work for lyr in ls}
            todo = [layers[k] for t, b, k in sorted(failed) if (t, b) == (tag, backend)]
            if todo:
                Tuner(tag, backend, db=db, max_candidates=max_candidates, time_budget=time_budget,
                      progress=progress, ray=ray, resume=False).tune(todo)
                report_ids = [f"{lyr.label} on {tag}" for lyr in todo]
                report.refreshed += report_ids
        refreshed = report.refreshed
        if report.problems:  # corrupt lines are dropped by a refresh: the good records are rewritten
            db.prune()
        report = _check(work, pairs, db, False, threshold)
        report.refreshed = refreshed
    return report


def _check(work: list[tuple[str, list[Layer]]], pairs: list[tuple[str, str]], db: Database, remeasure: bool,
           threshold: float) -> CiReport:
    from rnnc.autotune_db import best
    from rnnc.targets import get

    scan = db.scan(warn=False)
    report = CiReport(problems=[str(p) for p in scan.problems])
    by_key: dict[str, list[Any]] = {}
    for e in scan.entries:
        by_key.setdefault(e.record.key.id, []).append(e)
    for name, layers in work:
        for tag, backend in pairs:
            canonical = get(tag).tag
            for layer in layers:
                key = layer.key(canonical, backend)
                entries = by_key.get(key.id, [])
                hit = best(entries)
                f = Finding(name, canonical, backend, layer.label, key.id, OK)
                if hit is None:
                    stale = [e for e in entries if e.stale]
                    f.status, f.detail = (STALE, stale[0].stale) if stale else (MISSING, "no record")
                elif hit.record.estimated:
                    f.detail = f"estimated {fmt_seconds(hit.record.estimate_s)} (cost model; hardware not present)"
                else:
                    f.detail = f"{fmt_seconds(hit.record.time_s)} measured"
                    if remeasure:
                        _remeasure(f, layer, hit.record, canonical, backend, threshold)
                report.findings.append(f)
    return report


def _remeasure(f: Finding, layer: Layer, rec: Any, target: str, backend: str, threshold: float) -> None:
    import json

    out = evaluate(layer, json.dumps(rec.schedule), target, backend)
    if out["status"] != OK:
        f.status, f.detail = REGRESSED, f"recorded kernel now fails: {out['reason']}"
    elif out["time_s"] > rec.time_s * (1 + threshold):
        f.status = REGRESSED
        f.detail = (f"{fmt_seconds(out['time_s'])} now vs {fmt_seconds(rec.time_s)} recorded "
                    f"(+{out['time_s'] / rec.time_s - 1:.0%} > {threshold:.0%})")
    else:
        f.detail += f", re-measured {fmt_seconds(out['time_s'])}"
