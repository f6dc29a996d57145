"""Outlier-aware post-training quantization of rnnc Programs (Mamba-PTQ style).

``rnnc.quantize(model_or_program, calibration_data, scheme="w8a8", outliers="keep")`` runs the
interpreter on the calibration data (``calibrate``), records per-channel statistics of every
activation feeding a ``linear``/``conv1d`` (inside cells at every time step too), plans each
site (``plan``: weights, outlier treatment) and rewrites the Program (``rewrite``) into
``qlinear``/``qconv1d`` nodes that the interpreter runs and the ONNX backend renders with
integer kernels (``rnnc.backends.onnx.quant_ops``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rnnc.errors import UserInputError
from rnnc.ir import Program
from rnnc.quant.calibrate import ChannelStats, Stats, calibrate
from rnnc.quant.config import OUTLIERS, SCHEMES, QuantConfig, QuantReport, SiteReport, for_provider
from rnnc.quant.data import calibration_batches
from rnnc.quant.rewrite import quantize_program
from rnnc.targets.int8dot import weight_format
from rnnc.targets.providers import get_provider


@dataclass(frozen=True)
class QuantizedModel:
    """The quantized Program, what was done to each weight, and the calibration statistics."""

    program: Program
    report: QuantReport
    stats: Stats
    target: str = "cpu/host"  # the CPU whose integer dot product the weights were made exact for
    auto: Any = None  # scheme="auto": the search's AutoReport (sensitivities, plans tried, Pareto front)
    provider: str | None = None  # quantize(provider=): the execution provider whose int8 form it has

    def run(self, *inputs: Any) -> Any:
        """The quantized Program in the reference interpreter."""
        return self.program.run(*inputs)

    def export_onnx(self, path: Any = None, **kwargs: Any) -> Any:
        """ONNX with integer kernels (see ``rnnc.export_onnx`` for the options), exact on the
        quantization target unless ``target=`` names another CPU."""
        from rnnc.backends.onnx import export_onnx

        kwargs.setdefault("target", self.target)
        return export_onnx(self.program, None, path, **kwargs)

    def export_mobile(self, path: Any, example_inputs: Any, provider: str | None = None, **kwargs: Any) -> Any:
        """A streaming model for a phone's execution provider (``rnnc.export_mobile``); ``provider``
        defaults to the one this model was quantized for (``quantize(..., provider=)``)."""
        from rnnc.backends.onnx.mobile import export_mobile

        if provider is None and self.provider is None:
            raise UserInputError("export_mobile needs provider= (this model was not quantized for one)")
        kwargs.setdefault("target", self.target)  # the CPU its integer weights were made exact for
        return export_mobile(self.program, example_inputs, path, provider=provider or self.provider, **kwargs)


def _as_program(model_or_program: Any, batches_source: Any, example_inputs: Any) -> Program:
    if isinstance(model_or_program, Program):
        return model_or_program
    if example_inputs is None:
        first = batches_source[0] if isinstance(batches_source, (list, tuple)) and batches_source else None
        if first is None or isinstance(first, dict):
            raise UserInputError("quantizing a torch model needs example_inputs to trace it with")
        example_inputs = first if isinstance(first, (tuple, list)) else (first,)
    from rnnc.frontend import trace

    return trace(model_or_program, tuple(example_inputs))


def quantize(model_or_program: Any, calibration_data: Any, scheme: str | None = None, outliers: str | None = None, *,
             example_inputs: Any = None, progress: bool = True, stats: Stats | None = None,
             max_loss: float = 0.01, validation: Any = None, metric: Any = None, provider: str | None = None,
             measure: bool | None = None, **options: Any) -> QuantizedModel:
    """Calibrate and quantize.  ``options`` are :class:`QuantConfig` knobs (``threshold``,
    ``max_fraction``, ``alpha``, ``percentile``, ``group``, ``skip``; for speed and accuracy:
    ``static`` calibrated activation scales (int8 conv chains in ONNX), ``weight_only`` and
    ``min_weight`` per-site mixed precision, ``recurrent_bits`` int8 recurrent weights in int4
    schemes, ``int8_weights`` int8 by name in int4 schemes, ``group8`` group-wise int8, ``mse_clip``
    error-minimising int4 scales, ``fold`` SmoothQuant folded into the producer, ``gptq`` (with
    ``gptq_damp``, ``gptq_act_order``) error-compensating rounding of linear weights from
    calibrated input Hessians), ``sequence_scale`` ("lstm" | "all" | "none": cells whose dynamic input
    takes one scale per sequence -- an LSTM then exports as onnxruntime's DynamicQuantizeLSTM),
    ``dynamic`` sites kept on dynamic scales under ``static``); passing ``stats`` from an earlier run
    skips calibration (comparing treatments on one model calibrates once) unless ``gptq`` needs
    Hessians those stats lack.

    ``scheme="auto"`` searches per-site precision (static or dynamic int8 activations, weight-only
    int8 or int4, fp16, float), the outlier treatment (none, smooth, keep, clip, rotate; ``outliers``
    fixes one), GPTQ rounding (``gptq`` fixes it) and per-sequence scales for the fastest plan (timed
    in onnxruntime for ``cpu/host``; ``measure=False`` or another target: predicted from the target's
    data, ``rnnc.quant.latency``) whose loss on held-out calibration batches (or ``validation``) is at most
    ``max_loss`` by ``metric(float_outputs, quantized_outputs)`` (default: relative L2
    distortion); ``QuantizedModel.auto`` reports it, and ``BudgetError`` says when no plan can
    (``rnnc.quant.auto``).

    ``target`` (default ``cpu/host``) is the CPU the model must be exact on: where its int8 dot
    product saturates pair sums (x86 without VNNI), weights that meet integer activations get 7-bit
    codes (``int8_format="s7"``); ``int8_format="s8"`` keeps 8 bits (exported as u8 x u8 there: exact,
    slower).  ``targets/<tag>.yaml``'s ``int8_dot`` entry decides the default.

    ``provider`` (``nnapi``, ``coreml``, ``qnn``, ``xnnpack``, ``ort-mobile``; ``targets/providers``):
    the int8 form that phone execution provider places -- static QDQ or weight-only int8 --
    (``scheme`` None or the one it takes, or ``"auto"``: the budgeted per-site search over the
    provider's forms); export with ``QuantizedModel.export_mobile``.
    Without a provider ``scheme`` None is ``"w8a8"``."""
    unknown = set(options) - {f for f in QuantConfig.__dataclass_fields__ if f not in ("scheme", "outliers")}
    if unknown:
        raise UserInputError(f"unknown quantization options {sorted(unknown)}")
    if provider is not None:  # the int8 form a phone's accelerator places (quant.config.for_provider)
        auto = scheme == "auto"
        scheme, options = for_provider(provider, None if auto else scheme, options)
        QuantConfig(scheme, outliers or "none", **options).check()  # as the CLI checks it, auto or not
        if auto:  # the budgeted search over the provider's forms: QDQ int8 / weight-only / float per site
            from rnnc.quant.auto import auto_quantize

            program = _as_program(model_or_program, calibration_data, example_inputs)
            levels = ("int8-static", "weight-only", "float") if scheme == "w8a8" else ("weight-only", "float")
            (qprogram, report, stats), search = auto_quantize(
                program, calibration_data, max_loss, validation=validation, metric=metric, outliers=outliers,
                progress=progress, levels=levels, measure=measure, int4=False, predict=False, **options)
            return QuantizedModel(qprogram, report, stats, options["target"], search, get_provider(provider).tag)
        cfg = QuantConfig(scheme, outliers or "none", **options).check()
        program = _as_program(model_or_program, calibration_data, example_inputs)
        if stats is None:
            stats = calibrate(program, calibration_batches(program, calibration_data), progress=progress)
        qprogram, report = quantize_program(program, stats, cfg)
        return QuantizedModel(qprogram, report, stats, cfg.target, provider=get_provider(provider).tag)
    scheme = scheme or "w8a8"
    if scheme == "auto":  # per-site mixed precision searched under an accuracy budget (quant/auto.py)
        from rnnc.quant.auto import auto_quantize

        _, fmt = weight_format(options.get("target", "cpu/host"), options.get("int8_format", ""))
        program = _as_program(model_or_program, calibration_data, example_inputs)
        (qprogram, report, stats), auto = auto_quantize(
            program, calibration_data, max_loss, validation=validation, metric=metric, outliers=outliers,
            progress=progress, measure=measure, **{**options, "int8_format": fmt})
        return QuantizedModel(qprogram, report, stats, options.get("target", "cpu/host"), auto)
    cfg = QuantConfig(scheme, outliers or "none", **options).check()
    _, fmt = weight_format(cfg.target, cfg.int8_format)  # before calibrating: a bad target costs nothing
    cfg = replace(cfg, int8_format=fmt)
    program = _as_program(model_or_program, calibration_data, example_inputs)
    if stats is None or (cfg.gptq and not any(s.hessian is not None for s in stats.values())):
        stats = calibrate(program, calibration_batches(program, calibration_data), progress=progress,
                          hessian=cfg.gptq)
    qprogram, report = quantize_program(program, stats, cfg)
    return QuantizedModel(qprogram, report, stats, cfg.target)


__all__ = ["OUTLIERS", "SCHEMES", "ChannelStats", "QuantConfig", "QuantReport", "QuantizedModel", "SiteReport",
           "calibrate", "calibration_batches", "quantize", "quantize_program"]
