"""What the CPU layer benchmarks (``cpu_rnn.py``, ``tvm_cpu.py``) share: the grids, the timer, the
command-line preamble and the output files, so the two scripts cannot drift apart."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

#: (batches, sequence lengths, hidden sizes) per ``--grid``
GRIDS = {
    "full": ((1, 16), (1, 128, 1024), (128, 256, 512, 1024)),
    "reduced": ((1, 16), (1, 128), (128, 512, 1024)),
    "quick": ((1,), (1, 64), (128, 512)),  # `rnnc bench --quick`: two sizes on each plot axis
}


def best_time(fn: Callable[[], object], budget_s: float = 0.4, max_reps: int = 50) -> float:
    """Best wall time of ``fn`` after one warm-up, within a time budget."""
    fn()
    return _timed_reps(fn, budget_s, max_reps)


def interleaved_best(fns: dict[str, Callable[[], object]], rounds: int = 3, budget_s: float = 0.4) -> dict[str, float]:
    """Best wall time of each of ``fns``, measured in ``rounds`` rounds that take every function
    in turn, the order rotated each round (one warm-up call each first; about ``budget_s`` of
    timed calls per function in all, at least two per round).  Why not one after another: a
    library's thread pool keeps spinning for a while after its call returns (onnxruntime's,
    torch's OpenMP, the C kernels' own), so whichever is timed right after another is slowed by
    it; rotated, no function always follows the same one, and the best of its rounds is its quiet
    time."""
    names = list(fns)
    for name in names:
        fns[name]()
    best = dict.fromkeys(names, float("inf"))
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            best[name] = min(best[name], _timed_reps(fns[name], budget_s / rounds, max(2, 50 // rounds)))
    return best


def _timed_reps(fn: Callable[[], object], budget_s: float, max_reps: int) -> float:
    """Best of at least two timed calls of ``fn`` within ``budget_s`` (no warm-up)."""
    best, spent, reps = float("inf"), 0.0, 0
    while reps < max_reps and (spent < budget_s or reps < 2):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def fmt_time(s: float) -> str:
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def ratio(v: float) -> str:
    return f"{v:.2f}x"


def error(v: float) -> str:
    return f"{v:.0e}"


def markdown_table(rows: list[dict], cols: list[str], formats: dict[str, Callable[[float], str]]) -> str:
    """One Markdown table of ``rows`` (dicts keyed by column); a column's formatter from ``formats``,
    ``str`` otherwise; a missing value is an empty cell."""
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = ["" if r.get(c) is None else formats.get(c, str)(r[c]) for c in cols]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def grid_parser(doc: str) -> argparse.ArgumentParser:
    """``--grid``, ``--cells``, ``--hidden``/``--batch``/``--steps`` (one slice of the grid, e.g. to
    rerun the points a change is about), ``--out`` and ``--json``; scripts add their own flags."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--grid", choices=sorted(GRIDS), default="full")
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--hidden", help="comma-separated hidden sizes (overrides the grid's)")
    ap.add_argument("--batch", help="comma-separated batch sizes (overrides the grid's)")
    ap.add_argument("--steps", help="comma-separated sequence lengths (overrides the grid's)")
    ap.add_argument("--out", help="also write the Markdown table here")
    ap.add_argument("--json", help="also write every row (times in seconds) here, for `rnnc bench`'s plots")
    return ap


def grid_points(args: argparse.Namespace) -> list[tuple[str, int, int, int]]:
    """``(cell, batch, steps, hidden)`` in the order the tables list them."""
    batches, steps_list, hiddens = GRIDS[args.grid]
    if args.hidden:
        hiddens = _ints(args.hidden)
    if getattr(args, "batch", None):
        batches = _ints(args.batch)
    if getattr(args, "steps", None):
        steps_list = _ints(args.steps)
    return [(kind, b, t, h) for kind in args.cells.split(",") for h in hiddens for b in batches for t in steps_list]


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"expected comma-separated integers, got {text!r}") from None


def page_header(title: str) -> str:
    """The machine header plus the exact command, as the first lines of a benchmark's Markdown:
    every page under docs/benchmarks/ says where, when and how it was measured."""
    import os
    import sys

    script = os.path.relpath(os.path.abspath(sys.argv[0]), os.path.dirname(os.path.dirname(__file__)))
    return "\n".join(machine_header(title) + [f"Command: `{' '.join([script, *sys.argv[1:]])}`", ""]) + "\n"


def write_page(path: str | os.PathLike, lines: list[str]) -> None:
    """Print a finished page (machine header first) and write it to ``path``, creating its folder."""
    text = "\n".join(lines) + "\n"
    print(text)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def write_outputs(args: argparse.Namespace, text: str, rows: list[dict], title: str = "") -> None:
    """Print the final table and write ``--out`` / ``--json`` (with the page header when ``title``
    is given and the text does not start with one)."""
    if title and not text.startswith("# "):
        text = page_header(title) + text
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


#: the CPU flags a benchmark reader needs to place a number (vector width, FMA, int8 dot products)
FLAGS_OF_NOTE = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                 "avx512_bf16", "amx_int8", "asimd", "asimddp", "i8mm")


def machine_header(title: str) -> list[str]:
    """Markdown lines naming where and when a table was measured: CPU model and flags, cores,
    the detected int8 dot product, and the versions of everything timed (tables are only
    comparable on the same machine)."""
    import datetime
    import os
    import platform

    import numpy
    import onnxruntime
    import torch

    import rnnc
    from rnnc.targets import get

    info: dict[str, str] = {}
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            key, _, value = line.partition(":")
            info.setdefault(key.strip().lower(), value.strip())
            if not line.strip() and info:
                break
    except OSError:
        pass
    flags = set(info.get("flags", info.get("features", "")).split())
    host = get("cpu/host")
    return [f"# {title}", "",
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- CPU: {info.get('model name', platform.processor() or platform.machine())}, "
            f"{len(os.sched_getaffinity(0))} cores",
            f"- flags: {' '.join(f for f in FLAGS_OF_NOTE if f in flags) or 'unknown'}",
            f"- int8 dot product (cpu/host): {host.cpu.int8_dot}",
            f"- versions: rnnc {rnnc.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
            f"numpy {numpy.__version__}, python {platform.python_version()}", ""]
