"""Calibration data in, validated batches out.

Accepted forms: a tensor or array (one batch of a one-input program), a tuple of them (one
batch), a dict ``input name -> array`` (one batch), a list of any of these, an ``.npz`` file
(a dict) or a directory of ``.npz`` files (one batch each).  Inputs missing from a dict (the
initial states, typically) are zeros once their symbolic dims are known from the others.  Every
problem (empty set, wrong rank or size, NaN) is one sentence naming the input and the shape the
program expects, before any calibration time is spent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnc.errors import UserInputError
from rnnc.ir import Program, TensorType


def _tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything numpy cannot read is a user error
        raise UserInputError(f"calibration input {name} is a {type(value).__name__}, not an array") from None
    if arr.dtype == object:
        raise UserInputError(f"calibration input {name} is not a numeric array")
    return torch.from_numpy(np.ascontiguousarray(arr))


def load_path(path: Path) -> list[Any]:
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise UserInputError(f"calibration directory {path} holds no .npz files")
        return [dict(np.load(f)) for f in files]
    if path.suffix != ".npz" or not path.is_file():
        raise UserInputError(f"calibration data {path} is not an .npz file or a directory of them")
    try:
        return [dict(np.load(path))]
    except Exception as exc:  # noqa: BLE001 - a corrupt archive
        raise UserInputError(f"cannot read calibration file {path}: {exc}") from None


def _bind(ttype: TensorType, t: torch.Tensor, dims: dict[str, int], name: str) -> None:
    if t.dim() != ttype.rank:
        raise UserInputError(f"calibration input {name} has shape {tuple(t.shape)}, the program expects "
                             f"{ttype.text()} (rank {ttype.rank})")
    for d, size in zip(ttype.shape, t.shape, strict=True):
        if isinstance(d, int) and d != size:
            raise UserInputError(f"calibration input {name} has shape {tuple(t.shape)}, the program expects "
                                 f"{ttype.text()}")
        if isinstance(d, str) and d != "?":
            if dims.setdefault(d, int(size)) != size:
                raise UserInputError(f"calibration input {name}: dim {d} is {size} here but {dims[d]} in "
                                     f"another input")


def _batch(program: Program, item: Any, index: int) -> tuple[torch.Tensor, ...]:
    inputs = program.graph.inputs
    if isinstance(item, Mapping):
        unknown = set(item) - {n for n, _ in inputs}
        if unknown:
            raise UserInputError(f"calibration batch {index} names {sorted(unknown)}, which are not inputs of "
                                 f"{program.graph.name} ({', '.join(n for n, _ in inputs)})")
        given = {n: _tensor(v, n) for n, v in item.items()}
    else:
        items = item if isinstance(item, (tuple, list)) else (item,)
        if len(items) > len(inputs):
            raise UserInputError(f"calibration batch {index} has {len(items)} inputs, {program.graph.name} takes "
                                 f"{len(inputs)} ({', '.join(n for n, _ in inputs)})")
        given = {n: _tensor(v, n) for (n, _), v in zip(inputs, items, strict=False)}
    dims: dict[str, int] = {}
    for name, ttype in inputs:
        if name in given:
            _bind(ttype, given[name], dims, name)
    out = []
    for name, ttype in inputs:
        t = given.get(name)
        if t is None:
            if any(isinstance(d, str) and d not in dims for d in ttype.shape):
                raise UserInputError(f"calibration batch {index} lacks input {name} ({ttype.text()}) and its "
                                     f"size cannot be inferred from the other inputs; provide it")
            t = torch.zeros([dims[d] if isinstance(d, str) else d for d in ttype.shape])
        want = getattr(torch, ttype.dtype)
        if t.dtype != want:
            if t.dtype.is_floating_point != want.is_floating_point:
                raise UserInputError(f"calibration input {name} is {t.dtype}, the program expects {ttype.dtype}")
            t = t.to(want)
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise UserInputError(f"calibration input {name} (batch {index}) contains NaN or infinite values")
        out.append(t)
    return tuple(out)


def calibration_batches(program: Program, data: Any) -> list[tuple[torch.Tensor, ...]]:
    """Normalize ``data`` (see the module docstring) into input tuples for ``program``."""
    if data is None:
        raise UserInputError("quantization needs calibration data (sample inputs); got None")
    if isinstance(data, (str, os.PathLike)):
        items = load_path(Path(data))
    elif isinstance(data, (torch.Tensor, np.ndarray, Mapping)) or (
            isinstance(data, tuple) and data and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data)
            and len(data) == len(program.graph.inputs) and len(program.graph.inputs) > 1):
        items = [data]
    else:
        try:
            items = list(data)
        except TypeError:
            raise UserInputError(f"calibration data of type {type(data).__name__} is not supported; pass "
                                 "tensors, a list of input tuples, a dict, or an .npz path") from None
    if not items:
        raise UserInputError("the calibration set is empty; pass at least one batch of sample inputs")
    batches = [_batch(program, item, i) for i, item in enumerate(items)]
    if all(b[0].numel() == 0 for b in batches):
        raise UserInputError("the calibration set is empty (every batch has zero elements)")
    return batches
