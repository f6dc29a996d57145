"""``scheme="auto"``: per-site mixed precision searched under an accuracy budget, for speed.

Why: the right recipe differs per model (Silero's edge recipe was found by hand; a speaker
encoder loses 13 AUC points with the same w8a8 that costs Silero nothing), so the default must
be a search, with the knobs as overrides.  The search here:

1. split the calibration batches: most calibrate, the last ``holdout`` ones (or ``validation``)
   judge; the reference is the float Program's output on them;
2. the loss of a plan is ``metric(float_outputs, quantized_outputs)``; the default is the
   relative L2 distortion ``max_k ||y_q,k - y_k|| / ||y_k||`` over outputs -- scale-free, and
   a small distortion of the logits/probabilities a task reads bounds how many argmax
   decisions or threshold crossings can change, which is why it tracks accuracy and AUC;
3. sensitivity: each weight site alone quantized at the fastest level (everything else float)
   -- which layer, input projection or recurrent weight hurts the output most, recurrent
   feedback over the held-out sequences included;
4. per site the levels are, fastest first: ``int8-static`` (calibrated activation scales: static
   int8 chains, no per-call quantization), ``int8`` (dynamic per-call scales), ``weight-only``
   (int8 weights, float activations), ``fp16`` (weights rounded to float16 values, stored half
   size by the ONNX export), ``float``; the outlier treatment of the whole model
   (``none``, ``smooth``, ``keep``, ``clip``, ``rotate``) and the weights' rounding (nearest or
   GPTQ) are searched too unless the caller fixed them;
5. per treatment and rounding, greedy descent from the fastest plan: while the loss is over
   budget, the most sensitive site not yet float steps down one level; then a climb: each site,
   least sensitive first, steps back up while the plan stays within budget;
6. the plans that end within budget are the candidates, each also (where within budget) with
   every integer site on dynamic scales (the level order is not the speed order for every op:
   onnxruntime fuses an LSTM layer into one node only with dynamic scales), with each recurrent
   cell's sites on one level (a mixed cell cannot be one fused node), with one input scale per
   sequence in every cell (``sequence_scale="all"``), with integer activations
   on its larger half of sites only, and without integer activations at all (weight-only: the
   same storage at float speed, for models too small for int8 kernels to pay off; sites whose
   rounding alone breaks the budget step to fp16, then float; a bidirectional layer's two
   directions are one site, named by its forward weight); on ``cpu/host`` each is exported and timed in
   onnxruntime on this machine per call on one held-out sample (as is the float model), and
   among the plans within 5 % of the fastest (timing noise) the smallest, then the least loss,
   wins; for other targets the target's YAML data predicts each plan's time
   (``quant/latency.py``) and the same rule picks, a plan whose export runs integer layers as a
   per-step Scan ranking after every other (GPU targets: the level order).  When no plan
   within budget beats float, the report says so in one sentence with both times; when only the
   all-float plan meets the budget, :class:`BudgetError` gives the best loss reached and its plan.

Every plan tried is kept (loss, size, latency where measured) for the report's Pareto front.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rnnc.backends.onnx.peephole import HALF_MIN_ELEMENTS
from rnnc.errors import RnncError, UserInputError
from rnnc.ir import Program
from rnnc.ir.graph import Weights
from rnnc.quant.calibrate import calibrate
from rnnc.quant.config import QuantConfig, named
from rnnc.quant.data import calibration_batches
from rnnc.quant.latency import Rates, predict_seconds, site_load
from rnnc.quant.race import export as _export
from rnnc.quant.race import is_stepwise as _stepwise
from rnnc.quant.race import one_sample
from rnnc.quant.race import onnx_session as _onnx_session
from rnnc.quant.race import race as _race
from rnnc.quant.race import samples as _samples
from rnnc.quant.rewrite import quantize_program
from rnnc.targets import get as get_target

#: what a site can be, fastest first
LEVELS = ("int8-static", "int8", "weight-only", "fp16", "float")
#: whole-model outlier treatments the search tries when the caller fixed none
TREATMENTS = ("none", "smooth", "keep", "clip", "rotate")
_INT_ACTS = ("int8-static", "int8")
#: relative latency difference below which two timed plans count as equally fast (the spread of
#: repeated onnxruntime timings of one model on a shared two-core VM is a few percent)
SAME_SPEED = 0.05


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
        d = float((q64 - r64).norm() / r64.norm().clamp_min(1e-12))
        worst = max(worst, d if d == d else float("inf"))  # NaN: infinitely far
    return worst


@dataclass
class Trial:
    plan: dict[str, str]
    loss: float
    q_bytes: int  # bytes of every site's weights in this plan (float sites at 4 bytes a weight)
    outliers: str = "none"
    latency_ms: float | None = None  # candidates only: onnxruntime on this host, or predicted for the target
    stepwise: bool = False  # candidates: its export runs a recurrence step by step (Scan/Loop)
    gptq: bool = False  # weights rounded by GPTQ instead of to nearest
    sequence: str = ""  # cells whose dynamic input takes one scale per sequence, when not the default

    @property
    def recipe(self) -> str:
        """The whole-model choices besides the per-site plan: ``treatment[+gptq][+seq-<cells>]``."""
        return self.outliers + ("+gptq" if self.gptq else "") + (f"+seq-{self.sequence}" if self.sequence else "")

    @property
    def int8_sites(self) -> int:
        """Sites whose activations are integer (static or dynamic scales)."""
        return sum(level in _INT_ACTS for level in self.plan.values())

    def row(self) -> dict:
        return {"plan": self.plan, "outliers": self.outliers, "gptq": self.gptq, "sequence": self.sequence,
                "loss": self.loss, "q_bytes": self.q_bytes, "int8_sites": self.int8_sites,
                "latency_ms": self.latency_ms, "stepwise": self.stepwise}


@dataclass
class AutoReport:
    """What the search did: sensitivities, every plan tried, the timed candidates, the choice."""

    max_loss: float
    metric: str
    sensitivity: dict[str, float] = field(default_factory=dict)
    trials: list[Trial] = field(default_factory=list)
    chosen: Trial | None = None
    seconds: float = 0.0
    fp32_ms: float | None = None  # the float model: in onnxruntime when measured, else predicted
    fp32_bytes: int = 0
    speed: str = "predicted from the level order"  # or from the target's data, or "onnxruntime on this host"
    note: str = ""  # one sentence when the fastest plan within budget is not faster than float

    def pareto(self) -> list[Trial]:
        """Plans no other plan beats on loss, size and (where both were timed) latency."""
        def beats(o: Trial, t: Trial) -> bool:  # no worse on every shared dim, better on one
            pairs = [(o.loss, t.loss), (o.q_bytes, t.q_bytes)]
            if o.latency_ms is not None and t.latency_ms is not None:
                pairs.append((o.latency_ms, t.latency_ms))
            return all(a <= b for a, b in pairs) and any(a < b for a, b in pairs)

        return [t for t in self.trials if not any(beats(o, t) for o in self.trials)]

    def summary(self) -> str:
        lines = [f"scheme auto: {len(self.trials)} plans in {self.seconds:.2f} s, budget {self.metric} <= "
                 f"{self.max_loss:g}; speed {self.speed}"]
        if self.chosen is not None:
            c = self.chosen
            speed = (f", {c.latency_ms:.3f} ms vs fp32 {self.fp32_ms:.3f} ms ({self.fp32_ms / c.latency_ms:.2f}x)"
                     if c.latency_ms and self.fp32_ms else "")
            size = f" ({self.fp32_bytes / c.q_bytes:.1f}x smaller)" if self.fp32_bytes and c.q_bytes else ""
            lines.append(f"  chosen: loss {c.loss:.4g}, outliers {c.recipe}, {c.int8_sites}/{len(c.plan)} sites "
                         f"with int8 activations, weights {c.q_bytes / 1024:.1f} KiB{size}{speed}")
            lines += [f"    {site:<32} {level}  (alone: {self.sensitivity.get(site, 0.0):.3g})"
                      for site, level in c.plan.items()]
        timed = [t for t in self.trials if t.latency_ms is not None]
        if timed:
            how = "timed" if self.speed.startswith("onnxruntime") else "predicted"
            lines.append(f"  candidates {how}: " + "; ".join(
                f"{t.recipe} loss {t.loss:.3g} {t.latency_ms:.3f} ms{' (Scan)' if t.stepwise else ''}"
                for t in timed))
        if self.note:
            lines.append(f"  note: {self.note}")
        front = sorted(self.pareto(), key=lambda t: t.loss)
        lines.append("  Pareto front (loss, KiB, ms): " + "; ".join(
            f"({t.loss:.3g}, {t.q_bytes / 1024:.1f}, {'-' if t.latency_ms is None else f'{t.latency_ms:.3f}'})"
            for t in front))
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"max_loss": self.max_loss, "metric": self.metric, "seconds": round(self.seconds, 3),
                "speed": self.speed, "fp32_ms": self.fp32_ms, "fp32_bytes": self.fp32_bytes, "note": self.note,
                "sensitivity": self.sensitivity, "chosen": self.chosen.row() if self.chosen else None,
                "pareto": [t.row() for t in self.pareto()], "trials": [t.row() for t in self.trials]}


def _recipe(recipe: str) -> tuple[str, bool, str]:
    """``treatment[+gptq][+seq-<cells>]`` (what :attr:`Trial.recipe` writes) as (outlier
    treatment, GPTQ rounding, per-sequence cells or "")."""
    outliers, *flags = recipe.split("+")
    return outliers, "gptq" in flags, next((f[4:] for f in flags if f.startswith("seq-")), "")


def _config(plan: dict[str, str], options: dict[str, Any], recipe: str = "none") -> QuantConfig:
    """The QuantConfig of a per-weight plan under a recipe (``treatment[+gptq][+seq-<cells>]``): float sites
    skipped, weight-only (int8 or ``int4``) sites named, static scales when any site is
    ``int8-static`` with the ``int8`` sites kept dynamic."""
    outliers, gptq, sequence = _recipe(recipe)
    skip = tuple(s for s, level in plan.items() if level in ("fp16", "float"))  # fp16: see _half
    weight_only = tuple(s for s, level in plan.items() if level == "weight-only")
    int4 = tuple(s for s, level in plan.items() if level == "int4")
    static = options.get("static", False) or any(level == "int8-static" for level in plan.values())
    dynamic = tuple(s for s, level in plan.items() if level == "int8") if static else ()
    rest = {k: v for k, v in options.items()
            if k not in ("skip", "weight_only", "static", "dynamic", "gptq", "int4_weights")
            and not (k == "sequence_scale" and sequence)}
    if sequence:
        rest["sequence_scale"] = sequence
    return QuantConfig("w8a8", outliers, skip=(*options.get("skip", ()), *skip),
                       weight_only=(*options.get("weight_only", ()), *weight_only), static=static,
                       int4_weights=(*options.get("int4_weights", ()), *int4),
                       dynamic=(*options.get("dynamic", ()), *dynamic), gptq=gptq, **rest).check()


def _pick(candidates: Sequence[Trial], fp32_ms: float) -> Trial:
    """The timed candidate to ship: among those within :data:`SAME_SPEED` of the fastest, the
    fewest bytes, then the least loss; when none is faster than float by more than that, every
    candidate at float speed (within SAME_SPEED of ``fp32_ms``) is as fast as any other.  Why not
    simply the fastest: a timing difference of a few percent is this machine's noise, not a
    property of the plan; size is the deployment's next concern, and at equal size a lower loss
    on the held-out data is margin to the budget on data the search never saw."""
    fastest = min(t.latency_ms for t in candidates)
    if fastest >= fp32_ms * (1 - SAME_SPEED):  # nothing materially faster than float
        limit = max(fastest * (1 + SAME_SPEED), fp32_ms * (1 + SAME_SPEED))
    else:  # only plans materially faster than float, as fast as the fastest
        limit = min(fastest * (1 + SAME_SPEED), fp32_ms * (1 - SAME_SPEED))
    near = [t for t in candidates if t.latency_ms <= limit]
    return min(near, key=lambda t: (t.q_bytes, t.loss, t.latency_ms))


def _why_not_faster(chosen: Trial, candidates: Sequence[Trial], report: AutoReport) -> str:
    """One sentence: why no plan within the budget beats float here, with the times that show it."""
    integer = [t for t in candidates if t.int8_sites and t.latency_ms is not None]
    parts = [f"no plan within the budget runs faster than float in onnxruntime here (fp32 {report.fp32_ms:.3f} ms "
             f"per call)"]
    if integer:
        fastest = min(integer, key=lambda t: t.latency_ms)
        if fastest.latency_ms < report.fp32_ms:
            parts.append(f"the fastest with int8 activations takes {fastest.latency_ms:.3f} ms, within this "
                         f"machine's timing noise ({SAME_SPEED:.0%}) of float: at these sizes its int8 products "
                         "save about what quantizing and rescaling activations costs")
        elif fastest.stepwise:
            parts.append(f"the fastest with int8 activations takes {fastest.latency_ms:.3f} ms: its recurrent "
                         "layers run step by step in an ONNX Scan (onnxruntime has one fused int8 recurrent "
                         "kernel, DynamicQuantizeLSTM: none for GRU or user cells, none with static scales) "
                         "where the float layer is one fused node")
        else:
            parts.append(f"the fastest with int8 activations takes {fastest.latency_ms:.3f} ms: quantizing and "
                         f"rescaling activations costs more per call than its int8 products save at these sizes")
    else:
        parts.append("no plan with int8 activations meets the budget")
    if any(t.int8_sites == 0 and not set(t.plan.values()) & {"int4"} for t in candidates):
        parts.append("weight-only int8 and fp16 weights are widened to float when the model loads, so they run "
                     "at float speed by construction")
    parts.append(f"the chosen plan ({chosen.latency_ms:.3f} ms) is {report.fp32_bytes / max(chosen.q_bytes, 1):.1f}x "
                 f"smaller")
    return "; ".join(parts)


def auto_quantize(program: Program, calibration_data: Any, max_loss: float = 0.01, *,
                  validation: Any = None, metric: Callable[..., float] | None = None, holdout: int = 1,
                  outliers: str | None = None, progress: bool = True, levels: Sequence[str] = LEVELS,
                  measure: bool | None = None, int4: bool = True, predict: bool = True,
                  **options: Any) -> tuple[Any, AutoReport]:
    """(the quantized Program with its QuantReport and stats, the search report); see the module
    docstring.  ``options`` are QuantConfig fields applied to every plan (``target``,
    ``int8_format``, ...); ``levels`` the per-site choices, fastest first (a provider without integer
    activations, CoreML, searches ``("weight-only", "float")``); ``outliers`` fixes the treatment
    (None: search ``TREATMENTS``); ``measure`` times the candidates in onnxruntime (default: when the
    target is this machine, ``cpu/host``); ``int4``: weight-only sites may shrink to group-wise int4
    (a phone provider that places only int8 forms searches without); ``predict``: untimed plans
    ranked by the target CPU's data (``quant/latency.py``), else by the level order (what a phone
    provider's accelerator gets: its export and its speed are not the CPU's)."""
    if not 0.0 < max_loss:
        raise UserInputError(f"max_loss must be positive, got {max_loss}")
    levels = tuple(levels)
    if not levels or any(v not in LEVELS for v in levels) or levels[-1] != "float" or len(set(levels)) != len(levels):
        raise UserInputError(f"levels must be distinct levels of {LEVELS} ending in 'float', got {levels}")
    target = options.get("target", "cpu/host")
    measure = target == "cpu/host" if measure is None else measure
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
    # weight rounding is searched like the outlier treatment unless the caller fixed it: GPTQ
    # (error-compensating, needs the calibrated input Hessians) or round-to-nearest
    roundings = ("+gptq",) if options.get("gptq") else ("",) if "gptq" in options else ("", "+gptq")
    stats = calibrate(program, calib, progress=progress, hessian="+gptq" in roundings)
    reference = [_outputs(program, b) for b in judge]
    loss_of = metric or relative_l2
    report = AutoReport(max_loss, getattr(metric, "__name__", "metric") if metric else "relative L2 distortion")
    acts = levels[0] in _INT_ACTS
    treatments = [t + r for r in roundings for t in ((outliers,) if outliers else (TREATMENTS if acts else ("none",)))]

    base = quantize_program(program, stats, _config({}, options, treatments[0]))
    # one site per weight, except that a bidirectional layer's two directions are one site, named
    # by its forward weight: the rewrite quantizes a cell's site for every direction alike
    members: dict[str, list[str]] = {}  # site -> its weights
    site_of: dict[str, str] = {}  # weight -> its site
    first: dict[str, str] = {}  # direction-free site path -> the site
    for r in base[1].sites:
        if r.weight in site_of:
            continue
        head = first.setdefault(r.site.replace(".rev/", ".fwd/"), r.weight)
        site_of[r.weight] = head
        members.setdefault(head, []).append(r.weight)
    sites = list(members)
    if not sites:
        raise UserInputError("the model has no linear/conv weight to quantize")
    weight_bytes: dict[str, int] = {}
    for r in base[1].sites:
        weight_bytes[r.weight] = weight_bytes.get(r.weight, 0) + r.fp_bytes
    fp_bytes = {site: sum(weight_bytes[w] for w in ws) for site, ws in members.items()}
    report.fp32_bytes = sum(fp_bytes.values())

    def expand(plan: dict[str, str]) -> dict[str, str]:
        """A plan over sites as a plan over every weight."""
        return {w: level for site, level in plan.items() for w in members[site]}
    seen: dict[tuple, Trial] = {}
    programs: dict[tuple, tuple[Program, Any]] = {}  # the candidates' quantized Programs

    def key_of(plan: dict[str, str], treatment: str) -> tuple:
        return (treatment, *sorted(plan.items()))

    def quantized(plan: dict[str, str], treatment: str) -> tuple[Program, Any]:
        per_weight = expand(plan)
        qprog, qrep = quantize_program(program, stats, _config(per_weight, options, treatment))
        return _half(qprog, [w for w, v in per_weight.items() if v == "fp16"]), qrep

    def evaluate(plan: dict[str, str], treatment: str) -> Trial:
        key = key_of(plan, treatment)
        if key in seen:
            return seen[key]
        qprog, qrep = quantized(plan, treatment)
        loss = max(loss_of(r, _outputs(qprog, b)) for r, b in zip(reference, judge, strict=True))
        if not np.isfinite(loss):  # a NaN (fp16 overflow, say) must never pass for lossless
            loss = float("inf")
        quantized_weights = {r.weight for r in qrep.sites}
        per_weight = expand(plan)
        # float weights at 4 bytes; fp16 ones at 2 where the export stores them half (store_half_exact)
        size = qrep.q_bytes + sum(n // (2 if per_weight[w] == "fp16" and n // 4 >= HALF_MIN_ELEMENTS else 1)
                                  for w, n in weight_bytes.items() if w not in quantized_weights)
        outliers_of, gptq, sequence = _recipe(treatment)
        trial = seen[key] = Trial(dict(plan), loss, size, outliers_of, gptq=gptq, sequence=sequence)
        report.trials.append(trial)
        bar.update(1)
        return trial

    top = levels[0]
    bar = _bar(len(treatments) * (2 * len(sites) * len(levels) + 1) + len(sites), progress)
    for site in sites:  # each site alone quantized at the fastest level, the rest float
        report.sensitivity[site] = evaluate({s: top if s == site else "float" for s in sites}, treatments[0]).loss
    order = sorted(sites, key=lambda s: -report.sensitivity[s])
    finals: list[tuple[dict[str, str], str]] = []
    for treatment in treatments:
        plan = dict.fromkeys(sites, top)
        trial = evaluate(plan, treatment)
        while trial.loss > max_loss:  # descent: the most sensitive site not yet float steps down
            movable = [s for s in order if plan[s] != "float"]
            if not movable:
                break
            plan[movable[0]] = levels[levels.index(plan[movable[0]]) + 1]
            trial = evaluate(plan, treatment)
        if trial.loss > max_loss or all(v == "float" for v in plan.values()):
            continue
        for site in reversed(order):  # climb: least sensitive first, back up while within budget
            while plan[site] != top:
                up = {**plan, site: levels[levels.index(plan[site]) - 1]}
                if evaluate(up, treatment).loss > max_loss:
                    break
                plan = up
        finals.append((plan, treatment))
    bar.close()
    if not finals:
        report.seconds = time.perf_counter() - t0
        best = min(report.trials, key=lambda t: t.loss if any(v != "float" for v in t.plan.values()) else 1e30)
        raise BudgetError(f"no quantized plan meets {report.metric} <= {max_loss:g}: the best reached "
                          f"{best.loss:.4g} with {best.int8_sites} int8-activation site(s) "
                          f"({', '.join(f'{s}={v}' for s, v in best.plan.items())}; {best.recipe}); "
                          f"raise --max-loss or give more calibration data", best.loss, best.plan)
    # each candidate also with integer activations on its larger half of sites only (small GEMMs
    # pay the activation quantization without enough products to win it back: Silero's edge recipe
    # by hand was exactly this), and without integer activations at all: int8 storage at float
    # speed, for models too small for int8 kernels
    # and with every integer site on per-call dynamic scales: which of static and dynamic scales is
    # faster depends on the op, not the level order (onnxruntime fuses a whole LSTM layer into one
    # DynamicQuantizeLSTM node only with dynamic scales; static chains win on linears and convs)
    # and with each recurrent cell's sites on one level: a cell whose input and recurrent weights
    # differ cannot be one fused layer node (a mixed LSTM layer runs as a per-step Scan)
    cells: dict[str, set[str]] = {}
    for rep in base[1].sites:
        if "/" in rep.site:  # a site inside a cell's step graph: "<node>/<layer.direction>/<value>"
            cells.setdefault(rep.site.rpartition("/")[0].replace(".rev", ".fwd"), set()).add(site_of[rep.weight])
    for plan, treatment in list(finals):
        variants = [{s: "int8" if v == "int8-static" else v for s, v in plan.items()}] if "int8" in levels else []
        uniform = dict(plan)
        for group in cells.values():
            have = {uniform[s] for s in group}
            level = "int8" if have <= set(_INT_ACTS) and "int8" in levels else max(have, key=levels.index)
            uniform.update(dict.fromkeys(group, level))
        variants.append(uniform)
        for variant in variants:
            if variant != plan and (variant, treatment) not in finals and evaluate(variant, treatment).loss <= max_loss:
                finals.append((variant, treatment))
    # and with one input scale per sequence in every cell (by default only LSTM cells take one:
    # what onnxruntime's fused kernel does), which lets a GRU or user cell's dynamic input
    # projection leave the step loop as one integer GEMM, at the accuracy of a coarser scale
    if cells and "sequence_scale" not in options:
        for plan, treatment in list(finals):
            if "int8" in plan.values() and (plan, treatment + "+seq-all") not in finals \
                    and evaluate(plan, treatment + "+seq-all").loss <= max_loss:
                finals.append((plan, treatment + "+seq-all"))
    quiet = levels[levels.index("weight-only"):] if "weight-only" in levels else ()  # float-speed levels
    by_size = sorted(sites, key=lambda s: -fp_bytes[s])
    large = set(by_size[:max(1, len(by_size) // 2)])
    for plan, treatment in list(finals):
        if "weight-only" in levels and any(v in _INT_ACTS for v in plan.values()):
            mixed = {s: "weight-only" if v in _INT_ACTS and s not in large else v for s, v in plan.items()}
            if mixed != plan and evaluate(mixed, treatment).loss <= max_loss and (mixed, treatment) not in finals:
                finals.append((mixed, treatment))
    for plan, recipe in list(finals):
        # weight-only outliers need no treatment, unless the caller fixed one; the rounding stays
        plain = (outliers or "none") + ("+gptq" if "+gptq" in recipe else "")
        if "weight-only" in levels and any(v in _INT_ACTS for v in plan.values()):
            light = {s: "weight-only" if v in _INT_ACTS else v for s, v in plan.items()}
            while evaluate(light, plain).loss > max_loss:  # weight-only error alone can be over budget:
                movable = [s for s in order if light[s] in quiet[:-1]]  # the most sensitive step down
                if not movable:
                    break
                light = {**light, movable[0]: quiet[quiet.index(light[movable[0]]) + 1]}
            if all(v == "float" for v in light.values()) or evaluate(light, plain).loss > max_loss:
                continue
            for site in reversed(order):  # sites that fit a smaller level now, least sensitive first
                for level in quiet[:quiet.index(light[site])]:
                    if evaluate({**light, site: level}, plain).loss <= max_loss:
                        light = {**light, site: level}
                        break
            if (light, plain) not in finals:
                finals.append((light, plain))
    if int4:  # smaller in the same speed class: weight-only sites to group-wise int4, least sensitive
        for plan, recipe in list(finals):  # first (plans at float speed, where size decides)
            if any(v in _INT_ACTS for v in plan.values()):
                continue
            small = dict(plan)
            keep8 = options.get("int8_weights", ())
            for site in reversed(order):
                if named(keep8, members[site]):
                    continue  # the caller keeps it int8
                if small[site] == "weight-only" and evaluate({**small, site: "int4"}, recipe).loss <= max_loss:
                    small = {**small, site: "int4"}
            if small != plan and (small, recipe) not in finals:
                finals.append((small, recipe))
    candidates = []
    for plan, treatment in finals:
        key = key_of(plan, treatment)
        programs[key] = quantized(plan, treatment)
        candidates.append(seen[key])
    if measure:  # per call at batch 1, on one held-out sample: the latency an edge deployment pays
        report.speed = "onnxruntime on this host, one sample per call"
        sample = one_sample(program, judge[0])
        runs = [_onnx_session(program, sample, target)] + [
            _onnx_session(programs[key_of(c.plan, c.recipe)][0], sample, target) for c in candidates]
        report.fp32_ms, *times = _race([run[:2] for run in runs])
        for cand, ms, run in zip(candidates, times, runs[1:], strict=True):
            cand.latency_ms, cand.stepwise = ms, run[2]
        # the contenders again, with the float model, for as long again: a first pass over many
        # candidates gives each only a few rounds, and which of the near-equal ones is in the
        # SAME_SPEED band of the fastest must not be decided by one noisy round
        # (as fast as the fastest, or at float speed: what _pick may ship after a second look)
        fastest = min(times)
        again = [k for k, ms in enumerate(times)
                 if ms <= max(fastest * (1 + 4 * SAME_SPEED), report.fp32_ms * (1 + 2 * SAME_SPEED))]
        report.fp32_ms, *times = _race([runs[0][:2]] + [runs[k + 1][:2] for k in again])
        for k, ms in zip(again, times, strict=True):
            candidates[k].latency_ms = ms
        chosen = _pick([candidates[k] for k in again], report.fp32_ms)
        if chosen.latency_ms >= report.fp32_ms * (1 - SAME_SPEED):
            report.note = _why_not_faster(chosen, candidates, report)
    else:  # another target: its data predicts the speed (quant/latency.py); a plan whose export runs
        # integer layers step by step (a Scan: each step's ops one node at a time) is ranked after
        # every other, being slower than float in onnxruntime (docs/benchmarks/quant_auto.md: a GRU
        # layer 5.5 ms vs 0.42 ms), which a roofline of the products cannot see
        spec = get_target(target)
        if predict and spec.cpu is not None:
            for cand in candidates:  # int8 activations, or group-wise int4 weights, can force a Scan
                cand.stepwise = _stepwise(_export(programs[key_of(cand.plan, cand.recipe)][0], target))
            pool = [c for c in candidates if not c.stepwise] or candidates
            rates = Rates.of(spec)
            samples = _samples(program, calib)
            loads = {rep.site: site_load(rep.shape, stats[rep.site].count / samples if rep.site in stats else 0.0)
                     for rep in base[1].sites}
            weight_of = {rep.site: site_of[rep.weight] for rep in base[1].sites}

            def predicted(plan: dict[str, str]) -> float:
                return predict_seconds(loads, {s: plan.get(w, "float") for s, w in weight_of.items()}, rates) * 1e3

            report.speed = f"predicted from the target's data ({rates.source}; quant/latency.py)"
            report.fp32_ms = predicted({})
            for cand in candidates:
                cand.latency_ms = predicted(cand.plan)
            chosen = _pick(pool, report.fp32_ms)
            if chosen.latency_ms >= report.fp32_ms * (1 - SAME_SPEED):
                stepped = sum(c.stepwise for c in candidates)
                report.note = (f"no plan within the budget is predicted faster than float on {target} "
                               f"({chosen.latency_ms:.3g} vs {report.fp32_ms:.3g} ms in the quantized products)"
                               + (f"; {stepped} plan(s) whose export runs a recurrent layer step by step in a Scan "
                                  "(no fused onnxruntime kernel for it) rank after the rest" if stepped else "")
                               + f"; the chosen plan is {report.fp32_bytes / max(chosen.q_bytes, 1):.1f}x smaller")
        else:  # a phone provider's accelerator (its export unrolls the recurrences, its speed is not
            # the CPU's) or a GPU: the level order
            rank = {**{level: i for i, level in enumerate(LEVELS)}, "int4": LEVELS.index("weight-only")}
            chosen = min(candidates, key=lambda t: (sum(rank[v] for v in t.plan.values()), t.q_bytes, t.loss))
    report.chosen = chosen
    report.seconds = time.perf_counter() - t0
    qprog, qrep = programs[key_of(chosen.plan, chosen.recipe)]
    return (qprog, qrep, stats), report


def _half(program: Program, sites: Sequence[str]) -> Program:
    """``program`` with the float weights of ``sites`` rounded to float16 values: what the ``fp16``
    level stores (the ONNX export keeps float16-exact constants as float16, ``store_half_exact``)
    while every backend computes in float32 as before."""
    if not sites:
        return program
    weights = {n: (w.to(torch.float16).to(w.dtype) if n in sites else w) for n, w in program.weights.items()}
    return Program(program.graph, Weights(weights), source=program.source)


def _outputs(program: Program, batch: tuple[Any, ...]) -> list[torch.Tensor]:
    with torch.no_grad():
        out = program.run(*batch)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="scheme auto", unit="plan", file=sys.stderr, disable=not enabled, leave=False)
