"""C kernels are built for the target's ISA (``-march`` from its YAML), and every compile says
where each layer's schedule came from (``rnnc.tune.resolve``): the same answer from the API,
the CLI and the manifest."""

from __future__ import annotations

import json

import pytest
import torch
from test_cstyle_cli import MODEL

import rnnc
from rnnc.backends.cstyle.build import C_FLAGS, c_flags
from rnnc.cli import main
from rnnc.errors import UnsupportedError
from rnnc.targets import get
from rnnc.targets.host import can_run
from rnnc.tolerances import assert_close
from rnnc.tune import Tuner


def test_flags_follow_the_target():
    assert c_flags(get("cpu/host")) == C_FLAGS and "-march=native" in C_FLAGS
    assert c_flags(get("nvidia/h100-sxm")) == C_FLAGS  # a GPU's C twin is a numerics check on this CPU
    assert c_flags(get("cpu/arm64-neon")) == C_FLAGS  # this x86 machine cannot run Arm code: the twin
    avx2 = get("cpu/x86-avx2")
    if can_run(avx2.cpu)[0]:  # every x86-64-v3 CPU (the suite's machines): AVX2 code is built and run
        assert "-march=x86-64-v3" in c_flags(avx2) and "-march=native" not in c_flags(avx2)


def test_avx2_kernels_run_here_and_match_the_model():
    """x86-64-v3 code (no AVX-512) compiled and run on whatever x86 CPU runs the suite."""
    avx2 = get("cpu/x86-avx2")
    assert can_run(avx2.cpu)[0], f"the suite needs an AVX2 CPU: {can_run(avx2.cpu)[1]}"
    torch.manual_seed(0)
    model = torch.nn.LSTM(12, 48, batch_first=True).eval()
    x = torch.randn(3, 9, 12)
    compiled = rnnc.compile(model, (x,), target="cpu/x86-avx2", backend="c")
    source = next(iter(compiled.runner.sources.values()))
    assert "rnnc_" in source
    with torch.no_grad():
        assert_close(compiled(x)[0], model(x)[0], "float32", "c", "LSTM built for x86-64-v3")


def test_cli_manifest_names_flags_and_schedule_source(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNC_DB", str(tmp_path / "db"))
    model_file = tmp_path / "model.py"
    model_file.write_text(MODEL)
    out = tmp_path / "out"
    assert main(["compile", str(model_file), "--input-shape", "1,20,12", "--backend", "c",
                 "--target", "cpu/x86-avx2", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for layer in manifest["layers"].values():
        assert "-march=x86-64-v3" in layer["c_flags"]
        assert layer["schedule_source"].startswith("untuned default: knobs from the target")
    assert rnnc.load(out)(torch.randn(2, 5, 12)).shape == (2, 5, 3)


def test_tuning_a_cpu_this_machine_cannot_run_says_why():
    with pytest.raises(UnsupportedError, match="cannot be measured on this machine .*aarch64"):
        Tuner("cpu/arm64-neon", backend="c", progress=False)
