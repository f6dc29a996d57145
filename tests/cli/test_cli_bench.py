"""``rnnc bench``: a real (quick) suite into one report, failures that do not stop the others, unknown
suites, and plots drawn from rows a real benchmark run produced."""

from __future__ import annotations

import json
from pathlib import Path

from rnnc.cli import main
from rnnc.commands import bench

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking the signature and that matplotlib can decode it."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels[..., :3].std() > 0  # decodes, and is not a blank canvas
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_bench_solver_quick_writes_report(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--suites", "solver", "--quick", "-o", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert report.startswith("# rnnc benchmark report")
    assert "- machine: " in report and "- versions: rnnc " in report
    assert "| solver | ok |" in report and "--quick --no-constrint" in report
    # the solver's own table, every cell and the total row (--quick: 3 targets x 3 sizes x their
    # dtypes = 24 problems per cell of the solver's table)
    from rnnc.constraints import CELLS

    count = 24 * len(CELLS)
    assert "## solver: " in report and "| rnnc median / p95 ms |" in report and f"| **all** | {count} |" in report
    rows = json.loads((out / "raw" / "solver.json").read_text())
    assert len(rows) == count and all(r["agree_cpsat"] for r in rows)
    assert not list(out.glob("*.png"))  # no suite with plot data ran
    err = capsys.readouterr().err
    assert "[1/1] solver (solver.py) ..." in err and "[1/1] solver ok" in err


def test_failed_suite_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    scripts = tmp_path / "benchmarks"
    scripts.mkdir()
    (scripts / "bad.py").write_text("import sys\nprint('boom: no backend here', file=sys.stderr)\nsys.exit(3)\n")
    (scripts / "good.py").write_text("print('| a | b |\\n|---|---|\\n| 1 | 2 |')\n")
    monkeypatch.setattr(bench, "benchmarks_dir", lambda: scripts)
    monkeypatch.setattr(bench, "SUITES", {"bad": bench.Suite("bad.py", "always fails"),
                                          "good": bench.Suite("good.py", "always works")})
    out = tmp_path / "o"
    assert main(["bench", "--suites", "bad,good", "-o", str(out), "--no-plots"]) == 1
    report = (out / "report.md").read_text()
    assert "| bad | **FAILED** |" in report and "| good | ok |" in report
    assert "**FAILED**: exit code 3" in report and "boom: no backend here" in report
    assert "| 1 | 2 |" in report


def test_unknown_suite_exit_2_one_line(tmp_path, capsys):
    assert main(["bench", "--suites", "solver,gpu", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'gpu'" in err and "solver, cpu, tvm, onnx, quant" in err
    assert not (tmp_path / "report.md").exists()


def test_speed_plot_from_a_real_cpu_rnn_run(tmp_path, monkeypatch):
    """Rows from cpu_rnn.py's own bench_point (tiny sizes, JSON round trip as --json writes them)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import cpu_rnn

    monkeypatch.setattr(cpu_rnn, "interleaved_best",
                        lambda fns, *a: {name: min(_once(fn) for _ in range(3)) for name, fn in fns.items()})
    rows = [cpu_rnn.bench_point("gru", 1, steps, hidden, bw=1e10, use_compile=False)
            for hidden in (16, 32) for steps in (1, 4)]
    rows = json.loads(json.dumps(rows))
    assert {r["H"] for r in rows} == {16, 32} and all(r["vs best"] > 0 for r in rows)
    png = bench.make_plots({"cpu": bench.Result("cpu", [], returncode=0, rows=rows)}, tmp_path)[0]
    assert png == [tmp_path / "speed_c.png"]
    assert _png_size(png[0]) == (1100, 420)


def _once(fn) -> float:
    import time

    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_quant_plot_and_missing_data(tmp_path):
    # records exactly as quant_eval.py --json writes them (two models, different metrics)
    records = [
        {"model": "silero", "variant": "fp32 (rnnc export)", "metric": "frame acc", "accuracy": 0.984,
         "size_kib": 1213.2, "ms": 0.055},
        {"model": "silero", "variant": "rnnc w8a8 / keep", "metric": "frame acc", "accuracy": 0.984,
         "size_kib": 331.0, "ms": 0.09},
        {"model": "g2p", "variant": "fp32", "metric": "argmax agreement", "accuracy": 1.0, "size_kib": 3263.0,
         "ms": 2.1},
        {"model": "g2p", "variant": "rnnc w4 / none", "metric": "argmax agreement", "accuracy": 0.812,
         "size_kib": 612.0, "ms": 3.2},
    ]
    results = {"quant": bench.Result("quant", [], returncode=0, rows=records),
               "tvm": bench.Result("tvm", [], returncode=1, error="exit code 1")}
    plots, notes = bench.make_plots(results, tmp_path)
    assert plots == [tmp_path / "quant_accuracy_vs_size.png"]
    assert _png_size(plots[0]) == (1200, 450)  # one 6-inch panel per model at 100 dpi
    assert notes == ["no tvm plot: the suite produced no data"]


def test_flags_bench_passes_exist_in_the_scripts():
    """The --json flags bench passes exist in the scripts (a renamed flag would fail every full run)."""
    shared = (BENCHMARKS / "_common.py").read_text()  # the flags cpu_rnn.py and tvm_cpu.py share
    for name, suite in bench.SUITES.items():
        text = (BENCHMARKS / suite.script).read_text() + shared
        for flag in (suite.markdown_flag, suite.json_flag, *[a for a in suite.quick if a.startswith("--")]):
            if flag:
                assert f'"{flag}"' in text, (name, flag)


def test_interleaved_timing_rotates_the_order_and_warms_up_once(monkeypatch):
    """Every contender is warmed up once, then timed in rounds whose order rotates, so none is
    always timed right after the same other one."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _common

    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    best = _common.interleaved_best(fns, rounds=3, budget_s=0.0)
    assert set(best) == set("abc") and all(t >= 0 for t in best.values())
    assert calls[:3] == list("abc")  # the warm-up
    timed = [c for i, c in enumerate(calls[3:]) if i % 2 == 0]  # two timed calls per function and round
    assert timed == list("abc") + list("bca") + list("cab")
