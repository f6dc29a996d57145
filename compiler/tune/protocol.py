"""The small protocol a backend implements to be tuned, and the table of implementations.

The tuner never tests backend names: it asks ``tunable(name)`` for an adapter and calls
``mode``/``build``.  Adapters live next to the tuner (``rnnc.tune.adapt_<name>``) rather than in
the backend packages so a backend stays free of tuning concerns; adding one means writing a
module and one line in ``ADAPTERS``.

* ``mode(target)``: ``"measure"`` when kernels for ``target`` can be timed on this machine,
  ``"estimate"`` when they can only be compiled (a GPU target without the GPU: the record
  carries the cost model's figure and the compiler's resources and says ``estimated: true``);
  raises ``UnsupportedError`` when neither is possible.
* ``rendered(layer, schedule)``: the part of a Schedule this backend actually renders (a
  hashable value).  Candidates equal under it are the same kernel; the tuner measures one of
  them and takes the next-ranked distinct candidate instead of the rest.
* ``problem(spec)``: the solver problem this backend's kernels are described by (e.g. a
  kernel that kept recurrent weights in shared memory only would set ``register_weights=False``).
* ``build(layer, schedule, target)``: compile one candidate into a :class:`Built`, whose
  ``run(*inputs)`` executes *this machine's* numerics of the kernel (for a GPU kernel: its
  C-dialect twin) so every candidate is checked against the IR interpreter before it counts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rnnc.errors import UserInputError

MEASURE, ESTIMATE = "measure", "estimate"

#: backend name -> module defining ``ADAPTER``
ADAPTERS = {"c": "rnnc.tune.adapt_c", "cuda": "rnnc.tune.adapt_cuda", "tvm": "rnnc.tune.adapt_tvm"}


@dataclass
class Built:
    """One compiled candidate: a callable with the layer Program's signature, an identity
    (hash of the generated code and launch knobs: equal identities are the same kernel) and
    what the compiler reported about it."""

    run: Callable[..., Any]
    identity: str
    resources: dict[str, Any] = field(default_factory=dict)


class TunableBackend(Protocol):
    name: str
    tolerance: str  # row of rnnc.tolerances used for the correctness check

    def mode(self, target: Any) -> str: ...

    def rendered(self, layer: Any, schedule: Any) -> Any: ...

    def problem(self, spec: Any) -> Any: ...

    def build(self, layer: Any, schedule: Any, target: Any) -> Built: ...


def tunable(name: str) -> TunableBackend:
    """The tuning adapter of backend ``name``."""
    if name not in ADAPTERS:
        raise UserInputError(f"backend {name!r} cannot be tuned yet; tunable backends: {', '.join(ADAPTERS)}")
    return importlib.import_module(ADAPTERS[name]).ADAPTER
