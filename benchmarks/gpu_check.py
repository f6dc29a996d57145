"""One prepared GPU check: CUDA and Triton numerics and speed against fp64 and cuDNN, a race check,
and the ``gpu``-marked tests, in one run that fits a short GPU loan.

Usage::

    python benchmarks/gpu_check.py                 # on a GPU: everything, report to docs/benchmarks/gpu_check.md
    python benchmarks/gpu_check.py --budget-s 420  # stop starting sections once the budget is spent
    python benchmarks/gpu_check.py --sections numerics --quick   # without a GPU: the CPU-runnable part

Every section runs in its own subprocess with a time limit, so a kernel that hangs (a grid barrier
whose blocks are not all resident) costs that section, not the loan.  On a GPU each case compiles
through ``rnnc.compile`` for ``nvidia/h100-sxm`` (the H100's schedule; an H200 has the same SMs)
and is compared with

- an fp64 run of the same torch module on the CPU (for fp16/bf16 models: of the same rounded
  weights and inputs, its output rounded to the model's dtype), within the tolerance table's row
  for the backend;
- cuDNN (``nn.LSTM``/``nn.GRU`` on the GPU in the model's dtype), for the timing ratio
  (``cudnn / rnnc``: above 1 is faster than cuDNN) and its own error as a yardstick.

Without a GPU, ``numerics`` runs the small cases through the CUDA kernels' C twin and Triton's
interpreter (the code paths the GPU runs, at sizes a CPU finishes) and says so; timings, the race
check and the GPU tests need a GPU and are reported as not run, never as passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

#: (kind, batch, steps, input, hidden): the FlashRNN headline size, and a ragged one (odd batch
#: against the batch tile, steps not a multiple of the time chunk, hidden not a power of two)
BIG = [("lstm", 16, 1024, 768, 768), ("gru", 16, 1024, 768, 768)]
RAGGED = [("lstm", 5, 37, 40, 96), ("gru", 5, 37, 40, 96)]
QUICK = [("lstm", 3, 11, 12, 32), ("gru", 3, 11, 12, 32)]
#: sections in run order, each with its own time limit (seconds) on a GPU: the backends' numerics
#: and timings first (what a loan is for), where a CUDA step's time goes, then the GPU tests and
#: the race check
SECTIONS = {"cuda": 200.0, "profile": 120.0, "triton": 170.0, "tests": 120.0, "racecheck": 90.0}


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _time_cuda(fn, reps: int = 5) -> float:  # noqa: ANN001
    """Best of ``reps`` CUDA-event timings after one warm-up (seconds)."""
    import torch

    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        best = min(best, a.elapsed_time(b) / 1e3)
    return best


def one_case(kind: str, backend: str, dtype: str, batch: int, steps: int, inp: int, hidden: int) -> dict:
    """Compile one layer through ``rnnc.compile`` and check it; returns a table row."""
    import torch

    import rnnc
    from rnnc.tolerances import is_close, tolerance

    mods = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    store = getattr(torch, dtype)
    torch.manual_seed(0)
    model = mods[kind](inp, hidden, batch_first=True).to(store)
    x = torch.randn(batch, steps, inp).to(store)
    row = {"case": f"{kind} B={batch} T={steps} I={inp} H={hidden}", "backend": backend, "dtype": dtype}
    # the independent reference: fp64 of the same weights (fp32 models), fp32 of the rounded ones
    ref = mods[kind](inp, hidden, batch_first=True).double()
    ref.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    with torch.no_grad():
        want = ref(x.double())[0]
    want = want.float() if dtype == "float32" else want.to(store).float()
    t0 = time.perf_counter()
    try:
        compiled = rnnc.compile(model, (x,), target="nvidia/h100-sxm", backend=backend, batch=batch,
                                use_db=False, measure=False)
    except Exception as exc:  # noqa: BLE001 -- a failure is a row of the report, not the end of it
        return {**row, "status": f"compile failed: {type(exc).__name__}: {str(exc)[:300]}"}
    row["compile_s"] = round(time.perf_counter() - t0, 1)
    dev = torch.device("cuda") if _gpu() else torch.device("cpu")
    xd = x.to(dev)
    try:
        with torch.no_grad():
            got = compiled(xd)[0].float().cpu()
    except Exception as exc:  # noqa: BLE001
        return {**row, "status": f"run failed: {type(exc).__name__}: {str(exc)[:300]}"}
    row["err_vs_ref"] = float((got - want).abs().max())
    row["ok"] = is_close(got, want, dtype, backend)  # the table's row for this backend and dtype
    row["tolerance"] = tolerance(dtype, backend)
    row["explain"] = compiled.explain()
    if dev.type == "cuda":
        gmodel = model.to(dev)
        with torch.no_grad():
            row["cudnn_err_vs_ref"] = float((gmodel(xd)[0].float().cpu() - want).abs().max())
            row["rnnc_ms"] = 1e3 * _time_cuda(lambda: compiled(xd))
            row["cudnn_ms"] = 1e3 * _time_cuda(lambda: gmodel(xd))
        row["speedup_vs_cudnn"] = row["cudnn_ms"] / row["rnnc_ms"]
        row["steps_per_ms"] = steps / row["rnnc_ms"]
    row["status"] = "ok" if row["ok"] else "WRONG"
    return row


def numerics(args: argparse.Namespace, backend: str) -> list[dict]:
    cases = QUICK if (args.quick or not _gpu()) else (BIG + RAGGED)
    rows = []
    for dtype in ("float32", "bfloat16"):
        for kind, b, t, i, h in cases:
            print(f"STARTED {kind} B={b} T={t} I={i} H={h} {backend} {dtype}", flush=True)
            row = one_case(kind, backend, dtype, b, t, i, h)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def profile(args: argparse.Namespace) -> list[dict]:
    """Where a CUDA step's time goes: the whole call at several sequence lengths gives the cost per
    step (slope) and per call (intercept) for a small and a large layer; ``ncu`` (when it reads
    counters here) adds the small kernel's speed-of-light summary."""
    import shutil

    import torch

    import rnnc

    if not _gpu():
        return [{"check": "profile", "status": "not run: no GPU"}]
    lines = []
    for hidden, batch in ((96, 5), (768, 16)):
        torch.manual_seed(0)
        model = torch.nn.LSTM(hidden, hidden, batch_first=True)
        x = torch.randn(batch, 8, hidden)
        compiled = rnnc.compile(model, (x,), target="nvidia/h100-sxm", backend="cuda", use_db=False, measure=False)
        times = {}
        for steps in (16, 64, 256):
            xd = torch.randn(batch, steps, hidden, device="cuda")
            with torch.no_grad():
                times[steps] = _time_cuda(lambda xd=xd, fn=compiled: fn(xd))
        slope = (times[256] - times[16]) / 240
        lines.append(f"LSTM H={hidden} B={batch}: {slope * 1e6:.2f} us per step, "
                     f"{(times[16] - 16 * slope) * 1e6:.0f} us per call ({compiled.explain().splitlines()[0]})")
    tool = shutil.which("ncu")
    if tool:
        code = ("import torch, rnnc; m = torch.nn.LSTM(96, 96, batch_first=True); x = torch.randn(5, 64, 96); "
                "c = rnnc.compile(m, (x,), target='nvidia/h100-sxm', backend='cuda', use_db=False, measure=False); "
                "c(x.cuda()); torch.cuda.synchronize()")
        proc = subprocess.run([tool, "--clock-control", "none", "--kernel-name", "regex:rnnc_", "-c", "1",
                               "--section", "SpeedOfLight", "--section", "LaunchStats", "--section", "Occupancy",
                               sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=max(30, args.section_timeout - 60), check=False)
        lines += [ln.strip() for ln in proc.stdout.splitlines()
                  if any(k in ln for k in ("Duration", "Throughput", "Registers", "Grid Size", "Block Size",
                                           "Achieved Occupancy", "Elapsed Cycles"))][:20]
    return [{"check": "profile", "status": "ok", "summary": lines}]


def racecheck(args: argparse.Namespace) -> list[dict]:
    """``compute-sanitizer --tool racecheck`` on a tiny CUDA case (shared-memory hazards)."""
    import shutil

    tool = shutil.which("compute-sanitizer")
    if tool is None or not _gpu():
        return [{"check": "racecheck", "status": "not run: " + ("no GPU" if not _gpu() else "no compute-sanitizer")}]
    code = ("import torch, rnnc; torch.manual_seed(0); m = torch.nn.LSTM(12, 64, batch_first=True); "
            "x = torch.randn(3, 19, 12); c = rnnc.compile(m, (x,), target='nvidia/h100-sxm', backend='cuda', "
            "use_db=False, measure=False); y = c(x.cuda()); torch.cuda.synchronize(); print('ran', y[0].shape)")
    proc = subprocess.run([tool, "--tool", "racecheck", "--racecheck-report", "all", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=args.section_timeout, check=False)
    tail = [ln for ln in proc.stdout.splitlines() if "RACECHECK SUMMARY" in ln or "ERROR SUMMARY" in ln
            or "hazard" in ln.lower()][:6]
    return [{"check": "racecheck", "rc": proc.returncode, "summary": tail or proc.stdout.splitlines()[-3:],
             "status": "ok" if proc.returncode == 0 and not any("hazard" in t.lower() for t in tail) else "FOUND"}]


def tests(args: argparse.Namespace) -> list[dict]:
    """The suite's ``gpu``-marked tests (each with its own timeout)."""
    if not _gpu():
        return [{"check": "pytest -m gpu", "status": "not run: no GPU"}]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                           "--timeout", "90", "-rfE", "tests/backends"], cwd=ROOT, capture_output=True, text=True,
                          timeout=args.section_timeout, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR")) or " passed" in ln
             or " failed" in ln]
    return [{"check": "pytest -m gpu", "rc": proc.returncode, "summary": lines[-12:],
             "status": "ok" if proc.returncode == 0 else "FAILED"}]


def report(results: dict[str, list[dict]], out: Path) -> None:
    from _common import markdown_table, page_header, write_page

    lines = [page_header("GPU check: CUDA and Triton against fp64 and cuDNN").rstrip("\n")]
    if _gpu():
        import torch

        p = torch.cuda.get_device_properties(0)
        import triton

        lines += [f"- GPU: {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, "
                  f"sm_{p.major}{p.minor}; triton {triton.__version__}", ""]
    else:
        lines += ["- GPU: none here; the numerics ran through the CUDA kernels' C twin and Triton's "
                  "interpreter at small sizes; the GPU timings, race check and GPU tests did not run", ""]
    rows = results.get("cuda", []) + results.get("triton", [])
    if rows:
        lines += ["## Numerics and speed", "",
                  "`err` is the largest |rnnc - reference| (fp64 of the same weights; for bf16 rounded to "
                  "bf16), `ok` against the tolerance table's row; `x cuDNN` is cuDNN's time over rnnc's "
                  "(above 1: rnnc is faster).", "",
                  markdown_table(rows, ["case", "backend", "dtype", "status", "err_vs_ref", "cudnn_err_vs_ref",
                                        "rnnc_ms", "cudnn_ms", "speedup_vs_cudnn", "compile_s"],
                                 {"err_vs_ref": lambda v: f"{v:.1e}", "cudnn_err_vs_ref": lambda v: f"{v:.1e}",
                                  "rnnc_ms": lambda v: f"{v:.2f}", "cudnn_ms": lambda v: f"{v:.2f}",
                                  "speedup_vs_cudnn": lambda v: f"{v:.2f}x"}), ""]
        lines += ["What each case ran (`explain()`):", ""]
        lines += [f"- {r['case']} {r['backend']} {r['dtype']}: " + r.get("explain", r["status"]).replace("\n", " ")
                  for r in rows]
        lines.append("")
    for name in ("profile", "racecheck", "tests"):
        for r in results.get(name, []):
            lines += [f"## {r['check']}: {r['status']}", ""] + [f"    {s}" for s in r.get("summary", [])] + [""]
    for name, why in results.get("_skipped", []):
        lines += [f"- section {name}: {why}"]
    write_page(out, lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true", help="small cases only (what a CPU finishes)")
    ap.add_argument("--budget-s", type=float, default=540.0, help="all sections together stop by then")
    ap.add_argument("--section-timeout", type=float, default=0.0,
                    help="seconds one section may run (default: its own, see SECTIONS)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "gpu_check.md"))
    ap.add_argument("--json", default="", help="also write the raw rows here")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:  # one section, in this (sub)process
        import torch

        if not torch.cuda.is_available():  # Triton's kernels run in its interpreter (set before importing it)
            os.environ.setdefault("TRITON_INTERPRET", "1")
        work = {"cuda": lambda a: numerics(a, "cuda"), "triton": lambda a: numerics(a, "triton"),
                "profile": profile, "racecheck": racecheck, "tests": tests}
        rows = work[args.worker](args)
        print("RESULT " + json.dumps(rows), flush=True)
        return
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    start = time.monotonic()
    results: dict[str, list] = {"_skipped": []}
    for name in args.sections.split(","):
        left = args.budget_s - (time.monotonic() - start)
        if left < 30:
            results["_skipped"].append((name, f"not run, the budget was spent ({args.budget_s:.0f} s)"))
            continue
        limit = min(left, args.section_timeout or SECTIONS[name])
        cmd = [sys.executable, __file__, "--worker", name, "--section-timeout", str(limit - 5),
               *(["--quick"] if args.quick else [])]
        print(f"== {name} (up to {limit:.0f} s)", flush=True)
        stderr = ""
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
            out, stderr = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            started = [ln[8:] for ln in out.splitlines() if ln.startswith("STARTED ")]
            results["_skipped"].append((name, f"timed out after {limit:.0f} s (a hang or slow compiles; the rows "
                                              "it finished are kept" + (f"; it was running {started[-1]}"
                                                                        if started else "") + ")"))
        print(out[-4000:], flush=True)
        done = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        if done:
            results[name] = json.loads(done[-1][7:])
        else:  # keep the rows a section printed before it died
            results[name] = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
            if not any(n == name for n, _ in results["_skipped"]):
                results["_skipped"].append((name, f"exited without a result: {stderr[-300:]}"))
    report(results, Path(args.out))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    bad = [r for rows in results.values() for r in rows if isinstance(r, dict) and r.get("status") == "WRONG"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
