"""Shared helpers of the ONNX export tests: building Programs with torch twins, running ORT."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from rnnc.ir import Program, rnn_program
from rnnc.kernels import CELLS

#: cells whose kernels/<name>/module.py exists (all registered cells once kernels/ is complete)
PRESENT_CELLS = [n for n in CELLS if importlib.util.find_spec(f"rnnc.kernels.{n}.module") is not None]


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_ort(model: onnx.ModelProto | ort.InferenceSession, *inputs: torch.Tensor) -> list[torch.Tensor]:
    """Run with positional inputs in the model's input order; outputs as torch tensors."""
    sess = model if isinstance(model, ort.InferenceSession) else session(model)
    names = [i.name for i in sess.get_inputs()]
    assert len(names) == len(inputs), f"model takes {names}, got {len(inputs)} inputs"
    outs = sess.run(None, {n: v.numpy() for n, v in zip(names, inputs, strict=True)})
    return [torch.from_numpy(np.asarray(o)) for o in outs]


def as_tuple(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def layer_program(name: str, input_size: int = 6, hidden: int = 8, seed: int = 0,
                  **hparams: Any) -> tuple[torch.nn.Module, Program]:
    """A registered cell's layer module (random init) and the Program of its ``rnnc_layer()``."""
    torch.manual_seed(seed)
    module = CELLS[name].load_module_class()(input_size, hidden, **hparams).eval()
    cell, weights = module.rnnc_layer()
    return module, rnn_program([cell], [[weights]], with_states=True, name=name)


def torch_rnn_program(module: torch.nn.RNNBase, with_lengths: bool = False) -> Program:
    """The Program of a torch ``nn.LSTM``/``GRU``/``RNN`` with its weights (independent of the
    frontend, so the backend is tested on its own)."""
    kind = {torch.nn.LSTM: "lstm", torch.nn.GRU: "gru", torch.nn.RNN: "elman"}[type(module)]
    dirs = 2 if module.bidirectional else 1
    out = getattr(module, "proj_size", 0) or module.hidden_size
    extra: dict[str, Any] = {"bias": module.bias}
    if kind == "lstm":
        extra["proj_size"] = module.proj_size
    if kind == "elman":
        extra["nonlinearity"] = module.nonlinearity
    cells, weights = [], []
    for k in range(module.num_layers):
        size = module.input_size if k == 0 else out * dirs
        cell = CELLS[kind].build_cell(size, module.hidden_size, **extra)
        cells.append(cell)
        weights.append([{p: getattr(module, f"{p}_l{k}{'_reverse' if d else ''}").detach() for p in cell.param_names}
                        for d in range(dirs)])
    return rnn_program(cells, weights, bidirectional=module.bidirectional, batch_first=module.batch_first,
                       with_states=True, with_lengths=with_lengths, name=kind)


def zero_states(program: Program, batch: int) -> list[torch.Tensor]:
    """Zeros for every recurrent state input the exported model of ``program`` takes, in order."""
    from rnnc.backends.onnx.states import expose_states

    return [torch.zeros([batch if isinstance(d, str) else d for d in s.type.shape], dtype=getattr(torch, s.type.dtype))
            for s in expose_states(program)[1]]


def random_states(program: Program, batch: int, scale: float = 0.3, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(z.shape, generator=gen) * scale for z in zero_states(program, batch)]


def assert_all_close(actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor], backend: str, msg: str) -> None:
    from rnnc.tolerances import assert_close

    assert len(actual) == len(expected), f"{msg}: {len(actual)} outputs vs {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert_close(a, e, "float32", backend, msg=f"{msg} output #{i}")

