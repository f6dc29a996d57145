"""Benchmark the tiling solvers: rnnc's own, OR-Tools CP-SAT, brute force and FlashRNN's ConstrINT.

    python benchmarks/solver.py                 # full sweep, Markdown table on stdout
    python benchmarks/solver.py --quick         # a few targets/sizes, for a smoke run
    python benchmarks/solver.py --json out.json # also write every measurement

Problems: every cell x hidden 64..4096 x {fp32, bf16, fp16} (where the target supports the
dtype) x every GPU target, batch 16, one head, sequence length 1024.  Each time covers building
the integer model and solving it (targets are loaded once beforehand; OR-Tools' 0.4 s import is
paid before timing).  Brute force runs where a model has at most ``--brute-limit`` decision
combinations, and on every ``--brute-sample``-th problem up to ``--brute-sample-limit``; it must
return the same assignment as both solvers.

ConstrINT (FlashRNN 1.0.8, ``flashrnn/autotune/constrint.py``) is loaded straight from the
unpacked wheel under ``.cache/`` -- never from this repository -- without importing the rest of
flashrnn (which needs torch and CUDA).  How problems are mapped onto it: the *same* rnnc model
is printed in ConstrINT's constraint language (decisions as value lists, products, quotients as
products, divisibility with ``%``, linear constraints with terms moved so that no minus sign is
needed, ``x = max(a, b)`` relaxed to ``a <= x; b <= x``), and the decisions become ConstrINT
``ValueRefinement`` s in rnnc's branching order and preference (LARGEST_FIRST for "max").
ConstrINT has no objective: it returns the first feasible assignment in that order, exactly the
way FlashRNN uses it.  So we report its time to that first solution, whether it agrees on
feasibility, and how often its first solution happens to be rnnc's optimum.  ConstrINT cannot
represent a variable that may be 0 (its integers start at 1), so only models where every such
variable can be inlined are mapped: in practice the fused-recurrence family, the family FlashRNN
itself solves with ConstrINT.  Its own disk cache is bypassed (``solve_constrint.__wrapped__``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import page_header  # noqa: E402  (benchmarks/ is the script's folder)

from rnnc import targets
from rnnc.constraints import CELLS, ProblemSpec, brute, build, search, solve_model
from rnnc.constraints.model import DECISION, LINEAR, MAXIMUM, PRODUCT, QUOTIENT, Divides, LinExpr, Model

ROOT = Path(__file__).resolve().parents[1]
CONSTRINT = ROOT / ".cache" / "flashrnn_pkg" / "flashrnn" / "autotune" / "constrint.py"
HIDDEN = [64, 128, 256, 512, 768, 1024, 2048, 4096]
DTYPES = ["fp32", "bf16", "fp16"]


# --------------------------------------------------------------------------- ConstrINT mapping
class NotExpressible(Exception):
    """The model has a feature ConstrINT's language cannot state."""


def _sides(e: LinExpr, names: dict[int, str], rhs: int = 0) -> tuple[str, str]:
    """'e <op> rhs' as two sums of positive terms: (left, right) with left - right = e - rhs."""
    left, right = [], []
    for i, c in e.terms:
        term = names[i] if abs(c) == 1 else f"{abs(c)} * {names[i]}"
        (left if c > 0 else right).append(term)
    const = e.const - rhs
    if const > 0:
        left.append(str(const))
    elif const < 0:
        right.append(str(-const))
    return " + ".join(left) or "0", " + ".join(right) or "0"


def to_constrint(model: Model) -> tuple[str, list[tuple[str, str]]]:
    """The model in ConstrINT's text format plus (decision, "min"|"max") refinements."""
    names: dict[int, str] = {}
    inline: dict[int, LinExpr] = {}
    lines: list[str] = []
    uses_nonlinear = set()
    for v in model.vars:
        if v.kind in (PRODUCT, QUOTIENT, MAXIMUM):
            uses_nonlinear.update(v.args if v.kind != QUOTIENT else v.args)
    for c in model.constraints:
        if isinstance(c, Divides):
            uses_nonlinear.update((c.divisor, c.dividend))

    def expand(e: LinExpr) -> LinExpr:
        out = LinExpr((), e.const)
        for i, c in e.terms:
            out = out + (inline[i] * c if i in inline else LinExpr(((i, c),), 0))
        return out

    refs = []
    for i, v in enumerate(model.vars):
        name = "".join(ch if ch.isalnum() else "_" for ch in v.name)
        names[i] = f"v_{name}"
        if v.kind == DECISION:
            if len(v.values) == 1:
                names[i] = str(v.values[0])
                if v.values[0] < 1:
                    raise NotExpressible(f"constant {v.values[0]}")
                continue
            if v.values[0] < 1:
                raise NotExpressible(f"decision {v.name} may be 0")
            lines.append(f"{names[i]} == [{', '.join(map(str, v.values))}];")
            refs.append((names[i], v.prefer))
            continue
        lo, hi = v.lo, v.hi
        if v.kind == LINEAR and (lo < 1 or i not in uses_nonlinear):
            if i in uses_nonlinear:
                raise NotExpressible(f"{v.name} may be 0 and is used in a product")
            inline[i] = expand(v.args[0])
            continue
        if lo < 1:
            raise NotExpressible(f"{v.name} may be 0")
        lines.append(f"{names[i]} <= {hi};")
        if lo > 1:
            lines.append(f"{lo} <= {names[i]};")
        a = v.args
        if v.kind == PRODUCT:
            lines.append(f"{names[i]} == {names[a[0]]} * {names[a[1]]};")
        elif v.kind == QUOTIENT:
            lines.append(f"{names[a[0]]} == {names[i]} * {names[a[1]]};")
        elif v.kind == MAXIMUM:
            lines += [f"{names[j]} <= {names[i]};" for j in a]
        else:
            left, right = _sides(expand(v.args[0]) - LinExpr(((i, 1),), 0), names)
            lines.append(f"{left} == {right};")
    for c in model.constraints:
        if isinstance(c, Divides):
            lines.append(f"{names[c.dividend]} % {names[c.divisor]} == 0;")
            continue
        e = expand(c.expr)
        if not e.terms:
            continue
        if c.hi is not None:
            left, right = _sides(e, names, c.hi)
            lines.append(f"{left} <= {right};")
        if c.lo is not None and c.lo != c.hi:
            left, right = _sides(e * -1, names, -c.lo)
            lines.append(f"{left} <= {right};")
        elif c.lo is not None:
            left, right = _sides(e, names, c.lo)
            lines[-1] = f"{left} == {right};"
    return "\n".join(lines), refs


def load_constrint() -> tuple[Any, str]:
    """The ConstrINT module, or None and the reason it is unavailable."""
    if not CONSTRINT.is_file():
        return None, (f"{CONSTRINT.relative_to(ROOT)} not found: run `pip download flashrnn==1.0.8 --no-deps "
                      "-d .cache/wheels` and unzip the wheel into .cache/flashrnn_pkg")
    spec = importlib.util.spec_from_file_location("flashrnn_constrint", CONSTRINT)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken download must not break the benchmark
        return None, f"could not load {CONSTRINT.name}: {exc!r}"
    return module, ""


class _Timeout(Exception):
    pass


def run_constrint(ci: Any, model: Model, timeout_s: float) -> tuple[float, dict | None, str]:
    """(seconds, first solution or None, status) of ConstrINT on the mapped model."""
    try:
        text, refs = to_constrint(model)
    except NotExpressible as exc:
        return 0.0, None, f"not expressible: {exc}"

    def alarm(*_: Any) -> None:
        raise _Timeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    t0 = time.perf_counter()
    try:
        cons, var = ci.parse_expression(text)
        vr = [ci.ValueRefinement(n, ci.ValueHeuristic.LARGEST_FIRST if h == "max" else ci.ValueHeuristic.SMALLEST_FIRST)
              for n, h in refs]
        sols = ci.solve_constrint.__wrapped__(cons, var, vr, 1)
        status = "ok"
    except _Timeout:
        sols, status = (), "timeout"
    except Exception as exc:  # ConstrINT bugs are results too
        sols, status = (), f"error: {type(exc).__name__}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return time.perf_counter() - t0, (dict(sols[0]) if sols else None), status


# ------------------------------------------------------------------------------ the sweep
def problems(quick: bool) -> list[tuple[ProblemSpec, str]]:
    tags = [t for t in targets.list_tags() if t.startswith("nvidia/")]
    hidden = HIDDEN
    if quick:
        tags, hidden = ["nvidia/t4", "nvidia/h100-sxm", "nvidia/rtx-4090"], [64, 768, 4096]
    out = []
    for tag in tags:
        spec = targets.get(tag)
        for cell in CELLS:
            for h in hidden:
                for dtype in DTYPES:
                    if spec.supports(dtype):
                        out.append((ProblemSpec(cell, h, heads=1, batch=16, dtype=dtype), tag))
    return out


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def measure(spec: ProblemSpec, tag: str, brute_limit: int, ci: Any, ci_timeout: float,
            sampled: bool = False, sample_limit: int = 0) -> dict[str, Any]:
    target = targets.get(tag)
    row: dict[str, Any] = {"cell": spec.cell, "hidden": spec.hidden, "dtype": spec.dtype, "target": tag}
    t_r, (prob, sol_r) = _timed(lambda: (p := build(spec, target), solve_model(p.model, "rnnc")))
    t_c, sol_c = _timed(lambda: solve_model(build(spec, target).model, "cpsat"))
    model = prob.model

    def key(s: Any) -> Any:
        return None if s is None else (s.objective, s.decisions(model))

    row.update(kernel=prob.kernel, feasible=sol_r is not None, rnnc_s=t_r, cpsat_s=t_c,
               agree_cpsat=key(sol_r) == key(sol_c), combinations=brute.combinations(model))
    limit = max(brute_limit, sample_limit if sampled else 0)
    if row["combinations"] <= limit:
        exact = key(brute.solve(model, limit=limit))
        row["agree_brute"] = exact == key(sol_r) == key(sol_c)
    if ci is not None and prob.kernel == "fused_recurrence":
        t_ci, first, status = run_constrint(ci, model, ci_timeout)
        row.update(constrint_status=status)
        if status == "ok":
            row.update(constrint_s=t_ci, constrint_feasible_agrees=(first is not None) == (sol_r is not None))
            if first is not None and sol_r is not None:
                dec = {i: first.get(f"v_{model.vars[i].name}", model.vars[i].values[0]) for i in model.decisions()}
                vals = model.evaluate(dec)
                row["constrint_valid"] = vals is not None and model.feasible(vals)
                row["constrint_optimal"] = row["constrint_valid"] and model.objective_value(vals) == sol_r.objective
                # the same search order in rnnc, stopped at the first feasible leaf
                ours_first = search.solve(model, first_only=True)
                row["constrint_first_matches"] = ours_first is not None and all(
                    ours_first.values[model.vars[i].name] == v for i, v in dec.items())
    return row


def _ms(xs: list[float], q: float) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    return f"{1e3 * (statistics.median(xs) if q == 0.5 else xs[min(len(xs) - 1, int(q * len(xs)))]):.1f}"


def table(rows: list[dict[str, Any]], ci_note: str) -> str:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["cell"]].append(r)
    groups["**all**"] = rows
    head = ("| cell | problems | feasible | rnnc median / p95 ms | CP-SAT median / p95 ms | rnnc = CP-SAT "
            "| brute-force checked | both = brute | ConstrINT median / p95 ms | ConstrINT / rnnc time "
            "| ConstrINT first = optimum |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, rs in groups.items():
        br = [r for r in rs if "agree_brute" in r]
        ci = [r for r in rs if "constrint_s" in r]
        ratio = [r["constrint_s"] / r["rnnc_s"] for r in ci]
        opt = [r for r in ci if "constrint_optimal" in r]
        rnnc_t, cpsat_t, ci_t = [r["rnnc_s"] for r in rs], [r["cpsat_s"] for r in rs], [r["constrint_s"] for r in ci]
        brute_ok = f"{100 * sum(r['agree_brute'] for r in br) / len(br):.0f} %" if br else "-"
        ci_ratio = f"{statistics.median(ratio):.1f}x" if ratio else "-"
        ci_opt = f"{sum(r['constrint_optimal'] for r in opt)}/{len(opt)}" if opt else "-"
        agree = 100 * sum(r["agree_cpsat"] for r in rs) / len(rs)
        out.append(
            f"| {name} | {len(rs)} | {sum(r['feasible'] for r in rs)} "
            f"| {_ms(rnnc_t, .5)} / {_ms(rnnc_t, .95)} | {_ms(cpsat_t, .5)} / {_ms(cpsat_t, .95)} "
            f"| {agree:.0f} % | {len(br)} | {brute_ok} | {_ms(ci_t, .5)} / {_ms(ci_t, .95)} | {ci_ratio} | {ci_opt} |"
        )
    return "\n".join(out) + ("\n\n" + ci_note if ci_note else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 targets x 3 sizes instead of the full sweep")
    ap.add_argument("--brute-limit", type=int, default=20000, help="enumerate models up to this many combinations")
    ap.add_argument("--brute-sample", type=int, default=8,
                    help="also enumerate every N-th problem up to --brute-sample-limit combinations")
    ap.add_argument("--brute-sample-limit", type=int, default=250000)
    ap.add_argument("--constrint-timeout", type=float, default=10.0, help="seconds per ConstrINT run")
    ap.add_argument("--no-constrint", action="store_true", help="skip FlashRNN's ConstrINT")
    ap.add_argument("--json", type=Path, help="write every measurement to this file")
    args = ap.parse_args(argv)

    ci, why = (None, "skipped on request") if args.no_constrint else load_constrint()
    if ci is None:
        print(f"ConstrINT skipped: {why}", file=sys.stderr)
    items = problems(args.quick)
    for tag in {t for _, t in items}:
        targets.get(tag)
    solve_model(build(*(items[0][0], targets.get(items[0][1]))).model, "cpsat")  # pay the OR-Tools import
    rows = []
    t0 = time.perf_counter()
    for k, (spec, tag) in enumerate(items, 1):
        rows.append(measure(spec, tag, args.brute_limit, ci, args.constrint_timeout,
                            sampled=k % args.brute_sample == 0, sample_limit=args.brute_sample_limit))
        if k % 100 == 0:
            print(f"  {k}/{len(items)} problems, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    statuses = defaultdict(int)
    for r in rows:
        if "constrint_status" in r:
            statuses[r["constrint_status"].split(":")[0]] += 1
    note = "ConstrINT runs: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) if statuses else ""
    if ci is None:
        note = f"ConstrINT skipped: {why}"
    print(page_header("Tiling solver: propagation vs CP-SAT vs brute force vs ConstrINT") + table(rows, note))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    bad = [r for r in rows if not r["agree_cpsat"] or r.get("agree_brute") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
