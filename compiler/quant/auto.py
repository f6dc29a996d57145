"""``scheme="auto"``: per-site mixed precision searched under an accuracy budget.

Why: the right recipe differs per model (Silero's edge recipe was found by hand; a speaker
encoder loses 13 AUC points with the same w8a8 that costs Silero nothing), so the default must
be a search, with the knobs as overrides.  The search here:

1. split the calibration batches: most calibrate, the last ``holdout`` ones (or ``validation``)
   judge; the reference is the float Program's output on them;
2. the loss of a plan is ``metric(float_outputs, quantized_outputs)``; the default is the
   relative L2 distortion ``max_k ||y_q,k - y_k|| / ||y_k||`` over outputs -- scale-free, and
   a small distortion of the logits/probabilities a task reads bounds how many argmax
   decisions or threshold crossings can change, which is why it tracks accuracy and AUC;
3. sensitivity: each weight site alone quantized w8a8 (everything else float) -- which layer,
   input projection or recurrent weight hurts the output most, recurrent feedback over the
   held-out sequences included;
4. greedy descent from the fastest plan (every site w8a8, integer activations): while the loss
   is over budget, the most sensitive remaining site steps down one level -- integer
   activations -> weight-only int8 -> float -- and the plan is re-measured;
5. the first plan within budget is the answer; every plan tried is kept (loss, size, integer
   sites) for the report's Pareto front.  If only the all-float plan meets the budget, no
   quantized model is returned: :class:`BudgetError` says the best loss reached and by which plan.

Speed is ordered by a proxy (sites with integer activations > weight-only > float, which is how
onnxruntime's kernels rank on CPUs: ``docs/benchmarks/quant_eval.md``); the chosen plan's
latency is measured by the caller (``rnnc quantize --scheme auto`` prints it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnc.errors import RnncError, UserInputError
from rnnc.ir import Program
from rnnc.quant.calibrate import calibrate
from rnnc.quant.config import QuantConfig
from rnnc.quant.data import calibration_batches
from rnnc.quant.rewrite import quantize_program

#: what a site can be, fastest first
LEVELS = ("int8", "weight-only", "float")


class BudgetError(RnncError):
    """No quantized plan meets the budget; carries the best loss reached and its plan (the CLI
    exits 1: the input was fine, the model cannot be quantized that well)."""

    def __init__(self, message: str, best_loss: float, plan: dict[str, str]) -> None:
        super().__init__(message)
        self.best_loss, self.plan = best_loss, plan


def relative_l2(reference: Sequence[torch.Tensor], quantized: Sequence[torch.Tensor]) -> float:
    """``max_k ||q_k - r_k|| / ||r_k||`` over the outputs (see the module docstring for why)."""
    worst = 0.0
    for r, q in zip(reference, quantized, strict=True):
        r64, q64 = r.detach().double(), q.detach().double()
        worst = max(worst, float((q64 - r64).norm() / r64.norm().clamp_min(1e-12)))
    return worst


@dataclass
class Trial:
    plan: dict[str, str]
    loss: float
    q_bytes: int  # bytes of every site's weights in this plan (float sites at 4 bytes a weight)

    @property
    def int8_sites(self) -> int:
        return sum(level == "int8" for level in self.plan.values())


@dataclass
class AutoReport:
    """What the search did: sensitivities, every plan tried, the choice and the time it took."""

    max_loss: float
    metric: str
    sensitivity: dict[str, float] = field(default_factory=dict)
    trials: list[Trial] = field(default_factory=list)
    chosen: Trial | None = None
    seconds: float = 0.0

    def pareto(self) -> list[Trial]:
        """Plans no other plan beats on both loss and size."""
        return [t for t in self.trials if not any(o.loss <= t.loss and o.q_bytes <= t.q_bytes and
                                                  (o.loss, o.q_bytes) != (t.loss, t.q_bytes) for o in self.trials)]

    def summary(self) -> str:
        lines = [f"scheme auto: {len(self.trials)} plans in {self.seconds:.2f} s, budget {self.metric} <= "
                 f"{self.max_loss:g}"]
        if self.chosen is not None:
            c = self.chosen
            lines.append(f"  chosen: loss {c.loss:.4g}, {c.int8_sites}/{len(c.plan)} sites with int8 activations, "
                         f"weights {c.q_bytes / 1024:.1f} KiB")
            lines += [f"    {site:<32} {level}  (alone: {self.sensitivity.get(site, 0.0):.3g})"
                      for site, level in c.plan.items()]
        front = sorted(self.pareto(), key=lambda t: t.loss)
        lines.append("  Pareto front (loss, KiB, int8 sites): " + "; ".join(
            f"({t.loss:.3g}, {t.q_bytes / 1024:.1f}, {t.int8_sites})" for t in front))
        return "\n".join(lines)

    def as_json(self) -> dict:
        def row(t: Trial) -> dict:
            return {"plan": t.plan, "loss": t.loss, "q_bytes": t.q_bytes, "int8_sites": t.int8_sites}

        return {"max_loss": self.max_loss, "metric": self.metric, "seconds": round(self.seconds, 3),
                "sensitivity": self.sensitivity, "chosen": row(self.chosen) if self.chosen else None,
                "pareto": [row(t) for t in self.pareto()], "trials": [row(t) for t in self.trials]}


def _config(plan: dict[str, str], options: dict[str, Any], outliers: str = "none") -> QuantConfig:
    skip = tuple(s for s, level in plan.items() if level == "float")
    weight_only = tuple(s for s, level in plan.items() if level == "weight-only")
    return QuantConfig("w8a8", outliers, skip=(*options.get("skip", ()), *skip),
                       weight_only=(*options.get("weight_only", ()), *weight_only),
                       **{k: v for k, v in options.items() if k not in ("skip", "weight_only")}).check()


def auto_quantize(program: Program, calibration_data: Any, max_loss: float = 0.01, *,
                  validation: Any = None, metric: Callable[..., float] | None = None, holdout: int = 1,
                  outliers: str = "none", progress: bool = True, levels: Sequence[str] = LEVELS,
                  **options: Any) -> tuple[Any, AutoReport]:
    """(the quantized Program with its QuantReport, the search report); see the module docstring.
    ``options`` are QuantConfig fields applied to every plan (``target``, ``int8_format``, ...);
    ``levels`` the per-site choices, fastest first (a provider without integer activations, CoreML,
    searches ``("weight-only", "float")``)."""
    if not 0.0 < max_loss:
        raise UserInputError(f"max_loss must be positive, got {max_loss}")
    if not levels or any(v not in LEVELS for v in levels) or levels[-1] != "float":
        raise UserInputError(f"levels must be a subset of {LEVELS} ending in 'float', got {tuple(levels)}")
    levels = tuple(levels)
    t0 = time.perf_counter()
    batches = calibration_batches(program, calibration_data)
    if validation is not None:
        judge = calibration_batches(program, validation)
        calib = batches
    else:
        if len(batches) <= holdout:
            raise UserInputError(f"scheme auto holds out {holdout} calibration batch(es) to measure the loss and "
                                 f"needs more than that; got {len(batches)} (pass several batches, or validation=)")
        calib, judge = batches[:-holdout], batches[-holdout:]
    stats = calibrate(program, calib, progress=progress)
    reference = [_outputs(program, b) for b in judge]
    loss_of = metric or relative_l2
    report = AutoReport(max_loss, getattr(metric, "__name__", "metric") if metric else "relative L2 distortion")

    base = quantize_program(program, stats, _config({}, options, outliers))  # the all-int8 plan
    sites = list(dict.fromkeys(s.weight for s in base[1].sites))
    fp_bytes: dict[str, int] = {}
    for rep in base[1].sites:
        fp_bytes[rep.weight] = fp_bytes.get(rep.weight, 0) + rep.fp_bytes
    seen: dict[tuple, Trial] = {}
    latest: dict[tuple, tuple[Program, Any]] = {}  # the last plan quantized (the answer, when it fits)

    def evaluate(plan: dict[str, str], quantized: tuple[Program, Any] | None = None) -> Trial:
        key = tuple(sorted(plan.items()))
        if key in seen:
            return seen[key]
        qprog, qrep = quantized or quantize_program(program, stats, _config(plan, options, outliers))
        latest.clear()
        latest[key] = (qprog, qrep)
        loss = max(loss_of(r, _outputs(qprog, b)) for r, b in zip(reference, judge, strict=True))
        quantized = {rep.weight for rep in qrep.sites}
        size = qrep.q_bytes + sum(n for site, n in fp_bytes.items() if site not in quantized)  # float sites: fp32
        trial = seen[key] = Trial(dict(plan), loss, size)
        report.trials.append(trial)
        return trial

    if not sites:
        raise UserInputError("the model has no linear/conv weight to quantize")
    bar = _bar(3 * len(sites) + 1, progress)  # sensitivities, the all-int8 plan, at most two steps a site
    top = levels[0]
    for site in sites:  # each site alone quantized, the rest float
        report.sensitivity[site] = evaluate({s: top if s == site else "float" for s in sites}).loss
        bar.update(1)
    plan = dict.fromkeys(sites, top)
    trial = evaluate(plan, base if top == "int8" else None)
    bar.update(1)
    order = sorted(sites, key=lambda s: -report.sensitivity[s])
    while trial.loss > max_loss:
        movable = [s for s in order if plan[s] != "float"]
        if not movable:
            break
        site = movable[0]  # the most sensitive site not yet float steps down one level
        plan[site] = levels[levels.index(plan[site]) + 1]
        trial = evaluate(plan)
        bar.update(1)
    bar.close()
    report.seconds = time.perf_counter() - t0
    if trial.loss > max_loss or all(level == "float" for level in plan.values()):
        best = min(report.trials, key=lambda t: t.loss if any(v != "float" for v in t.plan.values()) else 1e30)
        raise BudgetError(f"no quantized plan meets {report.metric} <= {max_loss:g}: the best reached "
                          f"{best.loss:.4g} with {best.int8_sites} int8-activation site(s) "
                          f"({', '.join(f'{s}={v}' for s, v in best.plan.items())}); raise --max-loss or give "
                          f"more calibration data", best.loss, best.plan)
    report.chosen = trial
    key = tuple(sorted(plan.items()))
    qprog, qrep = latest[key] if key in latest else quantize_program(program, stats, _config(plan, options, outliers))
    return (qprog, qrep, stats), report


def _outputs(program: Program, batch: tuple[Any, ...]) -> list[torch.Tensor]:
    with torch.no_grad():
        out = program.run(*batch)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="scheme auto", unit="plan", file=sys.stderr, disable=not enabled, leave=False)
