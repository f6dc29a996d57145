"""The backend is part of the search: ``rnnc tune --backend all`` tunes every tunable backend
able to run on the target, and ``rnnc.compile(backend=None)`` takes the one whose measured
records are fastest, saying so in ``explain()``."""

from __future__ import annotations

import json

import torch

import rnnc
from rnnc.cli import main
from rnnc.tolerances import assert_close
from rnnc.tune.api import lookup_record


def test_compile_takes_the_fastest_tuned_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNC_DB", str(tmp_path / "db"))
    torch.manual_seed(0)
    model = torch.nn.GRU(16, 32, batch_first=True).eval()
    x = torch.randn(2, 12, 16)
    for backend in ("c", "tvm"):
        report = rnnc.tune(model, (x,), target="cpu/host", backend=backend, batch=2, seq_len=12, max_candidates=2)
        assert report.ok
    cell = rnnc.trace(model, (x,)).rnn_nodes()[0].attr("cells")[0]
    times = {b: lookup_record(cell, "cpu/host", b, batch=2).time_s for b in ("c", "tvm")}
    compiled = rnnc.compile(model, (x,), target="cpu/host")
    assert compiled.choice.backend == min(times, key=times.__getitem__)
    text = compiled.explain()
    assert "tuned records: " in text and "schedule from tuned record" in text
    with torch.no_grad():
        assert_close(compiled(x)[0], model(x)[0], "float32", compiled.choice.backend)
    forced = rnnc.compile(model, (x,), target="cpu/host", backend="c")  # an explicit backend still wins
    assert forced.choice.backend == "c"


def test_cli_tune_all_backends(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNC_DB", str(tmp_path / "db"))
    rc = main(["tune", "--cell", "lstm", "--input-size", "8", "--hidden", "16", "--batch", "2", "--seq-len", "6",
               "--backend", "all", "--max-candidates", "2", "--json"])
    assert rc == 0
    reports = json.loads(capsys.readouterr().out)
    assert sorted(r["backend"] for r in reports) == ["c", "tvm"] and all(r["ok"] for r in reports)


def test_explain_says_the_built_kernel_is_the_timed_one(tmp_path, monkeypatch):
    """A record keeps the hash of the source it timed; compile rebuilds it byte for byte, and an
    edited hash (a record from an rnnc that rendered differently) is flagged."""
    from rnnc.autotune_db import Database

    monkeypatch.setenv("RNNC_DB", str(tmp_path / "db"))
    torch.manual_seed(0)
    model = torch.nn.LSTM(8, 16, batch_first=True).eval()
    x = torch.randn(2, 9, 8)
    rnnc.tune(model, (x,), target="cpu/host", backend="c", batch=2, seq_len=9, max_candidates=2)
    text = rnnc.compile(model, (x,), target="cpu/host", backend="c").explain()
    assert "source identical to the timed kernel" in text
    files = list((tmp_path / "db").glob("*.jsonl"))
    lines = files[0].read_text().splitlines()
    edited = [lines[0]] + [json.dumps({**json.loads(ln), "resources": {**json.loads(ln)["resources"],
                                                                       "source_sha": "0" * 16}})
                           for ln in lines[1:]]
    files[0].write_text("\n".join(edited) + "\n")
    assert Database().scan(warn=False)  # still readable
    text = rnnc.compile(model, (x,), target="cpu/host", backend="c").explain()
    assert "the source differs from the timed kernel" in text and "re-tune" in text


def test_each_rnn_node_runs_on_its_fastest_tuned_backend(tmp_path, monkeypatch):
    """Records that say C is faster for the model's LSTM node and TVM for its GRU node: compile
    runs each node on its own backend (``rnnc.backends.mixed``), says so per node, and computes
    what torch does.  The timings are written into the records (real ones depend on the host)."""
    from rnnc.backends.mixed import MixedProgram

    monkeypatch.setenv("RNNC_DB", str(tmp_path / "db"))
    torch.manual_seed(0)

    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc, self.dec = torch.nn.LSTM(8, 16, batch_first=True), torch.nn.GRU(16, 12, batch_first=True)

        def forward(self, x):
            return self.dec(self.enc(x)[0])[0]

    model, x = Two().eval(), torch.randn(2, 9, 8)
    for backend in ("c", "tvm"):
        assert rnnc.tune(model, (x,), target="cpu/host", backend=backend, batch=2, seq_len=9, max_candidates=2).ok
    fastest = {("lstm", "c"): 1e-3, ("lstm", "tvm"): 2e-3, ("gru", "c"): 2e-3, ("gru", "tvm"): 1e-3}
    for path in (tmp_path / "db").glob("*.jsonl"):
        lines = []
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "key" in rec:
                rec["time_s"] = fastest[(rec["label"].split()[0], rec["key"]["backend"])]
            lines.append(json.dumps(rec))
        path.write_text("\n".join(lines) + "\n")
    compiled = rnnc.compile(model, (x,), target="cpu/host", measure=False)
    assert isinstance(compiled.runner, MixedProgram)
    program = compiled.program
    enc, dec = (n.outputs[0] for n in program.rnn_nodes())
    assert compiled.runner.assign == {enc: "c", dec: "tvm"}
    text = compiled.explain()
    assert "each rnn node on its fastest tuned backend" in text and f"rnn node {dec} on tvm" in text
    assert "schedule from c: tuned record" in text and "schedule from tvm: tuned record" in text
    y = torch.randn(3, 14, 8)  # another batch and length
    with torch.no_grad():
        assert_close(compiled(y), model(y), "float32", "tvm")
