"""``rnnc.tune(...)`` and the database-first schedule lookup that compilation uses.

``lookup_schedule`` is the hook for ``rnnc.compile``/``rnnc compile``: a usable record (overlay
first, then shipped) wins; ``None`` means "ask the solver".  It never raises for a database
problem -- a corrupt or stale file costs a warning, never a failed compile.
"""

from __future__ import annotations

from typing import Any

from rnnc.autotune_db import OVERLAY, Database, Record
from rnnc.ir import Cell, Program, cell_hash
from rnnc.tune.layers import Layer, layers_of
from rnnc.tune.tuner import Tuner, TuneReport


def tune(model: Any, example_inputs: Any = None, *, target: str = "cpu/host", backend: str = "c",
         batch: int = 1, seq_len: int = 64, max_candidates: int = 8, time_budget: float | None = None,
         db: Database | None = None, ray: str | bool | None = None, progress: bool = False, repeats: int = 5,
         resume: bool = True) -> TuneReport:
    """Tune every distinct recurrent layer of ``model`` (an ``nn.Module`` traced with
    ``example_inputs``, a ``Program``, or a list of :class:`Layer`) for ``target`` and record
    the verified winners in ``db`` (default: the overlay database).

    ``batch``/``seq_len`` are the sizes kernels are measured at (part of the record key);
    ``time_budget`` is in seconds for the whole call; ``ray`` is ``True`` for a local Ray or a
    cluster address.
    """
    if isinstance(model, (list, tuple)) and all(isinstance(x, Layer) for x in model):
        layers = list(model)
    else:
        program = model
        if not isinstance(program, Program):
            from rnnc.frontend import trace

            program = trace(model, example_inputs)
        layers = layers_of(program, batch, seq_len)
    tuner = Tuner(target, backend, db=db, max_candidates=max_candidates, time_budget=time_budget, repeats=repeats,
                  progress=progress, ray=ray, resume=resume)
    return tuner.tune(layers)


def lookup_record(cell: Cell, target: str, backend: str, batch: int = 1, seq_len: int | None = None,
                  db: Database | None = None, dtype: str = "") -> Record | None:
    """The record compilation should use for ``cell``; ``seq_len=None`` accepts any length
    (the longest measured wins: the steady state of a recurrent kernel); ``dtype``: the layer's
    storage when the model was cast to 16 bits (``rnnc.ir.printer.layer_storage``)."""
    from rnnc.targets import get

    db = db if db is not None else Database()
    tag = get(target).tag
    probe = Layer(cell, {}, batch, seq_len or 1, dtype)
    want = dict(probe.key(tag, backend).to_dict(), shapes=None)
    fixed = {k: v for k, v in probe.shapes() if k != "seq_len" or seq_len is not None}
    h = cell_hash(cell)
    matches = []
    for e in db.scan().usable():
        k = e.record.key
        if k.layer != h or k.target != want["target"] or k.backend != backend or k.dtype != want["dtype"]:
            continue
        shapes = dict(k.shapes)
        if all(shapes.get(n) == v for n, v in fixed.items()):
            matches.append(e)
    if not matches:
        return None
    pool = [e for e in matches if e.layer == OVERLAY] or matches
    longest = max(dict(e.record.key.shapes).get("seq_len", 0) for e in pool)
    pool = [e for e in pool if dict(e.record.key.shapes).get("seq_len", 0) == longest]
    return min(pool, key=lambda e: e.record.score).record


def lookup_schedule(cell: Cell, target: str, backend: str, batch: int = 1, seq_len: int | None = None,
                    db: Database | None = None) -> Any:
    """The tuned ``Schedule`` for ``cell`` from the database, or None (then use the solver)."""
    from rnnc.constraints import Schedule
    from rnnc.errors import RnncError

    try:
        rec = lookup_record(cell, target, backend, batch, seq_len, db)
        return Schedule.from_dict(rec.schedule) if rec is not None else None
    except RnncError:
        return None
