"""The backend registry (docs/design.md convention 3): backends register themselves, nobody dispatches
on their names.

A backend is any object with a ``name`` and ``supports(program, target) -> (ok, reason)``; the
API asks every registered backend rather than testing names in if/elif chains.  Backend
packages are imported lazily by :func:`get_backend` (``rnnc.backends.<name>``) so that importing
one backend never pulls in another one's heavy dependencies (triton, tvm, onnxruntime).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from rnnc.errors import UserInputError


class Backend(Protocol):
    """What every backend answers; rendering entry points are backend-specific."""

    name: str

    def supports(self, program: Any, target: Any = None) -> tuple[bool, str]:
        """Whether ``program`` can be rendered for ``target``; ``reason`` names what blocks it."""
        ...


BACKENDS: dict[str, Backend] = {}
#: import name -> (the PyPI package, the rnnc extra that installs it): heavy backends are optional
EXTRAS = {"tvm": ("apache-tvm", "tvm"), "tvm_ffi": ("apache-tvm", "tvm"), "triton": ("triton", "triton"),
          "ray": ("ray", "ray")}


def register_backend(backend: Backend) -> Backend:
    """Add ``backend`` under its name (called by each backend package at import)."""
    BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str) -> Backend:
    """The backend called ``name``, importing ``rnnc.backends.<name>`` on first use."""
    if name not in BACKENDS:
        try:
            importlib.import_module(f"rnnc.backends.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"rnnc.backends.{name}":
                top = (exc.name or "").split(".")[0]
                if top in EXTRAS:  # a heavy backend whose optional dependency is not installed
                    raise UserInputError(f"backend {name!r} needs {EXTRAS[top][0]}, which is not installed: "
                                         f"pip install 'rnnc[{EXTRAS[top][1]}]' (make setup installs every "
                                         f"extra)") from None
                raise
        if name not in BACKENDS:
            known = ", ".join(sorted(BACKENDS)) or "none loaded"
            raise UserInputError(f"unknown backend {name!r} (registered: {known})")
    return BACKENDS[name]
