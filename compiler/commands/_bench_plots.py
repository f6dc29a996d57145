"""PNG plots for ``rnnc bench``, drawn from the JSON rows the benchmark scripts write.

Kept apart from the command so the plots can be tested on small, hand-written rows in the exact
format the scripts emit, without running a benchmark.  matplotlib is an optional (``dev``) dependency:
it is imported lazily, with the Agg backend, so ``rnnc`` itself never needs it or a display.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rnnc.errors import UserInputError

MARKERS = "os^vD<>pPX*h"
# backend -> (the JSON row key holding "baseline time / backend time", what the ratio compares)
SPEED_RATIO = {
    "c": ("vs best", "fastest baseline / rnnc C backend"),
    "tvm": ("tvm/eager", "PyTorch eager / rnnc TVM backend"),
}


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; a one-line error if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise UserInputError("plots need matplotlib: pip install 'rnnc[dev]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain(plt: Any) -> Any:
    """Tick labels as plain numbers (128, not 2^7) on log axes."""
    return plt.FuncFormatter(lambda v, _: f"{v:g}")


def _series(rows: Iterable[dict[str, Any]], x: str, key: str, fixed: Sequence[str]) -> dict[str, list[tuple]]:
    """Group rows into lines: one per value of the ``fixed`` columns, points (x, ratio) sorted by x."""
    lines: dict[str, list[tuple]] = defaultdict(list)
    for r in rows:
        if r.get(key) is None:
            continue
        lines[" ".join(f"{c}={r[c]}" for c in fixed)].append((r[x], r[key]))
    return {k: sorted(v) for k, v in sorted(lines.items())}


def plot_speed(rows: list[dict[str, Any]], backend: str, path: Path) -> Path:
    """Speed ratio vs hidden size (left) and vs sequence length (right) for one backend.

    ``rows`` are cpu_rnn.py / tvm_cpu.py rows (keys cell, B, T, H and the ratio column).  One line
    per fixed setting of the other axes, so a point never hides a change in batch or cell; the
    dashed line at 1 is parity (above it rnnc is faster).
    """
    if not rows:
        raise ValueError(f"no rows to plot for backend {backend}")
    key, what = SPEED_RATIO[backend]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, x, fixed, label in ((axes[0], "H", ("cell", "B", "T"), "hidden size H"),
                                (axes[1], "T", ("cell", "B", "H"), "sequence length T")):
        for name, pts in _series(rows, x, key, fixed).items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r[x] for r in rows}))
        ax.xaxis.set_major_formatter(_plain(plt))
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel(f"speed ratio ({what})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"rnnc {backend} backend: speed ratio (> 1: rnnc faster)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_quant(records: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy vs ONNX size for each quantized model (quant_eval.py's --json records).

    One panel per model because the metrics differ (Silero frame accuracy, g2p argmax agreement);
    every variant gets its own marker and legend entry (variants of one size overlap, so text
    labels next to the points would be unreadable), since the point of the plot is which scheme buys
    how much size for how much accuracy.
    """
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_model[r["model"]].append(r)
    if not by_model:
        raise ValueError("no quantization records to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(by_model), figsize=(6 * len(by_model), 4.5), squeeze=False)
    for ax, (model, rs) in zip(axes[0], sorted(by_model.items()), strict=True):
        for i, r in enumerate(rs):
            ax.scatter(r["size_kib"], r["accuracy"], marker=MARKERS[i % len(MARKERS)], s=36, alpha=0.8,
                       label=r["variant"].removeprefix("rnnc "))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_plain(plt))
        ax.legend(fontsize=6, loc="lower right", ncol=2)
        ax.set_xlabel("ONNX size (KiB)")
        ax.set_ylabel(rs[0]["metric"])
        ax.set_title(model)
        ax.grid(True, alpha=0.3)
    fig.suptitle("Quantization: accuracy vs model size")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
