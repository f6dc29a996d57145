"""Half-precision models through ``rnnc.compile(..., backend="cuda")``: on a machine without a GPU
the C twin runs the CUDA kernel's own loop nest -- the GPU Schedule solved for the batch, several
time chunks, a ragged batch tail, the hosted input projection, 16-bit storage -- (on a GPU, the
kernels themselves) and matches torch run in fp32 on the same rounded weights and inputs
(``nn.LSTM``/``nn.GRU`` are the independent reference; only summation order and the rounding of
what is stored differ)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rnnc
from rnnc.tolerances import assert_close

MODULES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
#: the tolerance row of what runs: the GPU kernels where there is a GPU, else their C twin
ROW = "cuda" if torch.cuda.is_available() else "c"


def _kernels(compiled):  # noqa: ANN001, ANN202
    """Each layer's loop nest, from the GPU program or the C twin."""
    runner = compiled.runner
    if hasattr(runner, "layers"):
        return [kernel for kernel, _ in runner.layers.values()]
    return [b.kernel for b in runner.builds.values()]


def _twin_case(kind: str, dtype: str, batch: int, steps: int, compile_batch: int):  # noqa: ANN202
    torch.manual_seed(1)
    store = getattr(torch, dtype)
    half = MODULES[kind](24, 64, batch_first=True).to(store)
    ref = MODULES[kind](24, 64, batch_first=True)
    ref.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    x = torch.randn(batch, steps, 24).to(store)
    compiled = rnnc.compile(half, (x,), target="nvidia/h100-sxm", backend="cuda", batch=compile_batch,
                            use_db=False, measure=False)
    return compiled, ref, x


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_half_model_compiles_for_h100_and_matches_torch(kind: str, dtype: str) -> None:
    compiled, ref, x = _twin_case(kind, dtype, batch=5, steps=21, compile_batch=4)
    (kernel,) = _kernels(compiled)
    kn = kernel.meta["knobs"]
    # the GPU loop nest, not CPU knobs: warps own rows, the batch the solver tiled for, chunks of time
    assert kn["reduce_inner"] and kn["dtype"] == dtype and kernel.meta["host_gemm"]
    assert 21 > kn["time_chunk"] > 1 and 21 % kn["time_chunk"], kn  # several chunks, the last one short
    assert 1 < kn["batch_block"] and 5 % kn["batch_block"], kn  # full batch blocks and a ragged tail
    got = compiled(x)
    with torch.no_grad():
        want = ref(x.float())
    assert got[0].dtype == x.dtype
    assert_close(got[0].float(), want[0].to(x.dtype).float(), dtype, ROW, f"{kind} {dtype} y")
    finals = want[1] if kind == "lstm" else (want[1],)  # the Program's outputs are flat: y, h(, c)
    for g, w in zip(got[1:], finals, strict=True):
        assert_close(g.float(), w.to(x.dtype).float(), dtype, ROW, f"{kind} {dtype} final state")
    text = compiled.explain()
    assert ("C-dialect twin" in text) != torch.cuda.is_available()
    assert f"{dtype} storage" in text and "one GEMM before the loop" in text
    assert f"batch block {kn['batch_block']}" in text and f"time chunk {kn['time_chunk']}" in text


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_model_traces_with_fp32_steps(dtype: str) -> None:
    """A 16-bit model traces (the IR computes in fp32, stores 16-bit) and its Program agrees with
    torch's 16-bit layer within the 16-bit trace tolerance at another size."""
    torch.manual_seed(0)
    store = getattr(torch, dtype)
    model = torch.nn.GRU(8, 16, num_layers=2, batch_first=True).to(store)
    prog = rnnc.trace(model, (torch.randn(2, 6, 8).to(store),))
    x = torch.randn(3, 11, 8).to(store)
    got = prog.run(x)
    with torch.no_grad():
        want = model(x)
    assert got[0].dtype == store
    assert_close(got[0].float(), want[0].float(), dtype, "trace-check", f"{dtype} GRU Program vs torch")


@pytest.mark.nvcc
def test_generic_cuda_kernel_has_its_own_launch(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    """The generic path (a cell the fused lowering does not take, here sLSTM) has no grid barrier:
    its manifest launch is not cooperative and takes one block per sample, and its kernel carries
    no register cap predicted for the fused loop nest (``__launch_bounds__`` instead of
    ``__maxnreg__``); the fused path keeps its cooperative launch."""
    import json

    from rnnc.backends import get_backend
    from rnnc.ir import rnn_program
    from rnnc.kernels import CELLS

    torch.manual_seed(0)
    for kind, cooperative in (("slstm", False), ("lstm", True)):
        cell, weights = CELLS[kind].load_module_class()(8, 32).rnnc_layer()
        out = tmp_path / kind
        get_backend("cuda").compile(rnn_program([cell], [[weights]]), "nvidia/h100-sxm", str(out), batch=4)
        entry = next(iter(json.loads((out / "manifest.json").read_text())["layers"].values()))
        assert entry["launch"]["cooperative"] is cooperative, entry["launch"]
        source = (out / entry["source_cuda"]).read_text()
        if not cooperative:
            assert entry["path"] == "generic" and entry["launch"]["grid_per_call"] == "batch"
            assert "__maxnreg__" not in source and "__launch_bounds__" in source
            assert "this_grid().sync()" not in source


@pytest.mark.nvcc
def test_half_cuda_directory_records_its_storage_and_loads(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    """A bf16 model compiled to a cuda directory: the manifest's schedule is 16-bit with the batch
    it was solved for and the projection hosted, and rnnc.load runs it on bf16 input (its bf16 C
    twin here, the cubins on a GPU)."""
    import json

    from rnnc.backends import get_backend

    torch.manual_seed(3)
    half = torch.nn.GRU(12, 32, batch_first=True).to(torch.bfloat16)
    ref = torch.nn.GRU(12, 32, batch_first=True)
    ref.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    x = torch.randn(4, 13, 12).to(torch.bfloat16)
    get_backend("cuda").compile(rnnc.trace(half, (x,)), "nvidia/h100-sxm", str(tmp_path), batch=4)
    entry = next(iter(json.loads((tmp_path / "manifest.json").read_text())["layers"].values()))
    assert entry["knobs"]["dtype"] == "bfloat16" and entry["knobs"]["host_gemm"] == 1
    assert entry["schedule"]["problem"]["batch"] == 4 and entry["schedule"]["problem"]["dtype"] == "bf16"
    got = rnnc.load(str(tmp_path))(x)
    with torch.no_grad():
        want = ref(x.float())[0].to(torch.bfloat16).float()
    assert_close(got[0].float(), want, "bfloat16", ROW, "bf16 GRU loaded from a cuda directory")


@pytest.mark.nvcc
def test_flashrnn_headline_manifest() -> None:
    """bf16 LSTM, B=16, H=768 for an H100 (FlashRNN's headline size): the schedule is solved for
    batch 16, the input projection is a separate GEMM (no in-kernel projection buffer), and no
    shipped architecture spills."""
    import json
    import tempfile

    from rnnc.backends import get_backend

    torch.manual_seed(0)
    model = torch.nn.LSTM(768, 768, batch_first=True).to(torch.bfloat16)
    x = torch.randn(16, 2, 768).to(torch.bfloat16)
    with tempfile.TemporaryDirectory() as out:
        get_backend("cuda").compile(rnnc.trace(model, (x,)), "nvidia/h100-sxm", out, batch=16)
        entry = next(iter(json.loads((Path(out) / "manifest.json").read_text())["layers"].values()))
        source = (Path(out) / entry["source_cuda"]).read_text()
    problem = entry["schedule"]["problem"]
    assert problem["batch"] == 16 and problem["dtype"] == "bf16" and entry["knobs"]["dtype"] == "bfloat16"
    assert entry["knobs"]["host_gemm"] == 1 and "xg_" in source and "xp_" not in source
    assert set(entry["resources"]) >= {"sm_80", "sm_86", "sm_89", "sm_90"}
    for arch, res in entry["resources"].items():
        assert res["spill_stores"] == 0 and res["spill_loads"] == 0, (arch, res)
