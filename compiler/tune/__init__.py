"""rnnc.tune: autotuning recurrent layers into the versioned record database.

    import rnnc
    report = rnnc.tune(model, example_inputs, target="cpu/host", backend="c", max_candidates=8)
    rnnc.tune.lookup_schedule(cell, "cpu/host", "c", batch=1, seq_len=100)   # DB-first lookup

Modules: ``layers`` (what is tuned, the record key), ``protocol`` (the adapter a backend
implements), ``evaluate`` (compile, check, time one candidate), ``tuner`` (the loop, resume,
budget, progress), ``distributed`` (Ray), ``ci`` (coverage/staleness checks of models.yaml).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from rnnc.tune.api import lookup_schedule, tune
from rnnc.tune.layers import Layer, cell_layers, layers_of
from rnnc.tune.tuner import LayerReport, Tuner, TuneReport

__all__ = ["Layer", "LayerReport", "TuneReport", "Tuner", "cell_layers", "layers_of", "lookup_schedule", "tune"]


class _CallableModule(types.ModuleType):
    """``rnnc.tune`` is both this package and the ``tune`` function: importing a submodule
    binds the package as the attribute ``rnnc.tune``, so the package itself must be callable
    for ``rnnc.tune(model, ...)`` to keep working."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
#: what ``rnnc.tune`` resolves to (rnnc's lazy table names an attribute): this callable package
package = sys.modules[__name__]
