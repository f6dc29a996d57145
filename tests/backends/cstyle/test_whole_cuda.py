"""A whole Program as one CUDA module (``rnnc.backends.cstyle.whole_cuda``): the launch list covers
every op and layer in program order, the module compiles for sm_90 without spills, and its C
twin -- the same loop nest in the C dialect, the GPU layer kernels' own C twins inside --
matches the model in torch."""

from __future__ import annotations

import pytest
import torch
from model_files import CONV_GRU
from test_whole_native import _cases  # the same models as the native engine's tests

import rnnc
from rnnc.backends.cstyle.whole_cuda import cuda_module
from rnnc.errors import UnsupportedError
from rnnc.targets import get
from rnnc.tolerances import assert_close

H100 = "nvidia/h100-sxm"


@pytest.mark.parametrize("case", ["convgru", "spectral", "tagger"])
def test_twin_of_the_cuda_module_matches_torch(case: str) -> None:
    _, model, inputs = next(c for c in _cases(2) if c[0] == case)
    module = cuda_module(rnnc.trace(model, inputs), inputs, get(H100), compile_=False)
    with torch.no_grad():
        got, want = module.twin(*inputs), model(*inputs)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,),
                    strict=True):
        assert_close(g, w, "float32", "cuda")
    layers = [ln for ln in module.launches if ln.layer]
    rnn_directions = sum(len(node.attr("cells")) * (2 if node.attr("bidirectional") else 1)
                         for node in rnnc.trace(model, inputs).rnn_nodes())
    assert len(layers) == rnn_directions  # one launch per layer and direction, in program order
    assert all(ln.kernel in module.source for ln in module.launches)
    assert module.source.count("__global__") == len({ln.kernel for ln in module.launches})


@pytest.mark.nvcc
def test_module_compiles_for_sm90_without_spills() -> None:
    _, model, inputs = _cases(2)[0]  # a two-layer bidirectional GRU between convs and a head
    module = cuda_module(rnnc.trace(model, inputs), inputs, get(H100))
    assert module.arch == "sm_90" and module.cubin is not None and module.cubin.exists()
    assert set(module.resources) == {ln.kernel for ln in module.launches}
    for name, res in module.resources.items():
        assert res.spill_stores == res.spill_loads == 0, name
    assert "cooperative" in module.describe()


def test_cpu_target_is_refused() -> None:
    _, model, inputs = _cases(1)[2]
    with pytest.raises(UnsupportedError, match="GPU target"):
        cuda_module(rnnc.trace(model, inputs), inputs, get("cpu/host"))




@pytest.mark.nvcc
def test_cli_writes_the_module_beside_the_layers(tmp_path) -> None:
    import json

    from rnnc.cli import main

    model_file = tmp_path / "m.py"
    model_file.write_text(CONV_GRU)
    out = tmp_path / "out"
    assert main(["compile", str(model_file), "--input-shape", "2,20,8", "--target", H100, "-o", str(out)]) == 0
    module = json.loads((out / "manifest.json").read_text())["module"]
    assert (out / module["source"]).exists() and (out / module["cubin"]).exists()
    kernels = [ln["kernel"] for ln in module["launches"]]
    assert sum(1 for ln in module["launches"] if ln["layer"]) == 1 and set(kernels) == set(module["resources"])
    namespace: dict = {}
    exec(CONV_GRU, namespace)
    x = torch.randn(2, 20, 8)
    with torch.no_grad():  # the directory still loads (its layers' C twins here, no GPU)
        assert_close(rnnc.load(out)(x), namespace["model"](x), "float32", "cuda")


@pytest.mark.nvcc
def test_a_scalar_reduction_is_one_kernel() -> None:
    """``y - y.mean()``: the reduction's accumulator, loop and store stay in one kernel."""
    class Centered(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = torch.nn.GRU(8, 12, batch_first=True)
            self.head = torch.nn.Linear(12, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.head(self.gru(x)[0])
            return y - y.mean()

    model, x = Centered().eval(), torch.randn(2, 10, 8)
    module = cuda_module(rnnc.trace(model, (x,)), (x,), get(H100))
    assert module.cubin is not None and set(module.resources) == {ln.kernel for ln in module.launches}
    with torch.no_grad():
        assert_close(module.twin(x), model(x), "float32", "cuda")
