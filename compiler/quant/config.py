"""What to quantize and how: the scheme, the outlier treatment, their knobs, and what came out.

Kept apart from the rewrite so the CLI can validate a command line (and say what is wrong)
before anything is loaded or calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rnnc.errors import UserInputError
from rnnc.targets.spec import INT8_FORMATS

#: scheme -> (weight bits, activations quantized)
SCHEMES: dict[str, tuple[int, bool]] = {"w8a8": (8, True), "w8": (8, False), "w4a8": (4, True), "w4": (4, False)}
OUTLIERS = ("none", "keep", "smooth", "rotate", "clip")
#: treatments that act on quantized activations only (weight-only schemes have none to treat)
_NEEDS_ACTS = ("keep", "smooth", "clip")
#: which cells quantize their (dynamic) input once per sequence: LSTMs by default -- they then run
#: as onnxruntime's fused DynamicQuantizeLSTM (2-4x fp32); other cells gain little from it (their
#: input GEMM is hoisted either way) and a per-step scale tracks varying inputs better (g2p: 0.981
#: per step vs 0.965 per sequence, benchmarks/quant_eval.py)
SEQUENCE_SCALE = ("lstm", "all", "none")


@dataclass(frozen=True)
class QuantConfig:
    """A quantization recipe; :meth:`check` explains any invalid combination."""

    scheme: str = "w8a8"
    outliers: str = "none"
    threshold: float = 8.0  # keep: channel max |x| / median channel max |x| above this is an outlier
    max_fraction: float = 0.05  # keep: at most this fraction of a site's channels stays float
    alpha: float = 0.5  # smooth: migration strength (0: none, 1: all onto the weights)
    percentile: float = 99.99  # clip: activation range = this percentile of |x|
    group: int = 32  # int4: inputs per scale group
    skip: tuple[str, ...] = ()  # weight names or site names left in float
    per_tensor: bool = False  # ablation: one weight scale per tensor (what naive int8 does)
    static: bool = False  # a8 schemes: calibrated (static) activation scales instead of per-call dynamic ones
    recurrent_bits: int = 0  # int4 schemes: weight bits of state-fed (recurrent) projections; 0 = the scheme's
    group8: int = 0  # int8 weights: 0 = one scale per output channel, else group-wise (MatMulNBits bits=8)
    mse_clip: bool = False  # int4: per-group scale searched for the least squared error instead of absmax
    weight_only: tuple[str, ...] = ()  # weight/site names (or dotted prefixes) whose activations stay float
    fold: bool = True  # smooth: fold the activation division into the producing linear/conv where legal
    min_weight: int = 0  # weights with fewer elements stay float: their int kernel costs more than it saves
    int8_weights: tuple[str, ...] = ()  # int4 schemes: weight or site names kept int8 (a sensitive output head)
    int4_weights: tuple[str, ...] = ()  # weight or site names stored as group-wise int4 with float activations
    gptq: bool = False  # linear weights rounded by GPTQ (calibrated input Hessians) instead of to nearest
    gptq_damp: float = 0.01  # gptq: fraction of the Hessian's mean diagonal added to it before inverting
    gptq_act_order: bool = False  # gptq: columns by decreasing input energy (group scales fixed up front)
    sequence_scale: str = "lstm"  # cells whose dynamic input takes one scale per sequence: lstm | all | none
    dynamic: tuple[str, ...] = ()  # static: weight/site names (or dotted prefixes) kept on per-call dynamic scales
    target: str = "cpu/host"  # the CPU the int8 model must be exact on (its YAML int8_dot entry)
    int8_format: str = ""  # s8 | s7 | u8 for weights meeting integer activations; "" = the target's format

    def check(self) -> QuantConfig:
        if self.scheme not in SCHEMES:
            raise UserInputError(f"unknown quantization scheme {self.scheme!r}; choose one of "
                                 f"{', '.join(SCHEMES)} or auto")
        if self.outliers not in OUTLIERS:
            raise UserInputError(f"unknown outlier treatment {self.outliers!r}; choose one of {', '.join(OUTLIERS)}")
        if self.outliers in _NEEDS_ACTS and not self.quant_acts:
            raise UserInputError(f"--outliers {self.outliers} treats quantized activations, but scheme {self.scheme} "
                                 f"keeps activations in float; use {self.scheme}a8 or --outliers none|rotate")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserInputError(f"smoothing alpha must be in [0, 1], got {self.alpha}")
        if not 50.0 < self.percentile <= 100.0:
            raise UserInputError(f"clip percentile must be in (50, 100], got {self.percentile}")
        if self.threshold <= 1.0 or not 0.0 < self.max_fraction < 1.0:
            raise UserInputError("outlier threshold must exceed 1 and max_fraction lie in (0, 1)")
        if self.static and not self.quant_acts:
            raise UserInputError(f"static activation scales need an a8 scheme, got {self.scheme}")
        if self.sequence_scale not in SEQUENCE_SCALE:
            raise UserInputError(f"sequence_scale must be one of {', '.join(SEQUENCE_SCALE)}, "
                                 f"got {self.sequence_scale!r}")
        if self.dynamic and not self.quant_acts:
            raise UserInputError(f"dynamic activation scales need an a8 scheme, got {self.scheme}")
        if self.group8 and (self.group8 < 16 or self.group8 & (self.group8 - 1)):
            raise UserInputError(f"int8 group size must be 0 (per channel) or a power of two >= 16, got {self.group8}")
        if self.recurrent_bits not in (0, 4, 8):
            raise UserInputError(f"recurrent_bits must be 0 (the scheme's), 4 or 8, got {self.recurrent_bits}")
        if both := sorted(set(self.int4_weights) & set(self.int8_weights)):
            raise UserInputError(f"weights named both int4 and int8: {both}")
        if self.gptq and self.per_tensor:
            raise UserInputError("gptq rounds into per-channel or group-wise scales; it does not combine with "
                                 "per_tensor (the naive-int8 ablation)")
        if not 0.0 < self.gptq_damp <= 1.0:
            raise UserInputError(f"gptq damping must be in (0, 1], got {self.gptq_damp}")
        if self.int8_format and self.int8_format not in INT8_FORMATS:
            raise UserInputError(f"int8 format must be one of {', '.join(INT8_FORMATS)} (or empty: the target's), "
                                 f"got {self.int8_format!r}")
        if self.group < 16 or self.group & (self.group - 1):
            raise UserInputError(f"int4 group size must be a power of two >= 16 (onnxruntime's block sizes), "
                                 f"got {self.group}")
        return self

    @property
    def wbits(self) -> int:
        return SCHEMES[self.scheme][0]

    @property
    def quant_acts(self) -> bool:
        return SCHEMES[self.scheme][1]

    @property
    def act(self) -> str:
        """The ``act`` attribute of the quantized ops."""
        if not self.quant_acts:
            return "none"
        return "static" if self.outliers == "clip" or self.static else "dynamic"

    @property
    def label(self) -> str:
        return (f"{self.scheme}/{self.outliers}" + ("/static" if self.static else "") + ("/gptq" if self.gptq else "")
                + (f"/{self.int8_format}" if self.quant_acts and self.int8_format else ""))


def named(entries: tuple[str, ...], names: tuple[str, ...] | list[str]) -> bool:
    """``names`` (a site's weight and site names) hit by ``entries``: equal, or an entry is a
    dotted/slashed prefix (``decoder.rnn`` names every weight of that layer)."""
    return any(n == e or n.startswith(e + ".") or n.startswith(e + "/") for e in entries for n in names)


@dataclass
class SiteReport:
    """What happened to one weight at one site (per layer and direction inside rnn nodes)."""

    site: str
    op: str
    weight: str
    shape: tuple[int, ...]
    bits: int
    group: int
    act: str
    kept: tuple[int, ...] = ()
    max_ratio: float = 0.0
    smoothed: bool = False
    rotated: bool = False
    clip_scale: float | None = None
    fp_bytes: int = 0
    q_bytes: int = 0
    note: str = ""


@dataclass
class QuantReport:
    """Every site, and the totals a user asks about first (size before and after)."""

    config: QuantConfig
    sites: list[SiteReport] = field(default_factory=list)

    @property
    def fp_bytes(self) -> int:
        return sum(s.fp_bytes for s in self.sites)

    @property
    def q_bytes(self) -> int:
        return sum(s.q_bytes for s in self.sites)

    def summary(self) -> str:
        kept = sum(len(s.kept) for s in self.sites)
        lines = [f"{self.config.label}: {len(self.sites)} weights quantized, {self.fp_bytes / 1024:.1f} KiB -> "
                 f"{self.q_bytes / 1024:.1f} KiB of matmul weights, {kept} activation channels kept in float"]
        for s in self.sites:
            extra = [f"kept {list(s.kept)}" if s.kept else "", "smoothed" if s.smoothed else "",
                     "rotated" if s.rotated else "", f"clip {s.clip_scale * 127:.3g}" if s.clip_scale else "", s.note]
            lines.append(f"  {s.site:<28} {s.op:<7} {'x'.join(map(str, s.shape)):<12} int{s.bits}"
                         f"{'/g' + str(s.group) if s.group else ''} act={s.act} max/median={s.max_ratio:.1f} "
                         + " ".join(e for e in extra if e))
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"scheme": self.config.scheme, "outliers": self.config.outliers, "fp_bytes": self.fp_bytes,
                "q_bytes": self.q_bytes, "sites": [{**s.__dict__, "shape": list(s.shape), "kept": list(s.kept)}
                                                   for s in self.sites]}


def for_provider(provider: str, scheme: str | None, options: dict) -> tuple[str, dict]:
    """The scheme and options that give the int8 form ``provider`` places (``targets/providers``):
    static activations everywhere for QDQ (NNAPI, QNN, XNNPACK: accelerators run no per-call
    scales; so ``static`` is set and per-sequence scales are off), int8 weights alone for
    ``weight_only`` (CoreML), and an Arm target with full 8-bit weights unless ``target`` /
    ``int8_format`` name others.  ``scheme`` None takes the provider's; a scheme it cannot run,
    group-wise scales or dynamic sites are refused in one sentence."""
    from rnnc.targets.providers import get_provider

    p = get_provider(provider)
    fmt = p.quant.format
    if fmt == "none":
        raise UserInputError(f"{p.name} runs float models only ({p.path}); export it without quantizing")
    want = "w8a8" if fmt == "qdq" else "w8"
    what = ("static int8 QDQ (calibrated activation scales, int8 weights per channel)" if fmt == "qdq"
            else "int8 weights with float activations")
    if scheme not in (None, want):
        raise UserInputError(f"{p.name} takes {what}: scheme {want}, not {scheme}")
    if options.get("group8") or options.get("dynamic"):
        raise UserInputError(f"{p.name} takes {what}; group-wise scales (group8) and dynamic sites do not export "
                             "for it")
    if fmt == "qdq":
        options = {**options, "static": True, "sequence_scale": "none"}
    # the provider's CPU is Arm (exact int8 dot products): weights keep all 8 bits
    options = {**options, "target": options.get("target") or "cpu/arm64-neon",
               "int8_format": options.get("int8_format") or "s8"}
    return want, options
