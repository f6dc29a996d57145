"""``rnnc compile --backend tvm -o OUTDIR``, the output directory and loading it back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tvm_cases import INPUT, program

from rnnc.backends import get_backend
from rnnc.backends.manifest import load
from rnnc.backends.tvm.layer import pack_weight
from rnnc.cli import main
from rnnc.tolerances import assert_close

MODEL = """
import torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(12, 32, num_layers=2, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(64, 3)
    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)
torch.manual_seed(0)
model = M()
"""


def test_backend_is_registered_and_supports_every_cell() -> None:
    backend = get_backend("tvm")
    ok, reason = backend.supports(program("mlstm", 16)[0], "cpu/host")
    assert ok, reason


def test_compile_dir_and_load_roundtrip(tmp_path) -> None:
    prog, _ = program("gru", 16, layers=2, bidirectional=True)
    manifest = get_backend("tvm").compile(prog, "cpu/host", str(tmp_path))
    assert manifest["backend"] == "tvm" and manifest["program_hash"] == prog.hash()
    for f in ("layers.so", "params.npz", "layers.tir.py", "program.rnnc", "weights.pt", "manifest.json"):
        assert (tmp_path / f).exists(), f
    entry = manifest["layers"]["rnn0_l0_fwd"]
    assert entry["stages"]["hoisted"] and entry["packed"] == ["weight_hh", "weight_ih"]
    params = np.load(tmp_path / "params.npz")
    w = prog.weights["l0.fwd.weight_ih"]
    jt = params["rnn0_l0_fwd.weight_ih__t"].shape[2]
    np.testing.assert_array_equal(params["rnn0_l0_fwd.weight_ih__t"], pack_weight(w, jt).numpy())
    x = torch.randn(3, 5, INPUT)
    for got, want in zip(load(tmp_path)(x), prog.run(x), strict=True):
        assert_close(got, want, "float32", "tvm", "loaded output directory")


def test_cli_compile_tvm(tmp_path) -> None:
    model = tmp_path / "model.py"
    model.write_text(MODEL)
    out = tmp_path / "out"
    assert main(["compile", str(model), "--input-shape", "1,20,12", "--backend", "tvm", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "tvm" and len(manifest["layers"]) == 4
    ns: dict = {}
    exec(MODEL, ns)
    x = torch.randn(2, 20, 12)
    with torch.no_grad():
        want = ns["model"](x)
    assert_close(load(out)(x), want, "float32", "tvm", "CLI-compiled model vs torch")


@pytest.mark.nvcc
def test_compile_dir_for_a_gpu_target(tmp_path) -> None:
    prog, _ = program("lstm", 32)
    manifest = get_backend("tvm").compile(prog, "nvidia/h100-sxm", str(tmp_path))
    cuda = manifest["layers"]["rnn0_l0_fwd"]["cuda"]
    for arch in ("sm_80", "sm_90"):
        assert (tmp_path / cuda["sources"][arch]).exists()
        assert cuda["resources"][arch], arch
    assert cuda["schedule_predicted"]["registers_per_thread"] > 0


def test_rnnc_compile_api_with_tvm_backend() -> None:
    """``rnnc.compile(..., backend="tvm")`` goes through the registry's ``runnable``."""
    import rnnc

    prog, _ = program("lstm", 16)
    module = rnnc.compile(prog, target="cpu/host", backend="tvm", use_db=False)
    x = torch.randn(2, 5, INPUT)
    for got, want in zip(module(x), prog.run(x), strict=True):
        assert_close(got, want, "float32", "tvm", "rnnc.compile with backend tvm")
