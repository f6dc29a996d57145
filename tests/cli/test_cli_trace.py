"""``rnnc trace`` on real inputs: a model file, JSON output, IR text that parses back, Silero VAD."""

from __future__ import annotations

import json

import torch

from rnnc.cli import main
from rnnc.data import silero_jit_path
from rnnc.ir import Program
from rnnc.tolerances import assert_close

MODEL_FILE = """
import torch
torch.manual_seed(0)
model = torch.nn.GRU(4, 8, num_layers=2, bidirectional=True, batch_first=True)
"""


def test_trace_model_file_json_and_ir(tmp_path, capsys):
    f = tmp_path / "m.py"
    f.write_text(MODEL_FILE)
    out_ir = tmp_path / "m.ir"
    assert main(["trace", f"{f}:model", "--input-shape", "2,5,4", "--json", "-o", str(out_ir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"] == {"input": "f32[B,T,4]"}
    layer = info["recurrent_layers"][0]
    assert layer["cells"] == ["gru", "gru"] and layer["bidirectional"] is True
    torch.manual_seed(0)
    gru = torch.nn.GRU(4, 8, num_layers=2, bidirectional=True, batch_first=True)
    assert info["num_weights"] == sum(p.numel() for p in gru.parameters())
    # the written IR parses back; with the model's weights it computes what torch computes
    import rnnc

    program = rnnc.trace(gru.eval(), (torch.randn(2, 5, 4),))
    parsed = Program.parse(out_ir.read_text(), program.weights)
    assert parsed.hash() == info["hash"] == program.hash()
    x = torch.randn(3, 7, 4)
    with torch.no_grad():
        assert_close(parsed.run(x)[0], gru(x)[0])


def test_trace_print_is_parseable(tmp_path, capsys):
    f = tmp_path / "m.py"
    f.write_text(MODEL_FILE)
    assert main(["trace", str(f), "--input-shape", "1,3,4", "--print"]) == 0
    text = capsys.readouterr().out
    assert Program.parse(text).graph.nodes[0].op == "rnn"


def test_trace_silero_submodule(capsys):
    path = str(silero_jit_path())
    assert main(["trace", path, "--submodule", "_model", "--input-shape", "1,576",
                 "--input-shape", "2,1,128"]) == 0
    out = capsys.readouterr().out
    assert "1 x lstm (nonlinear)" in out and "conv1d x6" in out
    assert main(["trace", path, "--submodule", "nope", "--input-shape", "1,576"]) == 2
    assert "children: _model, _model_8k" in capsys.readouterr().err
