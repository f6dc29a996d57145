"""What the frontend tests share: a traced Program against the torch model it came from, and a
trace that must say nothing.

The reference is torch eager on the same inputs (independent of rnnc); the Program runs in rnnc's
interpreter and, unless ``tmp_path`` is None, as its ONNX export in onnxruntime."""

from __future__ import annotations

import warnings
from typing import Any

import torch

import rnnc
from rnnc.backends.onnx.runtime import StatefulSession
from rnnc.tolerances import assert_close


def trace_quietly(model: torch.nn.Module, example: tuple[Any, ...], **kwargs: Any) -> rnnc.ir.Program:
    """``rnnc.trace`` with every warning an error: nothing fixed, nothing said."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return rnnc.trace(model, example, **kwargs)


def _flat(out: Any) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in _flat(o)]


def matches_torch(program: rnnc.ir.Program, model: torch.nn.Module, inputs: tuple[Any, ...],
                  tmp_path: Any = None, name: str = "model") -> None:
    with torch.no_grad():
        want = _flat(model(*inputs))
    got = _flat(program.run(*inputs))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype, f"the Program returns {g.dtype} where torch returns {w.dtype}"
        assert_close(g, w, backend="interp")
    if tmp_path is None:
        return
    path = tmp_path / f"{name}.onnx"
    rnnc.export_onnx(program, path=path)
    outs = StatefulSession(str(path))(*inputs)
    for g, w in zip(outs, want, strict=True):
        assert torch.from_numpy(g).dtype == w.dtype, f"the ONNX model returns {g.dtype} where torch returns {w.dtype}"
        assert_close(torch.from_numpy(g), w, backend="onnxruntime")
