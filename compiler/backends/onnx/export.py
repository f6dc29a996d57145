"""``rnnc.export_onnx``: a torch model or a Program in, a checked ONNX file out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import onnx

from rnnc.backends.onnx.model import check_opset, to_onnx
from rnnc.backends.onnx.render import DEFAULT_OPSET
from rnnc.errors import UnsupportedError, UserInputError
from rnnc.ir import Program


def _as_tuple(example_inputs: Any) -> tuple[Any, ...] | None:
    if example_inputs is None:
        return None
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    return (example_inputs,)


def as_program(model_or_program: Any, example_inputs: Sequence[Any] | None) -> Program:
    """A Program as is; a torch module traced by the frontend with the example inputs."""
    if isinstance(model_or_program, Program):
        return model_or_program
    if example_inputs is None:
        raise UserInputError("exporting a torch model needs example inputs to trace it with")
    try:
        from rnnc.frontend import trace
    except ImportError:
        raise UnsupportedError("this rnnc build has no frontend (rnnc.frontend.trace) to trace torch models "
                               "with; build a Program (rnnc.ir.rnn_program) and export that") from None
    return trace(model_or_program, tuple(example_inputs))


def export_onnx(model_or_program: Any, example_inputs: Any = None, path: str | os.PathLike | None = None, *,
                opset: int = DEFAULT_OPSET, streaming: bool = False,
                hoist: bool | str = True, target: Any = None, linear_attention: bool = True) -> onnx.ModelProto:
    """Export to ONNX; write ``path`` when given and return the ModelProto.

    Batch and sequence length stay dynamic.  Recurrent states are extra graph inputs and
    outputs (listed in the ``rnnc.states`` metadata): feed zeros to start a sequence, feed the
    returned states to continue it.  ``streaming=True`` fixes the time dims to the example
    inputs' (the chunk length) for a real-time step model.  LSTM/GRU/Elman layers become the
    native ONNX ops, every other cell an ONNX Scan of its step graph, whose state-free part
    (input projections, quantized ones included) runs once over all steps before the loop;
    ``hoist=False`` keeps it in the loop, ``hoist="all"`` also hoists dynamically quantized
    projections (per-step scales; the results are the same either way).  Matrix-state layers
    (GLA, RetNet, HGRN2, DeltaNet, Mamba-2) become onnxruntime's ``com.microsoft.LinearAttention``;
    ``linear_attention=False`` writes them as a Scan for runtimes without onnxruntime's contrib ops.

    ``target`` (a CPU tag or spec, default ``cpu/host``): integer products are made exact on that
    CPU's int8 dot product; full-range weights that would saturate there are stored as u8 (exact
    everywhere, slower), and the ``rnnc.int8`` metadata records the target and the formats.
    """
    check_opset(opset)  # before tracing: a bad flag should not cost a trace
    if hoist not in (True, False, "all"):
        raise UserInputError(f"hoist must be True, False or 'all', got {hoist!r}")
    examples = _as_tuple(example_inputs)
    program = as_program(model_or_program, examples)
    model = to_onnx(program, opset=opset, streaming=streaming, example_inputs=examples, hoist=hoist,
                    target=target, linear_attention=linear_attention)
    if path is not None:
        directory = os.path.dirname(os.fspath(path))
        if directory and not os.path.isdir(directory):
            raise UserInputError(f"cannot write {path}: directory {directory} does not exist")
        onnx.save(model, os.fspath(path))
    return model
