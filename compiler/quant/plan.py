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
from rnnc.quant.config import QuantConfig, SiteReport
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
    tensors: list[dict[str, torch.Tensor]] = field(default_factory=list)  # one dict per direction
    reports: list[SiteReport] = field(default_factory=list)


def plan_site(op: str, weights: list[torch.Tensor], stats: list[ChannelStats | None], cfg: QuantConfig,
              sites: list[str], names: list[str]) -> SitePlan:
    """Plan ``op`` ("linear"/"conv1d") for each direction's weight (``[out, in]`` / ``[O, C, K]``)."""
    seen = all(s is not None and s.absmax is not None for s in stats)
    act = cfg.act if seen or cfg.act == "none" else "dynamic"
    note = "" if seen else "never reached during calibration: no outlier treatment"
    plan = SitePlan(act=act)
    keep: list[int] = []
    if cfg.outliers == "keep" and seen:
        keep = sorted({c for s in stats for c in detect_outliers(s, cfg.threshold, cfg.max_fraction)})
        if op == "conv1d" and keep and weights[0].shape[1] * 1 != stats[0].absmax.numel():
            keep = []  # grouped conv: channels do not map onto one weight column
    plan.n_keep = len(keep)
    plan.smooth = cfg.outliers == "smooth" and seen
    rot_ok = op == "linear" and hadamard_block(weights[0].shape[1]) > 1
    plan.rotate = cfg.outliers == "rotate" and rot_ok
    if cfg.outliers == "rotate" and not rot_ok:
        note = "not rotated: conv or odd channel count"
    for w, st, site, name in zip(weights, stats, sites, names, strict=True):
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
            s = smoothing_factors(st.absmax, w, cfg.alpha)
            w = w * s.view(1, -1, *([1] * (w.dim() - 2)))
            t[SMOOTH] = (1.0 / s).view(-1, *([1] * (w.dim() - 2)))
        if plan.rotate:
            r = random_hadamard(w.shape[1])
            w = w @ r
            t[ROT] = r
        qw = quantize_weight(w, cfg.wbits, cfg.group, cfg.per_tensor)
        t[Q], t[SCALE] = qw.q, qw.scale.to(torch.float32)
        cs = None
        if act == "static":
            assert st is not None
            cs = clip_scale(st, cfg.percentile)  # outliers is one choice: clip never meets keep
            t[XSCALE] = torch.tensor(cs, dtype=torch.float32)
        plan.tensors.append(t)
        plan.reports.append(SiteReport(
            site=site, op=op, weight=name, shape=tuple(w.shape), bits=qw.bits, group=qw.group, act=act,
            kept=tuple(keep), max_ratio=ratio, smoothed=plan.smooth, rotated=plan.rotate, clip_scale=cs,
            fp_bytes=4 * w.numel(), q_bytes=qw.nbytes + sum(4 * v.numel() for k, v in t.items()
                                                             if k in (KEEP_W, SMOOTH, ROT)),
            note=note + ("" if qw.bits == cfg.wbits else " int8: shape unfit for int4 groups")))
    return plan

