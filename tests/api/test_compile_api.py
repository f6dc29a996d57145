"""``rnnc.compile`` end to end on the CPU: torch layers, every rnnc cell, a user cell, Silero VAD;
save -> load round trip; backend choice explained; unsupported layers named."""

from __future__ import annotations

import pytest
import torch

import rnnc
from rnnc.errors import UnsupportedError
from rnnc.kernels import CELLS
from rnnc.tolerances import assert_close


def _check(model: torch.nn.Module, x_trace: torch.Tensor, x_run: torch.Tensor) -> rnnc.api.CompiledModule:
    compiled = rnnc.compile(model, (x_trace,), target="cpu/host")
    assert isinstance(compiled, torch.nn.Module)
    with torch.no_grad():
        ref = model(x_run)
    got = compiled(x_run)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = got if isinstance(got, tuple) else (got,)
    flat_ref = [r for item in ref for r in (item if isinstance(item, tuple) else (item,))]
    assert len(got) == len(flat_ref)
    for g, r in zip(got, flat_ref, strict=True):
        assert_close(g, r, backend="c")
    return compiled


@pytest.mark.parametrize("make", [
    lambda: torch.nn.LSTM(6, 16, num_layers=2, bidirectional=True, batch_first=True),
    lambda: torch.nn.GRU(6, 16, batch_first=True),
    lambda: torch.nn.RNN(6, 16, nonlinearity="relu", batch_first=True),
], ids=["lstm2bi", "gru", "elman_relu"])
def test_compile_torch_layers(make):
    torch.manual_seed(0)
    compiled = _check(make().eval(), torch.randn(2, 5, 6), torch.randn(3, 9, 6))
    assert compiled.choice.backend == "c" and "backend c for cpu/host" in compiled.explain()


@pytest.mark.parametrize("name", list(CELLS))
def test_compile_every_rnnc_cell(name):
    torch.manual_seed(0)
    _check(CELLS[name].load_module_class()(6, 16).eval(), torch.randn(2, 5, 6), torch.randn(3, 9, 6))


class _LeakyCell(torch.nn.Module):
    """A user-written cell: h' = 0.5 h + tanh(W x + U h)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(6, 12)
        self.u = torch.nn.Linear(12, 12, bias=False)

    def forward(self, x, h):
        h2 = 0.5 * h + torch.tanh(self.w(x) + self.u(h))
        return h2, h2


def test_compile_user_cell():
    torch.manual_seed(0)
    model = rnnc.Recurrent(_LeakyCell(), [(12,)], input_size=6).eval()
    _check(model, torch.randn(2, 5, 6), torch.randn(3, 9, 6))


def test_compile_silero_on_speech():
    from rnnc.data import speech_sample
    from rnnc.frontend.silero import CHUNK, CONTEXT, load_inner_model, stream

    inner = load_inner_model()
    compiled = rnnc.compile(inner, (torch.zeros(1, CONTEXT + CHUNK), torch.zeros(2, 1, 128)))
    audio = torch.from_numpy(speech_sample()[0][: 16000 * 5])
    with torch.no_grad():
        ref = stream(lambda x, s: inner(x, s), audio)
    assert_close(stream(lambda x, s: compiled(x, s), audio), ref, backend="c")


def test_compile_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.GRU(6, 16, num_layers=2, batch_first=True).eval()
    program = rnnc.trace(model, (torch.randn(1, 4, 6),))
    from rnnc.backends import get_backend

    manifest = get_backend("c").compile(program, "cpu/host", str(tmp_path / "out"))
    assert manifest["program_hash"] == program.hash()
    loaded = rnnc.load(str(tmp_path / "out"))
    x = torch.randn(2, 13, 6)
    with torch.no_grad():
        ref = model(x)
    for g, r in zip(loaded(x), ref, strict=True):
        assert_close(g, r, backend="c")


def test_gpu_target_explains_backend_choice():
    torch.manual_seed(0)
    model = torch.nn.GRU(6, 16, batch_first=True).eval()
    compiled = rnnc.compile(model, (torch.randn(1, 4, 6),), target="nvidia/jetson-orin-nano")
    text = compiled.explain()
    assert compiled.choice.backend == "cuda" and "nvidia/jetson-orin-nano" in text
    if not torch.cuda.is_available():
        assert "C-dialect twin" in text
    x = torch.randn(2, 7, 6)
    with torch.no_grad():
        assert_close(compiled(x)[0], model(x)[0], backend="c")


def test_a_model_no_kernel_backend_takes_still_compiles():
    """No recurrent layer: compile runs the whole model in one engine and says why, never refuses."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)).eval()
    compiled = rnnc.compile(model, (torch.randn(1, 1, 8, 8),))
    text = compiled.explain()
    assert compiled.choice.backend in ("onnx", "interp") and "no recurrent layer" in text
    x = torch.randn(3, 1, 8, 8)
    got = compiled(x)
    got = got[0] if isinstance(got, (list, tuple)) else got
    with torch.no_grad():
        assert_close(torch.as_tensor(got), model(x), backend="onnxruntime")


def test_explain_names_the_ops_that_run_in_torch():
    class ConvGRU(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
            self.gru = torch.nn.GRU(16, 8, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x).permute(0, 2, 1, 3).flatten(2)
            return self.gru(y)[0]

    compiled = rnnc.compile(ConvGRU().eval(), (torch.randn(2, 1, 5, 8),), backend="c")
    # which op, and the model's line that calls it (``Program.lines``)
    assert "runs in torch" in compiled.explain() and "aten.conv2d.default (test_compile_api.py:" in compiled.explain()


def test_no_backend_fits_is_explained():
    model = torch.nn.GRU(6, 16, batch_first=True).eval()
    with pytest.raises(UnsupportedError, match="c: the C backend runs on CPUs"):
        rnnc.compile(model, (torch.randn(1, 4, 6),), target="nvidia/t4", backend="c")


def test_compile_uses_a_tuned_record_first(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNC_DB", str(tmp_path / "db"))
    torch.manual_seed(0)
    model = torch.nn.GRU(6, 16, batch_first=True).eval()
    x = torch.randn(2, 5, 6)
    before = rnnc.compile(model, (x,), target="cpu/host")
    assert "schedule from untuned default: knobs from the target" in before.explain()
    report = rnnc.tune(model, (x,), target="cpu/host", backend="c", batch=2, seq_len=8, max_candidates=2)
    assert report.ok
    trials = report.layers[0].trials
    assert trials[0]["params"] == {} and trials[0]["status"] == "ok"  # the untuned default is candidate one
    best = report.layers[0].best
    assert best.time_s <= trials[0]["time_s"]  # so the record is never slower than not tuning
    after = rnnc.compile(model, (x,), target="cpu/host")
    assert "schedule from tuned record" in after.explain()
    x_run = torch.randn(2, 11, 6)
    with torch.no_grad():
        assert_close(after(x_run)[0], model(x_run)[0], backend="c")


@pytest.mark.parametrize("backend, target", [
    ("c", "cpu/host"), pytest.param("cuda", "nvidia/h100-sxm", marks=pytest.mark.nvcc),
    ("tvm", "cpu/host"), ("onnx", "cpu/host")])
def test_one_manifest_format_for_every_backend(tmp_path, backend, target):
    """``rnnc compile --backend X -o OUT`` then ``rnnc.load(OUT)`` gives the model's numbers."""
    from rnnc.backends.manifest import read_manifest
    from rnnc.cli import main

    model_file = tmp_path / "m.py"
    model_file.write_text("import torch\ntorch.manual_seed(0)\nmodel = torch.nn.LSTM(6, 16, batch_first=True)\n")
    out = tmp_path / "out"
    assert main(["compile", str(model_file), "--input-shape", "1,5,6", "--backend", backend, "--target", target,
                 "-o", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest["backend"] == backend and {"program", "weights", "program_hash", "versions"} <= set(manifest)
    torch.manual_seed(0)
    ref_model = torch.nn.LSTM(6, 16, batch_first=True).eval()
    x = torch.randn(2, 9, 6)
    with torch.no_grad():
        ref = ref_model(x)
    got = rnnc.load(str(out))(x)
    assert_close(got[0], ref[0], backend="c" if backend in ("c", "cuda") else
                 {"tvm": "tvm", "onnx": "onnxruntime"}[backend])


@pytest.mark.parametrize("batch_first", [True, False])
def test_schedules_are_solved_for_the_example_batch(batch_first: bool) -> None:
    """The batch a schedule is solved for comes from the recurrent layer's own batch dimension of
    the example input (a time-major nn.GRU's is the second), not blindly from the first."""
    from rnnc.api import example_batch

    model = torch.nn.GRU(8, 16, batch_first=batch_first)
    x = torch.randn(3, 7, 8)
    program = rnnc.trace(model, (x,))
    assert example_batch(program, (x,)) == (3 if batch_first else 7)
    assert example_batch(program, None) == 1
