"""``rnnc compile --backend c|cuda -o OUTDIR`` and ``rnnc.load(OUTDIR)``."""

from __future__ import annotations

import json

import pytest
import torch

import rnnc
from rnnc.cli import main
from rnnc.tolerances import assert_close

MODEL = """
import torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(12, 32, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(32, 3)
    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)
torch.manual_seed(0)
model = M()
"""


@pytest.fixture()
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return path


def test_compile_c_and_load(model_file, tmp_path) -> None:
    out = tmp_path / "out_c"
    assert main(["compile", str(model_file), "--input-shape", "1,20,12", "--backend", "c", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "c" and manifest["target"] == "cpu/host"
    assert all(layer["path"] == "fused" for layer in manifest["layers"].values())
    compiled = rnnc.load(out)
    namespace: dict = {}
    exec(MODEL, namespace)
    x = torch.randn(3, 17, 12)
    with torch.no_grad():
        want = namespace["model"](x)
    assert_close(compiled(x), want, "float32", "c", "loaded C program")


@pytest.mark.nvcc
def test_compile_cuda_writes_cubins_and_resources(model_file, tmp_path) -> None:
    out = tmp_path / "out_cuda"
    rc = main(["compile", str(model_file), "--input-shape", "1,20,12", "--backend", "cuda",
               "--target", "nvidia/a100-80gb", "-o", str(out)])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for layer in manifest["layers"].values():
        assert set(layer["cubins"]) == {"sm_80", "sm_86", "sm_89", "sm_90"}
        for res in layer["resources"].values():
            assert res["spill_stores"] == 0
        assert layer["shared_memory_rendered"] == layer["shared_memory_predicted"]
    assert rnnc.load(out)(torch.randn(2, 5, 12)).shape == (2, 5, 3)


def test_cpu_backend_refuses_gpu_target(model_file, tmp_path, capsys) -> None:
    rc = main(["compile", str(model_file), "--input-shape", "1,20,12", "--backend", "c",
               "--target", "nvidia/t4", "-o", str(tmp_path / "x")])
    assert rc == 2
    assert "is a GPU" in capsys.readouterr().err
