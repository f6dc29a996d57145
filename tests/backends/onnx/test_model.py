"""Whole-model export: generic ops, checks and metadata, state I/O, opsets, errors, registry, CLI."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from onnx_test_helpers import as_tuple, assert_all_close, run_ort, session, zero_states

import rnnc
from rnnc.backends import get_backend
from rnnc.backends.onnx.ops import RENDERERS
from rnnc.backends.onnx.render import MIN_EXPORT_OPSET
from rnnc.cli import main
from rnnc.errors import RnncError, UnsupportedError, UserInputError
from rnnc.ir import OPS, GraphBuilder, Program, Weights, add_rnn, rnn_program
from rnnc.ir.ops import OpDef
from rnnc.kernels import CELLS


def _lstm_program(with_states: bool = False) -> Program:
    torch.manual_seed(0)
    cell = CELLS["lstm"].build_cell(4, 6)
    return rnn_program([cell], [[{p: torch.randn(t.shape) * 0.3 for p, t in cell.step.params}]],
                       with_states=with_states)


def _kitchen_sink() -> Program:
    """A Silero-shaped model (audio -> reflect pad -> STFT-like conv -> magnitude -> strided
    convs -> LSTM -> head) that also touches most other ops, in one graph."""
    gen = torch.Generator().manual_seed(0)

    def w(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * 0.3

    b = GraphBuilder("sink")
    audio = b.input("audio", ("B", "L"))
    tensors: dict[str, torch.Tensor] = {}

    def param(name: str, value: torch.Tensor):
        tensors[name] = value
        return b.param(name, tuple(value.shape))

    x = b.pad(b.unsqueeze(audio, axis=1), pads=(8, 8), mode="reflect", value=None)
    spec = b.conv1d(x, param("stft", w(16, 1, 16)), stride=4, padding=0, dilation=1, groups=1)
    re, im = b.split(spec, axis=1, sizes=(8, 8))
    mag = b.sqrt(re * re + im * im + 1e-6)
    h = b.relu(b.conv1d(mag, param("c1.w", w(12, 8, 3)), param("c1.b", w(12)), stride=1, padding=1,
                        dilation=1, groups=1))
    h = b.conv1d(b.pad(h, pads=(1, 1), mode="replicate", value=None), param("c2.w", w(12, 4, 3)), stride=2,
                 padding=0, dilation=2, groups=3)
    h = b.transpose(b.silu(h), perm=(0, 2, 1))  # [B, T', 12]
    h = b.layer_norm(h, param("ln.w", 1 + w(12)), param("ln.b", w(12)), eps=1e-5, ndim=1)
    h = b.gelu(b.linear(h, param("proj.w", w(8, 12)), param("proj.b", w(8))))
    cell = CELLS["gru"].build_cell(8, 8)
    (y, _h), rnn_w = add_rnn(b, h, [cell], [[{p: w(*t.shape) for p, t in cell.step.params}] * 2],
                             bidirectional=True, prefix="gru.")
    tensors.update(rnn_w)
    soft = b.softmax(b.matmul(y, param("head.w", w(16, 4))), axis=-1)
    gate = b.where(b.gt(soft, b.const(0.3)), b.clamp(soft, min=0.1, max=None), b.flip(soft, axis=-1))
    pooled = b.mean(gate, axes=(1,), keepdim=False)
    top = b.amax(b.stack(pooled, b.select(gate, axis=1, index=-1), axis=1), axes=(1,))
    out = b.sigmoid(b.reshape(b.sum(top, axes=(-1,), keepdim=True), shape=(-1, 1)) + b.exp(b.neg(b.abs(
        b.slice(b.concat(pooled, top, axis=-1), axis=-1, start=1, stop=2**62, step=2)))))
    return Program(b.build({"prob": out, "y": y}), Weights(tensors)).verify()


def test_every_ir_op_has_an_onnx_renderer():
    assert set(OPS) <= set(RENDERERS), sorted(set(OPS) - set(RENDERERS))


@pytest.mark.parametrize("length", [512, 800, 97])
def test_whole_model_matches_interpreter_at_any_length(length):
    program = _kitchen_sink()
    model = rnnc.export_onnx(program)
    audio = torch.randn(3, length, generator=torch.Generator().manual_seed(length))
    states = zero_states(program, 3)
    got = run_ort(model, audio, *states)
    assert_all_close(got[:2], as_tuple(program.run(audio)), "onnxruntime", f"kitchen sink L={length}")


def test_model_passes_checker_and_strict_shape_inference_and_has_metadata(tmp_path):
    program = _kitchen_sink()
    path = tmp_path / "m.onnx"
    rnnc.export_onnx(program, None, path)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["rnnc.version"] == rnnc.__version__
    assert meta["rnnc.program_hash"] == program.hash()
    assert meta["rnnc.cells"] == "gru"
    assert meta["rnnc.opset"] == "18" and model.opset_import[0].version == 18
    states = json.loads(meta["rnnc.states"])
    assert [(s["input"], s["output"]) for s in states] == [("h0", "h_n")]
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", "L"]


def test_states_become_inputs_and_outputs_and_zeros_reproduce_the_program():
    program = _lstm_program(with_states=False)
    model = rnnc.export_onnx(program)
    assert [i.name for i in model.graph.input] == ["x", "h0", "c0"]
    assert [o.name for o in model.graph.output] == ["y", "h_n", "c_n"]
    x = torch.randn(2, 5, 4)
    assert_all_close(run_ort(model, x, *zero_states(program, 2)), program.run(x), "onnxruntime", "zeros")


@pytest.mark.parametrize("opset", [MIN_EXPORT_OPSET, 17, 18, 21, 24])
def test_supported_opsets_export_and_run(opset):
    program = _kitchen_sink() if opset >= 17 else _lstm_program()
    model = rnnc.export_onnx(program, opset=opset)
    assert model.opset_import[0].version == opset
    session(model)


@pytest.mark.parametrize("opset", [13, 999, "18", 18.0, True])
def test_bad_opset_is_one_clear_error(opset):
    with pytest.raises(UserInputError, match="opset"):
        rnnc.export_onnx(_lstm_program(), opset=opset)


def test_op_needing_a_newer_opset_is_named():
    with pytest.raises(UnsupportedError, match="layer_norm.*opset >= 17"):
        rnnc.export_onnx(_kitchen_sink(), opset=16)


def test_unsupported_op_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(OPS, "erfinv", OpDef("erfinv", 1, 1, (), OPS["tanh"].infer, OPS["tanh"].evaluate, True))
    b = GraphBuilder("g")
    x = b.input("x", ("B", 3))
    program = Program(b.build({"y": b.op("erfinv", x)}))
    ok, why = get_backend("onnx").supports(program)
    assert not ok and "erfinv" in why
    with pytest.raises(UnsupportedError, match="op 'erfinv'.*no ONNX rendering"):
        rnnc.export_onnx(program)


def test_backend_registry():
    assert get_backend("onnx").supports(_lstm_program()) == (True, "")
    with pytest.raises(UserInputError, match="unknown backend"):
        get_backend("no_such_backend")


def test_untraceable_module_is_an_rnnc_error():
    class Weird(torch.nn.Module):  # complex tensors: the IR has no type for them
        def forward(self, x):
            return torch.fft.fft(x).real

    with pytest.raises(RnncError, match="complex"):
        rnnc.export_onnx(Weird(), (torch.randn(2, 3),))
    with pytest.raises(UserInputError, match="example inputs"):
        rnnc.export_onnx(Weird())


def test_missing_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        rnnc.export_onnx(_lstm_program(), None, tmp_path / "nope" / "m.onnx")


def test_cli_bad_opset_exits_2_with_one_line(tmp_path, capsys):
    model_file = tmp_path / "m.py"
    model_file.write_text("import torch\nmodel = torch.nn.GRU(4, 8, batch_first=True)\n")
    code = main(["export", str(model_file), "-o", str(tmp_path / "m.onnx"), "--input-shape", "1,16,4",
                 "--opset", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "opset" in err


def test_hoisting_moves_input_projections_out_of_the_loop_but_never_batch_mixing_ops():
    from rnnc.backends.onnx.hoist import split_step
    from rnnc.ir import Cell, StateSpec

    mingru = CELLS["mingru"].build_cell(4, 6)
    cut = split_step(mingru)
    assert cut is not None and "linear" in [n.op for n in cut.hoisted.nodes]
    assert "linear" not in [n.op for n in cut.body.nodes]

    # a (strange) user cell that averages over the batch: must stay in the loop to stay correct
    b = GraphBuilder("mix_step")
    x = b.input("x", ("B", 4))
    h = b.input("h", ("B", 4))
    w = b.param("w", (4, 4))
    proj = b.linear(x, w)  # hoistable
    mixed = b.mean(proj, axes=(0,), keepdim=True)  # mixes samples: not hoistable
    h_new = b.tanh(h * 0.5 + mixed + proj)
    cell = Cell("mix", "nonlinear", 4, 4, 4, (StateSpec("h", (4,)),), b.build({"y": h_new, "h": h_new}))
    cut = split_step(cell)
    assert cut is not None and [n.op for n in cut.hoisted.nodes if n.op != "const"] == ["linear"]
    program = rnn_program([cell], [[{"w": torch.randn(4, 4)}]], with_states=True)
    x_in = torch.randn(3, 9, 4)
    h0 = torch.randn(1, 3, 4)
    assert_all_close(run_ort(rnnc.export_onnx(program), x_in, h0), as_tuple(program.run(x_in, h0)),
                     "onnxruntime", "batch-mixing cell")
