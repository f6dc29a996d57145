"""The rnnc CLI: help on every subcommand, exit codes, cells listing, model loading errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rnnc.cli import build_parser, main
from rnnc.kernels import CELLS


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sub.choices, "no subcommands registered"
    for name in sub.choices:
        assert name in out


def test_every_subcommand_has_help(capsys):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: rnnc " + name in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: rnnc" in capsys.readouterr().out


def test_cells_json_matches_registry(capsys):
    assert main(["cells", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(CELLS)
    assert {r["name"]: r["recurrence"] for r in rows}["mamba"] == "linear"
    assert {r["name"]: r["recurrence"] for r in rows}["lstm"] == "nonlinear"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "rnnc", "cells"], capture_output=True, text=True, check=True)
    assert "mingru" in out.stdout


@pytest.mark.parametrize("model, message", [
    ("does/not/exist.py", "does not exist"),
    ("no_such_package_xyz:model", "cannot import"),
    ("json:model", "has no attribute 'model'"),
    ("json:dumps", "to build the model failed"),
    ("json:JSONDecoder", "not a torch.nn.Module"),
])
def test_trace_bad_model_is_one_clear_line(capsys, model, message):
    assert main(["trace", model, "--input-shape", "1,2,3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnc: error:") and message in err
    assert "Traceback" not in err


def test_trace_corrupt_torchscript(tmp_path, capsys):
    bad = tmp_path / "bad.jit"
    bad.write_bytes(b"not a zip archive")
    assert main(["trace", str(bad), "--input-shape", "1,512"]) == 2
    assert "not a TorchScript archive" in capsys.readouterr().err


def test_trace_bad_shape(tmp_path, capsys):
    f = tmp_path / "m.py"
    f.write_text("import torch\nmodel = torch.nn.LSTM(4, 8, batch_first=True)\n")
    assert main(["trace", str(f), "--input-shape", "1,x,4"]) == 2
    assert "bad --input-shape" in capsys.readouterr().err
