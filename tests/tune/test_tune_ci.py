"""CI mode and the `rnnc db` commands: exit codes, readable reports, --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnc.autotune_db import Database, environment
from rnnc.cli import main

MODELS = """\
defaults: {batch: 2, seq_len: 16}
targets: [cpu/host]
models:
  - {name: tiny-gru, cell: gru, input_size: 8, hidden: 32}
"""


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, list[str]]:
    models = tmp_path / "models.yaml"
    models.write_text(MODELS)
    return models, ["--db", str(tmp_path / "db"), "--no-shipped"]


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


def test_ci_fails_on_missing_then_refresh_fixes_it(setup, capsys) -> None:
    models, db = setup
    code, out = run(["tune", "--ci", "--models", str(models), *db], capsys)
    assert code == 1 and "FAIL tiny-gru / gru I=8 H=32 B=2 T=16 on cpu/host (c): missing" in out
    code, out = run(["tune", "--ci", "--models", str(models), "--refresh", "--max-candidates", "1", *db], capsys)
    assert code == 0 and "refreshed: gru I=8 H=32 B=2 T=16 on cpu/host" in out
    code, out = run(["db", "check", "--models", str(models), "--json", *db], capsys)
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["findings"][0]["status"] == "ok"
    # a re-measurement slower than the record beyond the threshold is a regression
    path = next((Path(db[1])).glob("*.jsonl"))
    text = path.read_text()
    rec = json.loads(text.splitlines()[1])
    path.write_text(text.replace(json.dumps(rec["time_s"]), "1e-09"))
    code, out = run(["tune", "--ci", "--models", str(models), "--remeasure", *db], capsys)
    assert code == 1 and "regressed" in out and "> 25%" in out


def test_ci_reports_stale_and_corrupt(setup, capsys, tmp_path: Path) -> None:
    models, db = setup
    from rnnc.tune.ci import load_models, model_layers

    layer = model_layers(load_models(models)["models"][0], {"batch": 2, "seq_len": 16})[0]
    old = Database(overlay=db[1], shipped=None, versions=dict(environment(), rnnc="0.0.1"))
    from rnnc.tune import Tuner

    Tuner("cpu/host", "c", db=old, max_candidates=1, progress=False).tune([layer])
    code, out = run(["tune", "--ci", "--models", str(models), *db], capsys)
    assert code == 1 and "stale - written by other library versions (rnnc 0.0.1 -> " in out
    code, out = run(["db", "check", *db], capsys)
    assert code == 1 and "1 stale" in out
    code, out = run(["db", "prune", *db], capsys)
    assert code == 0 and "removed 1 record(s)" in out
    Path(db[1], "junk.jsonl").write_text('{"rnnc_db": 1, "versions": {}}\n{"key": \n')
    code, out = run(["db", "check", "--json", *db], capsys)
    data = json.loads(out)
    assert code == 1 and data["corrupt"] and "junk.jsonl:2" in data["corrupt"][0]


def test_bad_models_file_is_a_usage_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("models:\n  - {name: x}\n")
    assert main(["tune", "--ci", "--models", str(bad), "--db", str(tmp_path)]) == 2
    assert "exactly one of 'cell' or 'model'" in capsys.readouterr().err


def test_db_list_show_merge(setup, capsys, tmp_path: Path) -> None:
    _, db = setup
    code, _ = run(["tune", "--cell", "elman", "--input-size", "8", "--hidden", "32", "--batch", "2",
                   "--seq-len", "8", "--max-candidates", "2", *db], capsys)
    assert code == 0
    code, out = run(["db", "list", "--json", *db], capsys)
    records = json.loads(out)["records"]
    assert code == 0 and len(records) == 2 and records[0]["key"]["target"] == "cpu/host"
    kid = records[0]["id"]
    code, out = run(["db", "show", kid[:8], *db], capsys)
    assert code == 0 and kid in out and '"verified": true' in out
    assert main(["db", "show", "ffffffff", *db]) == 1
    capsys.readouterr()
    dest = tmp_path / "merged.jsonl"
    code, out = run(["db", "merge", db[1], "-o", str(dest), *db], capsys)
    assert code == 0 and "1 record(s) from 2 usable" in out
    assert min(r["time_s"] for r in records) == json.loads(dest.read_text().splitlines()[1])["time_s"]
