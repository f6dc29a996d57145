"""onnxruntime on this CPU: rnnc's ONNX export vs ``torch.onnx.export`` of the same model vs
PyTorch eager, for a full sequence and for streaming (one step at a time, state carried).

    .venv/bin/python benchmarks/onnx_cpu.py [--threads 1] [--steps 256] [--repeat 20]

Prints a Markdown table of wall times (best of N; --median for medians) and the ratios (>1.0x means rnnc is faster).
The torch.onnx.export graphs use the dynamo exporter (the legacy TorchScript one if dynamo
fails); they are exported at the benchmark's own lengths, since they do not generalise.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

import rnnc
from rnnc.backends.onnx.states import expose_states
from rnnc.ir import Program, rnn_program

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "backends" / "onnx"))
from _common import page_header  # noqa: E402  (benchmarks/ is the script's folder)
from onnx_test_helpers import torch_rnn_program  # noqa: E402  (the one torch-module -> Program mapping)


def timed(contenders: dict[str, Callable[[], Any] | None], repeat: int) -> dict[str, float | None]:
    """ms per call of each contender, timed round-robin so that load from other processes on a
    shared CPU hits all of them alike; best of ``repeat`` (timeit's convention) or the median."""
    live = {k: f for k, f in contenders.items() if f is not None}
    for f in live.values():
        f()  # warm-up (ORT allocations, torch kernels)
    times: dict[str, list[float]] = {k: [] for k in live}
    for _ in range(repeat):
        for k, f in live.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    pick = statistics.median if MEDIAN else min
    return {k: (pick(times[k]) * 1e3 if k in times else None) for k in contenders}


MEDIAN = False


def make_session(model: onnx.ModelProto | bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def program_of(module: torch.nn.Module, x: torch.Tensor) -> Program:
    """The Program rnnc exports: traced by the frontend when it can, else built from the weights."""
    try:
        return rnnc.trace(module, (x,))
    except rnnc.RnncError:
        if isinstance(module, torch.nn.RNNBase):
            return torch_rnn_program(module)
        cell, weights = module.rnnc_layer()
        return rnn_program([cell], [[weights]], with_states=True)


def torch_export(module: torch.nn.Module, args: tuple) -> bytes | None:
    """``torch.onnx.export`` of ``module(*args)``: dynamo first, then the legacy exporter."""
    for dynamo in (True, False):
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, args, buf, dynamo=dynamo, verbose=False)
            return buf.getvalue()
        except Exception:  # noqa: BLE001 - report "failed" in the table, whatever the exporter raised
            continue
    return None


def eager_state(module: torch.nn.Module, states: list[torch.Tensor]) -> Any:
    """States in the form the module's forward takes them."""
    if isinstance(module, torch.nn.RNNBase):
        return tuple(states) if isinstance(module, torch.nn.LSTM) else states[0]
    return tuple(s[0] for s in states)


def flat(state: Any) -> list[np.ndarray]:
    """The state as the flat list of arrays an exported torch graph takes."""
    return [t.numpy() for t in (state if isinstance(state, tuple) else (state,))]


def bench_model(name: str, module: torch.nn.Module, input_size: int, steps: int, repeat: int,
                threads: int) -> list[dict[str, Any]]:
    module = module.eval()
    x = torch.randn(1, steps, input_size)
    program = program_of(module, x)
    states = [torch.zeros([1 if isinstance(d, str) else d for d in s.type.shape]) for s in expose_states(program)[1]]
    st = eager_state(module, states)
    # ---- full sequence
    full_model = rnnc.export_onnx(program)
    full = make_session(full_model, threads)
    x_name, state_in, _ = io_names(full_model)
    feeds = {x_name: x.numpy(), **dict(zip(state_in, (s.numpy() for s in states), strict=True))}
    ref_bytes = torch_export(module, (x, st))
    ref = make_session(ref_bytes, threads) if ref_bytes else None
    ref_feeds = dict(zip([i.name for i in ref.get_inputs()], [x.numpy(), *flat(st)], strict=False)) if ref else {}

    def eager_full() -> None:
        with torch.no_grad():
            module(x, st)

    rows = [{"model": name, "mode": f"full T={steps}", **timed({
        "eager": eager_full, "torch_onnx": (lambda: ref.run(None, ref_feeds)) if ref else None,
        "rnnc": lambda: full.run(None, feeds)}, repeat)}]
    # ---- streaming: one step per call, state carried
    x1 = x[:, :1]
    step_model = rnnc.export_onnx(program, (x1, *states), streaming=True)
    step = make_session(step_model, threads)
    x_name, state_in, state_out = io_names(step_model)
    # a streaming loop fetches y and the states (a traced layer also outputs its states squeezed)
    fetch = [step.get_outputs()[0].name, *state_out]

    def rnnc_stream() -> None:
        carried = [s.numpy() for s in states]
        for t in range(steps):
            _, *carried = step.run(fetch, {x_name: x[:, t:t + 1].numpy(), **dict(zip(state_in, carried, strict=True))})

    def eager_stream() -> None:
        carried: Any = st
        with torch.no_grad():
            for t in range(steps):
                _, carried = module(x[:, t:t + 1], carried)

    ref_step = torch_export(module, (x1, st))
    ref_sess = make_session(ref_step, threads) if ref_step else None
    ref_names = [i.name for i in ref_sess.get_inputs()] if ref_sess else []

    def ref_stream() -> None:
        carried = flat(st)
        for t in range(steps):
            _, *carried = ref_sess.run(None, dict(zip(ref_names, [x[:, t:t + 1].numpy(), *carried], strict=True)))

    keeps_state = len(ref_names) == 1 + len(flat(st))  # the exporter kept the state inputs
    rows.append({"model": name, "mode": f"streaming {steps}x1 step", **timed({
        "eager": eager_stream, "torch_onnx": ref_stream if keeps_state else None, "rnnc": rnnc_stream},
        max(5, repeat // 2))})
    return rows


def io_names(model: onnx.ModelProto) -> tuple[str, list[str], list[str]]:
    """(the sequence input, state inputs, state outputs) from the rnnc.states metadata."""
    pairs = json.loads({p.key: p.value for p in model.metadata_props}["rnnc.states"])
    state_in = [p["input"] for p in pairs]
    x_name = next(i.name for i in model.graph.input if i.name not in state_in)
    return x_name, state_in, [p["output"] for p in pairs]


def models() -> list[tuple[str, torch.nn.Module, int]]:
    from rnnc.kernels import CELLS

    torch.manual_seed(0)
    return [
        ("LSTM 2x128 (I=64)", torch.nn.LSTM(64, 128, num_layers=2, batch_first=True), 64),
        ("GRU 256 (I=64)", torch.nn.GRU(64, 256, batch_first=True), 64),
        ("Elman 128 (I=64)", torch.nn.RNN(64, 128, batch_first=True), 64),
        ("sLSTM 128, 4 heads (Scan)", CELLS["slstm"].load_module_class()(64, 128, num_heads=4), 64),
        ("minGRU 128 (Scan)", CELLS["mingru"].load_module_class()(64, 128), 64),
    ]


def fmt(v: float | None) -> str:
    return "failed" if v is None else f"{v:.3f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and onnxruntime")
    p.add_argument("--steps", type=int, default=256, help="sequence length")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--median", action="store_true", help="report medians instead of best-of-N")
    p.add_argument("--only", default="", help="run only the models whose name contains this text")
    args = p.parse_args(argv)
    global MEDIAN
    MEDIAN = args.median
    torch.set_num_threads(args.threads)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # the exporters' progress chatter
    np.random.seed(0)
    rows = []
    for name, module, size in models():
        if args.only not in name:
            continue
        rows += bench_model(name, module, size, args.steps, args.repeat, args.threads)
    print(page_header("ONNX export on onnxruntime vs PyTorch"))
    print(f"onnxruntime {ort.__version__}, torch {torch.__version__}, {args.threads} thread(s), batch 1, "
          f"{'median' if MEDIAN else 'best-of-N'} ms per sequence\n")
    print("| model | mode | PyTorch eager | torch.onnx.export + ORT | rnnc export + ORT | rnnc vs eager "
          "| rnnc vs torch.onnx |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['mode']} | {fmt(r['eager'])} | {fmt(r['torch_onnx'])} | {fmt(r['rnnc'])} | "
              f"{ratio(r['eager'], r['rnnc'])} | {ratio(r['torch_onnx'], r['rnnc'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
