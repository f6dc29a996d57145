"""The GPU loader: cubins launched through the CUDA driver API from torch CUDA tensors.

Without a CUDA device the loader must refuse with one clear error (checked here on every
machine by hiding the device); the numerics tests need a GPU and carry the ``gpu`` marker.
"""

from __future__ import annotations

import pytest
import torch
from cstyle_cases import module, states

import rnnc
from rnnc.backends.cstyle import cuda_driver
from rnnc.backends.cstyle.build import compile_cuda
from rnnc.backends.cstyle.cuda_driver import pick_cubin
from rnnc.errors import UnsupportedError
from rnnc.targets import get as get_target
from rnnc.tolerances import assert_close


@pytest.fixture()
def no_cuda(monkeypatch):
    """This process as if it had no CUDA device (a GPU machine runs these checks too)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cuda_driver, "_DRIVER", None)


def _gru_program():
    mod = torch.nn.GRU(6, 32, batch_first=True)
    return mod, rnnc.trace(mod, (torch.randn(2, 5, 6),))


def test_without_a_device_the_loader_says_so(no_cuda, tmp_path) -> None:
    from rnnc.backends.cstyle.cuda_program import compile_cuda_program, load_cuda

    with pytest.raises(UnsupportedError, match="no CUDA device"):
        cuda_driver.driver()
    with pytest.raises(UnsupportedError, match="no CUDA device"):
        load_cuda(tmp_path)  # refused before it looks at the directory
    _, prog = _gru_program()
    with pytest.raises(UnsupportedError, match="no CUDA device"):
        compile_cuda_program(prog, get_target("nvidia/a100-80gb"))
    assert not cuda_driver.cuda_available()


def test_without_a_device_compile_runs_the_c_twin(no_cuda) -> None:
    """rnnc.compile(..., backend="cuda") falls back to the kernels' C twin and says so."""
    mod, prog = _gru_program()
    compiled = rnnc.compile(prog, target="nvidia/a100-80gb", backend="cuda", use_db=False)
    assert "no GPU" in compiled.explain()
    x = torch.randn(2, 7, 6)
    with torch.no_grad():
        want = mod(x)[0]
    assert_close(compiled(x)[0], want, "float32", "c", "C twin of the CUDA GRU")


def test_cubin_choice() -> None:
    cubins = {"sm_80": "a", "sm_86": "b", "sm_90": "c"}
    assert pick_cubin(cubins, "sm_90") == "sm_90"
    assert pick_cubin(cubins, "sm_89") == "sm_86"  # same major, not newer
    with pytest.raises(UnsupportedError, match="recompile with --target"):
        pick_cubin({"sm_90": "c"}, "sm_86")


# --------------------------------------------------------------------------- on a GPU
# Schedules are for nvidia/a100-80gb (108 SMs): their grids fit any data-centre GPU from the A100
# on, and the loader's occupancy check refuses (rather than deadlocks) on a smaller one.
def _device_arch() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}"


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gpu_compile_matches_torch(kind: str) -> None:
    torch.manual_seed(0)
    mod = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](12, 256, num_layers=2, batch_first=True)
    x = torch.randn(3, 40, 12)
    compiled = rnnc.compile(mod, (x,), target="nvidia/a100-80gb", backend="cuda", use_db=False)
    got = compiled(x.cuda())
    with torch.no_grad():
        want = mod(x)
    assert got[0].is_cuda
    assert_close(got[0].cpu(), want[0], "float32", "cuda", f"{kind} y on the GPU")


@pytest.mark.gpu
def test_gpu_load_of_a_cuda_directory(tmp_path) -> None:
    from rnnc.backends.cstyle.artifact import compile_to_dir
    from rnnc.backends.cstyle.cuda_program import CudaProgram

    mod, prog = _gru_program()
    compile_to_dir(prog, "nvidia/a100-80gb", "cuda", tmp_path, archs=(_device_arch(),))
    loaded = rnnc.load(tmp_path)
    assert isinstance(loaded, CudaProgram)
    x = torch.randn(4, 9, 6)
    with torch.no_grad():
        want = mod(x)[0]
    assert_close(loaded(x.cuda())[0].cpu(), want, "float32", "cuda", "loaded GRU")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_gpu_half_storage_matches_rounded_fp32(name: str, dtype: str) -> None:
    """fp16/bf16 storage on the GPU vs the fp32 interpreter on the same rounded x and weights
    (the same check test_c_half.py makes of the C twin)."""
    from rnnc.backends.cstyle.cuda_driver import CudaKernel
    from rnnc.backends.cstyle.cuda_fit import fit_cuda_schedule
    from rnnc.backends.cstyle.cuda_program import CudaLayerRunner
    from rnnc.backends.cstyle.dialects import CudaDialect
    from rnnc.ir import rnn_program

    hidden, batch, steps = 256, 3, 20
    cell, weights = module(name, hidden).rnnc_layer()
    fit = fit_cuda_schedule(cell, get_target("nvidia/a100-80gb"), dtype, f"gpu_{name}", arch=_device_arch())
    kernel = fit.kernel
    r = CudaDialect(kernel, dtype)
    cubin, _ = compile_cuda(r.render(), _device_arch())
    kn = kernel.meta["knobs"]
    launcher = CudaKernel(cubin.read_bytes(), kernel.name, kn["workers"], kn["threads"],
                          r.smem_bytes if r.dynamic else 0)
    store = getattr(torch, dtype)
    dev = torch.device("cuda")
    runner = CudaLayerRunner(kernel, launcher, {k: v.to(dev) for k, v in weights.items()}, dev)
    x = torch.randn(steps, batch, cell.input_size).to(store)
    init = states(cell, batch)
    st = [s.to(dev).contiguous() for s in init]
    y = torch.empty(steps, batch, hidden, dtype=store, device=dev)
    runner.run(x.to(dev), y, 0, st)
    torch.cuda.synchronize()
    rounded = {k: v.to(store).float() for k, v in weights.items()}
    want = rnn_program([cell], [[rounded]], with_states=True).run(x.float().transpose(0, 1),
                                                                   *[s.unsqueeze(0) for s in init])
    assert_close(y.cpu().float(), want[0].transpose(0, 1).to(store).float(), dtype, "cuda", f"{name} {dtype} y")
    for g, w in zip(st, want[1:], strict=True):
        assert_close(g.cpu(), w[0], dtype, "cuda", f"{name} {dtype} state")


@pytest.mark.gpu
def test_gpu_generic_cell_matches_interpreter() -> None:
    """The generic path (sLSTM) on a GPU: a plain launch with one block per sample, B=5."""
    from rnnc.ir import rnn_program
    from rnnc.kernels import CELLS

    torch.manual_seed(0)
    cell, weights = CELLS["slstm"].load_module_class()(6, 32).rnnc_layer()
    prog = rnn_program([cell], [[weights]])
    x = torch.randn(5, 9, 6)
    compiled = rnnc.compile(prog, target="nvidia/a100-80gb", backend="cuda", use_db=False)
    got = compiled(x.cuda())
    assert_close(got[0].cpu(), prog.run(x)[0], "float32", "cuda", "sLSTM y on the GPU (generic path)")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gpu_half_torch_model_through_compile(dtype: str) -> None:
    """A torch LSTM cast to fp16/bf16 through rnnc.compile on the GPU (cuBLAS input projection,
    batch in the schedule) vs the fp32 module on the same rounded weights and inputs."""
    torch.manual_seed(0)
    store = getattr(torch, dtype)
    half = torch.nn.LSTM(16, 128, batch_first=True).to(store)
    ref = torch.nn.LSTM(16, 128, batch_first=True)
    ref.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    x = torch.randn(6, 33, 16).to(store)
    compiled = rnnc.compile(half, (x,), target="nvidia/a100-80gb", backend="cuda", use_db=False, measure=False)
    got = compiled(x.cuda())[0].float().cpu()
    with torch.no_grad():
        want = ref(x.float())[0].to(store).float()
    assert_close(got, want, dtype, "cuda", f"{dtype} LSTM on the GPU")
