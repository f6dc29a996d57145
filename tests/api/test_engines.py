"""A whole model (recurrent layers plus other ops) is run by the engine measured fastest on the
example inputs: the kernel backend with the IR interpreter around it, the whole program as one
native C function, or onnxruntime on rnnc's export (``rnnc.engines``); a purely recurrent program
keeps the kernel backend."""

from __future__ import annotations

import re

import torch
from model_files import CONV_GRU

import rnnc
from rnnc.tolerances import assert_close


class ConvGru(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(8, 16, 3, padding=1)
        self.gru = torch.nn.GRU(16, 24, batch_first=True)
        self.head = torch.nn.Linear(24, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.head(self.gru(y)[0])


def test_whole_model_takes_the_fastest_engine():
    torch.manual_seed(0)
    model = ConvGru().eval()
    x = torch.randn(1, 20, 8)
    compiled = rnnc.compile(model, (x,), target="cpu/host")
    text = compiled.explain()
    found = re.search(r"measured on the example inputs: (.*) -> (\w+)", text)
    assert found, text
    timed = re.findall(r"(\w+) ([0-9.]+) (\w+)", found.group(1))  # fastest first
    assert {name for name, _, _ in timed} == {"c", "native", "onnx"}, text
    assert found.group(2) == timed[0][0] == compiled.choice.backend
    x2 = torch.randn(3, 31, 8)  # other batch and length than the example
    with torch.no_grad():
        assert_close(compiled(x2), model(x2), "float32", "c", compiled.choice.backend)


def test_measure_off_and_recurrent_only_programs_keep_the_kernel_backend():
    torch.manual_seed(0)
    model = ConvGru().eval()
    x = torch.randn(1, 20, 8)
    assert rnnc.compile(model, (x,), target="cpu/host", measure=False).choice.backend == "c"
    gru = torch.nn.GRU(8, 16, batch_first=True).eval()
    plain = rnnc.compile(gru, (x,), target="cpu/host")
    assert plain.choice.backend == "c" and "measured on the example inputs" not in plain.explain()
    out = plain.stream(1).step(x[:, 0])  # the streaming step API stays available
    y = out[0] if isinstance(out, tuple) else out
    assert y.shape[-1] == 16




def test_cli_compile_writes_the_engine_rnnc_compile_picks(tmp_path):
    """``rnnc compile`` without --backend makes rnnc.compile's measured choice and writes that
    engine's directory, which ``rnnc.load`` runs."""
    import json

    from rnnc.cli import main

    model_file = tmp_path / "m.py"
    model_file.write_text(CONV_GRU)
    out = tmp_path / "out"
    assert main(["compile", str(model_file), "--input-shape", "1,20,8", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] in ("c", "onnx")
    assert manifest.get("engine", "kernels") in ("kernels", "native")
    namespace: dict = {}
    exec(CONV_GRU, namespace)
    x = torch.randn(2, 11, 8)
    with torch.no_grad():
        assert_close(rnnc.load(out)(x), namespace["model"](x), "float32", "c", manifest["backend"])
