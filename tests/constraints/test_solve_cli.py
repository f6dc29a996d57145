"""`rnnc solve` through rnnc.cli.main: text, --json, cpsat, infeasible (exit 1), bad input (exit 2)."""

from __future__ import annotations

import json

from rnnc.cli import main

BASE = ["solve", "--cell", "lstm", "--hidden", "768", "--heads", "1", "--batch", "16", "--dtype", "bf16",
        "--target", "nvidia/h100-sxm"]


def test_solve_prints_a_schedule(capsys):
    assert main(BASE) == 0
    out = capsys.readouterr().out
    assert "fused_recurrence" in out and "registers/thread" in out and "estimate" in out


def test_solve_json_and_both_solvers_agree(capsys):
    assert main([*BASE, "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main([*BASE, "--json", "--solver", "cpsat"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["feasible"] and a["params"] == b["params"] and a["resources"] == b["resources"]
    assert (a["source"], b["source"]) == ("solver:rnnc", "solver:cpsat")
    assert a["resources"]["shared_memory_per_block"] <= 227 * 1024


def test_infeasible_exits_1_with_the_explanation(capsys):
    argv = ["solve", "--cell", "lstm", "--hidden", "4096", "--batch", "16", "--dtype", "fp32",
            "--target", "nvidia/t4", "--single-block"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "no tiling fits" in out and "256 MiB" in out and "64 KiB" in out
    assert main([*argv, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["feasible"] is False and data["shortfalls"][0]["resource"] == "shared_memory"


def test_bad_input_exits_2_with_one_line(capsys):
    assert main(["solve", "--cell", "lstm", "--hidden", "768", "--target", "nvidia/h100"]) == 2
    err = capsys.readouterr().err
    assert "nvidia/h100-sxm" in err and err.count("\n") == 1
    assert main(["solve", "--cell", "lstm", "--hidden", "768", "--heads", "5", "--target", "nvidia/t4"]) == 2
    assert "not divisible" in capsys.readouterr().err
    assert main(["solve", "--cell", "lstm", "--hidden", "768", "--dtype", "bf16", "--target", "nvidia/t4"]) == 2
    assert "try fp16" in capsys.readouterr().err
