"""rnnc: a compiler and hardware tuner for recurrent neural network kernels.

The public API is imported lazily so that the pure parts of the package (``rnnc.constraints``,
``rnnc.targets``, ``rnnc.autotune_db``) can be used without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "trace": ("rnnc.frontend", "trace"),
    "compile": ("rnnc.api", "compile"),
    "Recurrent": ("rnnc.frontend", "Recurrent"),
    "Program": ("rnnc.ir", "Program"),
    "RnncError": ("rnnc.errors", "RnncError"),
    "export_onnx": ("rnnc.backends.onnx", "export_onnx"),
    "export_mobile": ("rnnc.backends.onnx.mobile", "export_mobile"),
    "load": ("rnnc.backends.manifest", "load"),
    "quantize": ("rnnc.quant", "quantize"),
    "tune": ("rnnc.tune", "package"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'rnnc' has no attribute {name!r}")
