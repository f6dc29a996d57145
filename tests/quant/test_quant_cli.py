"""``rnnc quantize``: a model file and an .npz of calibration inputs in, integer ONNX or IR out."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from quant_helpers import host_int8_bits, op_types

from rnnc.cli import main
from rnnc.ir import Program

MODEL = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.gru = torch.nn.GRU(16, 32, batch_first=True)
        self.head = torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.gru(x)[0])

model = Net
'''


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "net.py").write_text(MODEL)
    x = np.random.default_rng(0).standard_normal((6, 10, 16)).astype(np.float32)
    x[..., 5] *= 60
    np.savez(tmp_path / "calib.npz", x=x)
    return tmp_path


def test_quantize_to_integer_onnx(files, capsys):
    out = files / "net.int8.onnx"
    rc = main(["quantize", str(files / "net.py"), "--calib", str(files / "calib.npz"), "--outliers", "keep",
               "-o", str(out), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scheme"] == "w8a8" and report["ops"]["Scan"] == 1
    assert [s["kept"] for s in report["sites"] if s["site"].endswith("l0.fwd/t0")] == [[5]]
    assert {"MatMulIntegerToFloat", "DynamicQuantizeLinear"} <= op_types(onnx.load(str(out)).graph)


def test_quantize_to_ir_and_directory_calibration(files, capsys):
    (files / "calib_dir").mkdir()
    for i in range(2):
        np.savez(files / "calib_dir" / f"b{i}.npz", x=np.random.default_rng(i).standard_normal((3, 7, 16)))
    out = files / "net.pt"
    assert main(["quantize", str(files / "net.py"), "--calib", str(files / "calib_dir"), "--scheme", "w4a8",
                 "-o", str(out)]) == 0
    assert "w4a8/none" in capsys.readouterr().out
    saved = torch.load(out, weights_only=False)
    program = Program.parse(saved["text"], saved["weights"])
    assert program.run(torch.randn(2, 5, 16)).shape == (2, 5, 4)


@pytest.mark.parametrize("extra,message", [
    (["--scheme", "w8", "--outliers", "smooth"], "keeps activations in float"),
    (["-o", "out.txt"], "must end in .onnx"),
])
def test_cli_errors_exit_2(files, capsys, extra, message):
    argv = ["quantize", str(files / "net.py"), "--calib", str(files / "calib.npz"), "-o", str(files / "o.onnx"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_onnx_models_and_missing_calibration(files, capsys):
    (files / "m.onnx").write_bytes(b"garbage")
    assert main(["quantize", str(files / "m.onnx"), "--calib", str(files / "calib.npz"), "-o", "o.onnx"]) == 2
    assert "not ONNX" in capsys.readouterr().err
    assert main(["quantize", str(files / "net.py"), "--calib", str(files / "nope.npz"), "-o", "o.onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_speed_and_accuracy_options_reach_the_quantizer(files, capsys):
    """--static, --min-weight, --recurrent-bits and --weight-only change what is quantized, and the
    integer ONNX still tracks the float model."""
    import onnxruntime as ort

    from rnnc.commands._load import load_model

    out = files / "net.static.onnx"
    assert main(["quantize", str(files / "net.py"), "--calib", str(files / "calib.npz"), "--scheme", "w4a8",
                 "--static", "--recurrent-bits", "8", "--min-weight", "200", "--outliers", "keep", "-o", str(out),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    sites = {s["weight"]: s for s in report["sites"]}
    assert set(sites) == {"gru.l0.fwd.weight_ih", "gru.l0.fwd.weight_hh"}  # head: 4x32 = 128 < --min-weight 200
    assert sites["gru.l0.fwd.weight_hh"]["bits"] == host_int8_bits()
    assert {s["act"] for s in sites.values()} == {"static"}
    model = load_model(str(files / "net.py"))
    x = np.random.default_rng(3).standard_normal((2, 10, 16)).astype(np.float32)
    x[..., 5] *= 60  # the calibration data's outlier channel
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {m.name: np.zeros([d if isinstance(d, int) else 2 for d in m.shape], np.float32)
             for m in sess.get_inputs()[1:]}  # the exposed initial state: zeros, as the model's default
    got = sess.run(None, {sess.get_inputs()[0].name: x, **feeds})[0]
    want = model(torch.from_numpy(x)).detach().numpy()
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 0.03
    capsys.readouterr()
    assert main(["quantize", str(files / "net.py"), "--calib", str(files / "calib.npz"), "--scheme", "w8",
                 "--static", "-o", str(files / "o.onnx")]) == 2
    assert "static activation scales need an a8 scheme" in capsys.readouterr().err


LSTM_MODEL = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(16, 24)
        self.lstm = torch.nn.LSTM(24, 32, batch_first=True)

    def forward(self, x):
        return self.lstm(torch.relu(self.proj(x)))[0]

model = Net
'''


def test_cli_lstm_forms(files, capsys):
    """Default: the LSTM's input is quantized per sequence and exports as DynamicQuantizeLSTM;
    --sequence-scale none keeps the Scan; --static --dynamic NAME keeps that layer dynamic."""
    (files / "lstm.py").write_text(LSTM_MODEL)
    base = ["quantize", str(files / "lstm.py"), "--calib", str(files / "calib.npz"), "--json"]
    for extra, want, absent in (([], "DynamicQuantizeLSTM", "Scan"), (["--sequence-scale", "none"], "Scan",
                                                                       "DynamicQuantizeLSTM")):
        assert main([*base, *extra, "-o", str(files / "l.onnx")]) == 0
        ops = json.loads(capsys.readouterr().out)["ops"]
        assert want in ops and absent not in ops, (extra, ops)
    assert main([*base, "--static", "--dynamic", "lstm", "-o", str(files / "s.onnx")]) == 0
    sites = {s["weight"]: s["act"] for s in json.loads(capsys.readouterr().out)["sites"]}
    assert sites == {"proj.weight": "static", "lstm.l0.fwd.weight_ih": "dynamic", "lstm.l0.fwd.weight_hh": "dynamic"}
    assert main([*base, "--scheme", "w8", "--dynamic", "lstm", "-o", str(files / "w.onnx")]) == 2
    assert "dynamic activation scales need an a8 scheme" in capsys.readouterr().err


CONV_MODEL = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(16, 24, 3, padding=1)
        self.gru = torch.nn.GRU(24, 32, batch_first=True)

    def forward(self, x):
        return self.gru(torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2))[0]

model = Net
'''


def test_cli_points_dynamic_convs_to_static(files, capsys):
    (files / "conv.py").write_text(CONV_MODEL)
    base = ["quantize", str(files / "conv.py"), "--calib", str(files / "calib.npz")]
    assert main([*base, "-o", str(files / "d.onnx")]) == 0
    assert "--static turns conv chains into QLinearConv" in capsys.readouterr().out
    assert main([*base, "--static", "-o", str(files / "s.onnx")]) == 0
    assert "--static turns" not in capsys.readouterr().out
