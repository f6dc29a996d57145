"""The ONNX backend: export a Program (or a traced model) as an ONNX model for any ONNX runtime.

``export_onnx`` is the entry point (``rnnc.export_onnx``); the backend object registered here
answers ``supports`` like every other backend.  Modules, one concern each: ``emit`` (names,
initializers), ``ops`` (IR op -> ONNX nodes), ``render`` (the graph walk), ``native`` (LSTM/GRU/
RNN ops), ``scan`` (cells as Scan), ``hoist`` (state-free work out of the loop), ``rnn`` (the
rnn op), ``states`` (state I/O), ``model`` (ModelProto, metadata, checks), ``export`` (the
public function), ``runtime`` (``StatefulSession``: run an export with its states carried).
"""

from __future__ import annotations

from typing import Any

from rnnc.backends import register_backend
from rnnc.backends.onnx import ops_aten as _ops_aten  # noqa: F401  (registers aten)
from rnnc.backends.onnx import ops_aten_tensor as _ops_aten_tensor  # noqa: F401  (its tensor operators)
from rnnc.backends.onnx import ops_dyn as _ops_dyn  # noqa: F401  (registers reshape_dyn/expand_dyn/full_dyn/arange)
from rnnc.backends.onnx import quant_ops as _quant_ops  # noqa: F401  (registers qlinear/qconv1d)
from rnnc.backends.onnx.export import export_onnx
from rnnc.backends.onnx.model import check_model, to_onnx
from rnnc.backends.onnx.render import DEFAULT_OPSET, MIN_EXPORT_OPSET, unsupported
from rnnc.backends.onnx.runtime import StatefulSession


class OnnxBackend:
    """ONNX is target-agnostic: any target is accepted, only the ops decide."""

    name = "onnx"

    def supports(self, program: Any, target: Any = None, opset: int = DEFAULT_OPSET) -> tuple[bool, str]:
        why = unsupported(program, opset)
        return (not why, why)

    def compile(self, program: Any, target: Any, outdir: str, **kw: Any) -> dict:
        """Write ``model.onnx`` + the shared manifest (``rnnc compile --backend onnx``)."""
        from rnnc.backends.onnx.artifact import compile_to_dir

        return compile_to_dir(program, target, outdir, **{k: v for k, v in kw.items() if k == "opset"})

    def load(self, outdir: str) -> Any:
        from rnnc.backends.onnx.artifact import load

        return load(outdir)

    def runnable(self, program: Any, target: Any = None, schedule: Any = None, batch: int = 1) -> Any:
        """Run through onnxruntime in this process (``rnnc.compile(..., backend="onnx")``)."""
        from rnnc.backends.onnx.artifact import runnable

        return runnable(program)


BACKEND = register_backend(OnnxBackend())

__all__ = ["BACKEND", "DEFAULT_OPSET", "MIN_EXPORT_OPSET", "StatefulSession", "check_model", "export_onnx",
           "to_onnx"]
