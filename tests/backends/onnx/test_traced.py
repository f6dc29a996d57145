"""Torch modules traced by the frontend at T=16 and exported: the ONNX model runs at T=1 and
T=1000, batch 1 and 5, with the module's own numbers (the length is not baked in), and the CLI."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from onnx_test_helpers import PRESENT_CELLS, assert_all_close, session

import rnnc
from rnnc.backends.onnx.runtime import StatefulSession
from rnnc.cli import main
from rnnc.kernels import CELLS

TORCH_MODULES = {
    "nn.LSTM-2l-bidir": lambda: torch.nn.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True),
    "nn.LSTM-proj": lambda: torch.nn.LSTM(6, 8, num_layers=2, proj_size=3, batch_first=True),
    "nn.GRU-2l-bidir": lambda: torch.nn.GRU(6, 8, num_layers=2, bidirectional=True, batch_first=True),
    "nn.RNN-relu": lambda: torch.nn.RNN(6, 8, nonlinearity="relu", batch_first=True),
}
MODULES = {**TORCH_MODULES, **{n: (lambda n=n: CELLS[n].load_module_class()(6, 8)) for n in PRESENT_CELLS}}


def flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in flat(o)]


@functools.cache
def exported(key: str):
    torch.manual_seed(0)
    module = MODULES[key]().eval()
    model = rnnc.export_onnx(module, (torch.randn(2, 16, 6),))  # traced at B=2, T=16
    return module, model, StatefulSession(model, threads=1)


@pytest.mark.parametrize("key", MODULES)
@pytest.mark.parametrize("batch, steps", [(1, 1), (5, 16), (5, 1000)])
def test_traced_module_runs_at_any_length(key, batch, steps):
    module, _, sess = exported(key)
    x = torch.randn(batch, steps, 6, generator=torch.Generator().manual_seed(steps))
    sess.reset()
    with torch.no_grad():
        want = flat(module(x))
    got = [torch.from_numpy(o) for o in sess(x)][:len(want)]
    assert_all_close(got, want, "onnxruntime", f"{key} B={batch} T={steps}")


@pytest.mark.parametrize("key", ["nn.LSTM-proj", "nn.RNN-relu", "mingru"])  # unidirectional: chunks compose
def test_stateful_session_carries_state_across_calls(key):
    module, _, sess = exported(key)
    x = torch.randn(5, 30, 6, generator=torch.Generator().manual_seed(0))
    sess.reset()
    ys = [sess(x[:, t:t + 10])[0] for t in range(0, 30, 10)]
    sess.reset()
    whole = sess(x)[0]
    assert_all_close([torch.from_numpy(y) for y in ys], list(torch.from_numpy(whole).split(10, dim=1)),
                     "onnxruntime", f"{key} chunks vs whole")


def test_cli_export_full_and_streaming(tmp_path, capsys):
    model_file = tmp_path / "m.py"
    model_file.write_text("import torch\ntorch.manual_seed(0)\n"
                          "model = torch.nn.GRU(4, 8, num_layers=2, batch_first=True)\n")
    out = tmp_path / "gru.onnx"
    assert main(["export", str(model_file), "-o", str(out), "--input-shape", "1,16,4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["inputs"] == {"input": ["B", "T", 4], "h0": [2, "B", 8]}
    assert summary["ops"]["GRU"] == 2 and summary["states"][0]["input"] == "h0"
    step = tmp_path / "gru_step.onnx"
    assert main(["export", str(model_file), "-o", str(step), "--input-shape", "1,1,4", "--streaming"]) == 0
    assert "streaming" in capsys.readouterr().out
    full, stream = StatefulSession(out), StatefulSession(step)
    x = torch.randn(3, 7, 4)
    ys = [stream(x[:, t:t + 1])[0] for t in range(7)]
    assert_all_close([torch.cat([torch.from_numpy(y) for y in ys], dim=1)], [torch.from_numpy(full(x)[0])],
                     "onnxruntime", "cli streaming vs full")
    session(rnnc.export_onnx(torch.nn.GRU(4, 8, batch_first=True), (x,)))
