"""Planning one site: from a float weight and its activation statistics to the tensors of a
``qlinear``/``qconv1d`` node (plus an optional smoothing ``mul`` or rotation ``matmul`` before it).

Inside an ``rnn`` node one cell serves every direction, so a site is planned for all directions
at once: the *structure* (which inputs exist, how many channels are kept) must be the same, the
*values* are per direction.  Kept channels are therefore the union over directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rnnc.quant.calibrate import ChannelStats
from rnnc.quant.config import QuantConfig, SiteReport, named
from rnnc.quant.gptq import gptq_quantize
from rnnc.quant.outliers import clip_scale, detect_outliers, hadamard_block, random_hadamard, smoothing_factors
from rnnc.quant.weights import quantize_weight

#: suffix of each tensor a planned site adds (its param is named ``<base>.<suffix>``)
Q, SCALE, XSCALE, KEEP_IDX, KEEP_W, SMOOTH, ROT = "q", "scale", "xscale", "keep_idx", "keep_w", "smooth", "rot"


@dataclass
class SitePlan:
    act: str
    n_keep: int = 0
    smooth: bool = False
    rotate: bool = False
    folded: bool = False  # the smoothing division lives in the producing layer's weights (no mul)
    clipped: bool = False  # static scale from a percentile (values beyond it saturate on purpose)
    tensors: list[dict[str, torch.Tensor]] = field(default_factory=list)  # one dict per direction
    reports: list[SiteReport] = field(default_factory=list)


def static_scale(absmax: torch.Tensor, keep: list[int], smooth: torch.Tensor | None) -> float:
    """Symmetric int8 scale covering the calibrated max |x| of every channel that reaches the
    integer product: kept (float) channels excluded, smoothed channels divided by their factor."""
    a = absmax.to(torch.float32).clone()
    if smooth is not None:
        a = a * smooth.reshape(-1)  # SMOOTH holds 1 / s
    if keep:
        a[torch.tensor(keep, dtype=torch.int64)] = 0.0
    r = float(a.max()) if a.numel() else 0.0
    return (r if r > 0 else 1.0) / 127.0


def _transformed_hessian(h: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """``H`` of the input the integer product actually sees: smoothing divides channel j by
    ``s_j`` (``H_ij / (s_i s_j)``), rotation multiplies by ``R`` (``R^T H R``); kept channels
    are cut off later (``gptq.prepare_hessian``)."""
    h = h.to(torch.float64)
    if t.get(SMOOTH) is not None:
        inv = t[SMOOTH].reshape(-1).to(torch.float64)
        h = h * inv[:, None] * inv[None, :]
    if t.get(ROT) is not None:
        r = t[ROT].to(torch.float64)
        h = r.T @ h @ r
    return h


def plan_site(op: str, weights: list[torch.Tensor], stats: list[ChannelStats | None], cfg: QuantConfig,
              sites: list[str], names: list[str], recurrent: bool = False,
              smooth: list[torch.Tensor] | None = None) -> SitePlan:
    """Plan ``op`` ("linear"/"conv1d") for each direction's weight (``[out, in]`` / ``[O, C, K]``).

    ``recurrent``: the op reads a recurrent state (``W_hh h``), whose error is fed back every step,
    so ``cfg.recurrent_bits`` may keep it wider than the input projections (mixed int4/int8).
    ``smooth``: per direction, smoothing factors decided earlier (a fold into the producer, ``fold.py``)."""
    seen = all(s is not None and s.absmax is not None for s in stats)
    act = cfg.act if seen or cfg.act == "none" else "dynamic"
    int4 = named(cfg.int4_weights, [*names, *sites])
    if int4 or named(cfg.weight_only, [*names, *sites]):
        act = "none"  # mixed: this site's activations stay float (e.g. where no integer kernel is faster)
    elif act == "static" and named(cfg.dynamic, [*names, *sites]):
        act = "dynamic"  # mixed static/dynamic: e.g. an LSTM step onnxruntime fuses as DynamicQuantizeLSTM
    note = "" if seen else "never reached during calibration: no outlier treatment"
    plan = SitePlan(act=act)
    keep: list[int] = []
    treat = seen and act != "none"  # weight-only sites have no quantized activation to treat
    if cfg.outliers == "keep" and treat:
        keep = sorted({c for s in stats for c in detect_outliers(s, cfg.threshold, cfg.max_fraction)})
        if op == "conv1d" and keep and weights[0].shape[1] != stats[0].absmax.numel():
            keep = []  # grouped conv: channels do not map onto one weight column
    plan.n_keep = len(keep)
    grouped = op == "conv1d" and stats[0] is not None and stats[0].absmax is not None and \
        weights[0].shape[1] != stats[0].absmax.numel()  # input channels do not map onto weight columns
    plan.smooth = cfg.outliers == "smooth" and treat and not grouped
    if cfg.outliers == "smooth" and treat and grouped:
        note = (note + " grouped conv: not smoothed").strip()
    if plan.smooth and recurrent and smooth is None and \
            not any(detect_outliers(st, cfg.threshold, 1.0) for st in stats if st is not None):
        # a state-fed input is produced by the cell's own arithmetic, so its division can never be
        # folded away: smoothing it costs a run-time mul every step (and rules out the fused LSTM
        # kernel), so it is done only where the state has an outlier channel
        plan.smooth = False
        note = (note + " recurrent input without outlier channels: not smoothed").strip()
    rot_ok = op == "linear" and hadamard_block(weights[0].shape[1]) > 1
    plan.rotate = cfg.outliers == "rotate" and rot_ok
    if cfg.outliers == "rotate" and not rot_ok:
        note = "not rotated: conv or odd channel count"
    if plan.rotate and plan.act == "static":  # per-channel maxima say nothing about the rotated range
        plan.act, note = "dynamic", "rotated: dynamic activation scale"
    for d, (w, st, site, name) in enumerate(zip(weights, stats, sites, names, strict=True)):
        w = w.detach().to(torch.float32)
        t: dict[str, torch.Tensor] = {}
        ratio = float(st.outlier_ratio().max()) if st is not None and st.absmax is not None else 0.0
        if keep:
            idx = torch.tensor(keep, dtype=torch.int64)
            t[KEEP_IDX] = idx
            t[KEEP_W] = w.index_select(1, idx).contiguous()
            w = w.index_fill(1, idx, 0.0)  # those inputs reach the int product as zeros
        if plan.smooth:
            assert st is not None and st.absmax is not None
            s = smooth[d] if smooth is not None else smoothing_factors(st.absmax, w, cfg.alpha)
            w = w * s.view(1, -1, *([1] * (w.dim() - 2)))
            t[SMOOTH] = (1.0 / s).view(-1, *([1] * (w.dim() - 2)))
        if plan.rotate:
            r = random_hadamard(w.shape[1])
            w = w @ r
            t[ROT] = r
        bits = cfg.recurrent_bits if recurrent and cfg.recurrent_bits else cfg.wbits
        by_name = bool({name, site} & set(cfg.int8_weights) or any(n in cfg.int8_weights for n in names))
        if by_name:
            bits = 8  # mixed int4/int8 by name (every direction alike: one cell serves them all)
        if int4:
            bits, by_name = 4, True  # weight-only int4 by name, in any scheme
        # integer activations meet these codes: 7 bits keep the target's pair sums exact (int8dot.py)
        qbits = 7 if bits == 8 and plan.act != "none" and cfg.int8_format == "s7" else bits
        imp = None
        if cfg.mse_clip and st is not None and st.abssum is not None and op == "linear":
            imp = st.mean_abs.to(torch.float32) ** 2  # calibrated E|x_j|^2: how much input j's error matters
            if t.get(SMOOTH) is not None:
                imp = imp * t[SMOOTH].reshape(-1) ** 2
            if plan.rotate:
                imp = None  # rotated inputs mix channels: no per-channel statistics
        group8 = cfg.group8 if plan.act == "none" else 0  # int8 groups need MatMulNBits: weight-only
        h = st.hessian if cfg.gptq and op == "linear" and st is not None else None
        if h is not None and h.shape == (w.shape[1], w.shape[1]):
            h = _transformed_hessian(h, t)
            qw = gptq_quantize(w, h, qbits, cfg.group, group8, cfg.gptq_damp, cfg.mse_clip, t.get(KEEP_IDX),
                               cfg.gptq_act_order)
            how = " gptq"
        else:
            how = " gptq: no calibrated Hessian (conv or never reached), rounded to nearest" if cfg.gptq else ""
            qw = quantize_weight(w, qbits, cfg.group, cfg.per_tensor, cfg.mse_clip, group8, imp)
        t[Q], t[SCALE] = qw.q, qw.scale.to(torch.float32)
        cs = None
        if plan.act == "static":
            assert st is not None and st.absmax is not None
            if cfg.outliers == "clip":
                cs = clip_scale(st, cfg.percentile)  # outliers is one choice: clip never meets keep
                plan.clipped = True
            else:  # the calibrated max of what reaches the integer product (kept channels out, smoothed)
                cs = static_scale(st.absmax, keep, t.get(SMOOTH))
            t[XSCALE] = torch.tensor(cs, dtype=torch.float32)
        plan.tensors.append(t)
        plan.reports.append(SiteReport(
            site=site, op=op, weight=name, shape=tuple(w.shape), bits=qw.bits, group=qw.group, act=plan.act,
            kept=tuple(keep), max_ratio=ratio, smoothed=plan.smooth, rotated=plan.rotate, clip_scale=cs,
            fp_bytes=4 * w.numel(), q_bytes=qw.nbytes + sum(4 * v.numel() for k, v in t.items()
                                                             if k in (KEEP_W, SMOOTH, ROT)),
            note=(note + how).strip() + ("" if qw.bits == qbits else f" int{qw.bits}: shape unfit for int4 groups")
            + ("" if bits == cfg.wbits or qw.bits != bits else f" int{bits} by name" if by_name
               else f" recurrent: int{bits}")))
    return plan

