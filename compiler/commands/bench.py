"""``rnnc bench``: run the benchmark suites and write one Markdown report plus PNG plots.

Each suite is a script under ``benchmarks/`` run as a subprocess (``sys.executable``), so a crash,
a missing optional backend (TVM, ONNX Runtime) or a hung solver in one suite never takes the others
down, and the numbers are the same ones the script prints when run by hand.  The scripts write
their Markdown (stdout or ``--out``) and, where a plot needs it, their rows as JSON (``--json``);
this command only collects them.  The scripts live in the source checkout, not in the installed
package, so an installed-only rnnc says so instead of failing obscurely.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rnnc
from rnnc.errors import RnncError, UserInputError


@dataclass(frozen=True)
class Suite:
    """How to run one benchmark script and where its Markdown and JSON come from."""

    script: str
    title: str
    quick: tuple[str, ...] = ()  # extra arguments under --quick
    markdown_flag: str | None = None  # the script's "also write the Markdown here" flag; None: use stdout
    json_flag: str | None = None  # the script's "write rows as JSON" flag; None: no structured data


SUITES: dict[str, Suite] = {
    "solver": Suite("solver.py", "Tiling solvers (rnnc vs CP-SAT vs brute force vs ConstrINT)",
                    ("--quick", "--no-constrint"), json_flag="--json"),
    "cpu": Suite("cpu_rnn.py", "C backend vs PyTorch / torch.compile / onnxruntime on this CPU",
                 ("--grid", "quick", "--no-compile"), "--out", "--json"),
    "tvm": Suite("tvm_cpu.py", "TVM backend vs PyTorch eager and the C backend on this CPU",
                 ("--grid", "quick"), "--out", "--json"),
    "onnx": Suite("onnx_cpu.py", "rnnc ONNX export vs torch.onnx.export under onnxruntime",
                  ("--steps", "64", "--repeat", "5")),
    "quant": Suite("quant_eval.py", "Outlier-aware quantization: accuracy, size, latency",
                   ("--quick",), "--out", "--json"),
    "cuda_resources": Suite("cuda_resources.py", "CUDA backend: predicted vs ptxas resources on every GPU target",
                            ("--quick",), "--out", "--json"),
}
VERSIONED = ("torch", "onnxruntime", "onnx", "apache-tvm", "ortools", "numpy", "matplotlib")
STDERR_TAIL = 40  # lines of a failed suite's stderr kept in the report


@dataclass
class Result:
    """One suite's outcome: what ran, how long, its Markdown and JSON rows (if it produced them)."""

    name: str
    command: list[str]
    seconds: float = 0.0
    returncode: int | None = None
    markdown: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""  # why it failed: stderr tail, timeout, missing output

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.error


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run the benchmark suites; write a Markdown report and PNG plots",
                       description="Run the benchmarks/ scripts (each in its own process), then write "
                                   "OUT/report.md (every suite's tables, the machine, versions) and PNG plots: "
                                   "speed ratio vs hidden size and sequence length per backend (cpu, tvm) and "
                                   "accuracy vs model size for quantization (quant). Exit code 1 if any suite "
                                   "failed; the others still run.")
    p.add_argument("--suites", default=",".join(SUITES),
                   help=f"comma-separated suites to run, from {', '.join(SUITES)} (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="small grids and sample sets (a few minutes in all) instead of the full sweeps (hours)")
    p.add_argument("-o", "--output", default="bench_out", metavar="DIR", help="output folder (default: bench_out)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per suite before it is killed")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    p.set_defaults(func=run)


def benchmarks_dir() -> Path:
    """The checkout's ``benchmarks/`` folder (rnnc's package folder is the checkout's ``compiler/``)."""
    path = Path(rnnc.__file__).resolve().parent.parent / "benchmarks"
    if not (path / "cpu_rnn.py").is_file():
        raise RnncError(f"no benchmarks/ folder at {path}: `rnnc bench` needs a source checkout of rnnc "
                        "(pip install -e . from a clone), not an installed wheel")
    return path


def parse_suites(text: str) -> list[str]:
    """Validate ``--suites``: known names, in the order given, without repeats."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        raise UserInputError(f"unknown suite {', '.join(map(repr, unknown)) or '(none given)'}; "
                             f"choose from {', '.join(SUITES)}")
    return list(dict.fromkeys(names))


def run_suite(name: str, bench: Path, out: Path, quick: bool, timeout: float | None) -> Result:
    """Run one suite script; never raises for the script's own failures (they go in ``Result.error``)."""
    suite = SUITES[name]
    raw = out / "raw"
    md_file, json_file = raw / f"{name}.md", raw / f"{name}.json"
    cmd = [sys.executable, str(bench / suite.script), *(suite.quick if quick else ())]
    if suite.markdown_flag:
        cmd += [suite.markdown_flag, str(md_file)]
    if suite.json_flag:
        cmd += [suite.json_flag, str(json_file)]
    for stale in (md_file, json_file):
        stale.unlink(missing_ok=True)
    result = Result(name, cmd)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=bench.parent, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        result.seconds = time.perf_counter() - t0
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        result.error = f"killed after {timeout:g} s (--timeout)\n" + _tail(err)
        return result
    result.seconds, result.returncode = time.perf_counter() - t0, proc.returncode
    (raw / f"{name}.stdout.txt").write_text(proc.stdout)
    (raw / f"{name}.stderr.txt").write_text(proc.stderr)
    result.markdown = md_file.read_text().strip() if suite.markdown_flag and md_file.exists() else proc.stdout.strip()
    if suite.json_flag and json_file.exists():
        result.rows = json.loads(json_file.read_text())
    if proc.returncode != 0:
        result.error = f"exit code {proc.returncode}\n" + _tail(proc.stderr)
    elif not result.markdown:
        result.error = "the script succeeded but wrote no Markdown\n" + _tail(proc.stderr)
    return result


def _tail(text: str, lines: int = STDERR_TAIL) -> str:
    """The end of a stderr: where a traceback's cause is."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def make_plots(results: dict[str, Result], out: Path) -> tuple[list[Path], list[str]]:
    """Every plot the finished suites have data for; problems come back as notes, not exceptions."""
    from rnnc.commands._bench_plots import plot_quant, plot_speed

    plots: list[Path] = []
    notes: list[str] = []
    jobs = [("cpu", lambda rows: plot_speed(rows, "c", out / "speed_c.png")),
            ("tvm", lambda rows: plot_speed(rows, "tvm", out / "speed_tvm.png")),
            ("quant", lambda rows: plot_quant(rows, out / "quant_accuracy_vs_size.png"))]
    for name, plot in jobs:
        r = results.get(name)
        if r is None:
            continue
        if not r.rows:
            notes.append(f"no {name} plot: the suite produced no data")
            continue
        try:
            plots.append(plot(r.rows))
        except Exception as exc:  # a plot must not lose the report; it is noted and fails the run
            notes.append(f"{name} plot failed: {type(exc).__name__}: {exc}")
    return plots, notes


def machine_lines() -> list[str]:
    """Host description from the cpu/host target (what rnnc itself believes this machine is)."""
    try:
        from rnnc import targets

        spec = targets.get("cpu/host")
        cpu = spec.cpu
        desc = (f"{spec.name} ({spec.vendor}, {spec.architecture}), {cpu.cores if cpu else '?'} cores available, "
                f"{spec.clock_mhz} MHz, {spec.memory_bytes / 2**30:.1f} GiB")
        if cpu:
            desc += f", {cpu.vector_extension}, L2 {cpu.l2_bytes // 1024} KiB, L3 {cpu.l3_bytes // 2**20} MiB"
    except Exception as exc:  # the report is still useful without it
        desc = f"unknown (cpu/host target failed: {exc})"
    return [f"- machine: {desc}", f"- OS: {platform.platform()}"]


def version_line() -> str:
    """Versions of everything whose speed or accuracy the numbers depend on (metadata only: no imports)."""
    parts = [f"rnnc {rnnc.__version__}", f"Python {platform.python_version()}"]
    for dist in VERSIONED:
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    return "- versions: " + ", ".join(parts)


def _demote(markdown: str) -> str:
    """Push the script's headings one level down so they nest under the suite's section."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def write_report(results: dict[str, Result], plots: list[Path], notes: list[str], out: Path, root: Path,
                 quick: bool, started: datetime.datetime, seconds: float) -> Path:
    """``out/report.md``: header (date, machine, versions), a status table, plots, each suite's Markdown."""
    lines = ["# rnnc benchmark report", "",
             f"- date: {started.isoformat(timespec='seconds')} (took {seconds:.0f} s, "
             f"{'--quick' if quick else 'full'} mode)", *machine_lines(), version_line(), "",
             "| suite | status | time | command |", "|---|---|---:|---|"]
    for r in results.values():
        status = "ok" if r.ok else "**FAILED**"
        cmd = " ".join(os.path.relpath(c, root) if os.path.isabs(c) else c for c in r.command[1:])
        lines.append(f"| {r.name} | {status} | {r.seconds:.0f} s | `python {cmd}` |")
    if plots or notes:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
        lines += [f"- {n}" for n in notes]
    for r in results.values():
        lines += ["", f"## {r.name}: {SUITES[r.name].title}", ""]
        if r.error:
            lines += ["**FAILED**: " + r.error.splitlines()[0], "", "```", *r.error.splitlines()[1:], "```", ""]
        if r.markdown:
            lines.append(_demote(r.markdown))
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    names = parse_suites(args.suites)
    bench = benchmarks_dir()
    if not args.no_plots and {"cpu", "tvm", "quant"} & set(names):
        from rnnc.commands._bench_plots import _pyplot

        _pyplot()  # fail now, in one line, not after an hour of benchmarks
    out = Path(args.output).resolve()
    (out / "raw").mkdir(parents=True, exist_ok=True)
    started, t0 = datetime.datetime.now().astimezone(), time.perf_counter()
    results: dict[str, Result] = {}
    for k, name in enumerate(names, 1):
        print(f"rnnc bench: [{k}/{len(names)}] {name} ({SUITES[name].script}) ...", file=sys.stderr, flush=True)
        r = results[name] = run_suite(name, bench, out, args.quick, args.timeout)
        verdict = "ok" if r.ok else "FAILED: " + r.error.splitlines()[0]
        print(f"rnnc bench: [{k}/{len(names)}] {name} {verdict} ({r.seconds:.0f} s)", file=sys.stderr, flush=True)
    plots, notes = ([], []) if args.no_plots else make_plots(results, out)
    report = write_report(results, plots, notes, out, bench.parent, args.quick, started, time.perf_counter() - t0)
    failed = [r.name for r in results.values() if not r.ok]
    print(f"rnnc bench: wrote {report}" + "".join(f", {p.name}" for p in plots)
          + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed or any("failed" in n for n in notes) else 0
