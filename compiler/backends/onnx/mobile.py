"""Export for a phone or edge execution provider, with the provider's own verdict on the result.

``export_mobile`` writes a streaming model (one fixed chunk in, state in, state out) in the ops
the provider of ``targets/providers/<name>.yaml`` takes: every shape fixed where it needs fixed
shapes, every recurrence written out over the chunk from the cell's step graph (NNAPI and
CoreML have no ``LSTM``/``GRU``/``Scan``), quantized ops as static QDQ where that is the
provider's int8 format, and ``legalize``'s exact rewrites (pads, constant gathers, 1-D convs).

Then it asks onnxruntime rather than trusting itself: ``coverage`` runs onnxruntime's mobile
usability checker as a library (the same partitioning it prints for ``python -m
onnxruntime.tools.check_onnx_model_mobile_usability``: basic optimizations first, then NNAPI's or
CoreML ML Program's op tables) -- or, for providers the checker does not know, the same
partitioning over the provider YAML's table.  ``write_ort`` converts the model to ``.ort`` with
onnxruntime's converter in the style onnxruntime recommends for the provider and writes the
reduced-build operator config beside it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pathlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from rnnc.errors import UserInputError
from rnnc.targets.providers import Provider, get_provider

#: below this share of nodes the provider can take, the export is reported as a problem
MIN_COVERAGE = 0.90


@dataclass(frozen=True)
class Coverage:
    """What an execution provider would take of a model, as onnxruntime's checker counts it."""

    provider: str
    nodes: int
    supported: int
    partitions: int
    verdict: str  # the checker's "Model should perform well with <EP> as is": YES | MAYBE | NO
    unsupported_ops: tuple[str, ...]
    dynamic_nodes: int  # nodes refused only because an input's shape is not fixed
    checker: str  # who counted: onnxruntime's checker or rnnc's table

    @property
    def fraction(self) -> float:
        return self.supported / self.nodes if self.nodes else 1.0

    def text(self) -> str:
        lacks = f"; unsupported: {', '.join(self.unsupported_ops)}" if self.unsupported_ops else ""
        dyn = f"; {self.dynamic_nodes} nodes refused for dynamic shapes" if self.dynamic_nodes else ""
        return (f"{self.supported}/{self.nodes} nodes ({100 * self.fraction:.1f} %) in {self.partitions} "
                f"partition{'s' if self.partitions != 1 else ''}, should perform well as is: {self.verdict} "
                f"[{self.checker}]{lacks}{dyn}")


@dataclass(frozen=True)
class MobileExport:
    """One export for a provider: the files written and the provider's verdict."""

    provider: Provider
    path: str
    coverage: Coverage
    rewrites: tuple[str, ...]
    ort_path: str | None = None
    config_path: str | None = None
    fixed_dims: dict[str, int] = field(default_factory=dict)

    @property
    def problem(self) -> str:
        """One sentence when the provider cannot take enough of the model ("" when it can).  A
        provider that shares the CPU (XNNPACK) is never judged: what it lacks runs on onnxruntime's
        CPU provider in the same memory."""
        c = self.coverage
        if c.fraction >= MIN_COVERAGE or self.provider.shares_cpu:
            return ""
        ops = ", ".join(c.unsupported_ops) or "none by op: shapes or ranks"
        return (f"{self.provider.name} can take only {100 * c.fraction:.0f} % of the nodes of {self.path} "
                f"({c.supported}/{c.nodes}); the ops it lacks: {ops}")

    def as_json(self) -> dict[str, Any]:
        c = self.coverage
        return {"provider": self.provider.tag, "path": self.path, "ort": self.ort_path, "config": self.config_path,
                "nodes": c.nodes, "supported": c.supported, "partitions": c.partitions, "verdict": c.verdict,
                "unsupported_ops": list(c.unsupported_ops), "checker": c.checker, "rewrites": list(self.rewrites),
                "fixed_dims": self.fixed_dims, "problem": self.problem}


def _checker_table(provider: Provider, tmp: pathlib.Path) -> pathlib.Path:
    """The provider's op table in the markdown form onnxruntime's checker reads."""
    path = tmp / f"{provider.short}_supported_ops.md"
    rows = "".join(f"|{op}|{note}|\n" for op, note in sorted(provider.ops.items()))
    path.write_text("|Operator|Note|\n|--------|------|\n" + rows, encoding="utf-8")
    return path


def coverage(path: str | os.PathLike, provider: str | Provider) -> Coverage:
    """The partitions ``provider`` would get for the model at ``path`` (see the module docstring)."""
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    p = get_provider(provider)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = pathlib.Path(tmp_dir)
        optimized = tmp / "basic.onnx"  # what the checker looks at: onnxruntime's basic optimizations first
        optimize_model(pathlib.Path(path), optimized)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        if p.checker == "nnapi":
            info, who = uc.check_nnapi_partitions(model, True), "onnxruntime usability checker (NNAPI)"
        elif p.checker == "coreml-mlprogram":
            info = uc.check_coreml_partitions(model, True, "coreml_supported_mlprogram_ops.md")
            who = "onnxruntime usability checker (CoreML MLProgram)"
        elif p.all_ops:
            n = len(model.graph.node)
            return Coverage(p.tag, n, n, 1 if n else 0, "YES", (), 0, f"every op ({p.path})")
        else:
            info = uc._check_ep_partitioning(model, _checker_table(p, tmp), p.fixed_shapes, p.max_rank)
            who = f"onnxruntime's partitioning over {os.path.basename(p.path)}"
    return Coverage(p.tag, info.num_nodes, info.num_supported_nodes, info.num_partitions, info.suitability().name,
                    tuple(sorted(info.unsupported_ops | info.ops_with_unsupported_rank)),
                    info.nodes_unsupported_due_to_dynamic_input, who)


def write_ort(path: str | os.PathLike, provider: str | Provider) -> tuple[str, str]:
    """``<model>.ort`` and its required-operators config beside ``path``, by onnxruntime's own
    converter in the provider's recommended optimization style; returns both paths."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    p = get_provider(provider)
    src = pathlib.Path(path).resolve()
    style = OptimizationStyle[p.ort_style]
    quiet = io.StringIO()
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # "Created config in ..."
    with contextlib.redirect_stdout(quiet):  # the converter prints progress lines of its own
        convert_onnx_models_to_ort(src, output_dir=src.parent, optimization_styles=[style],
                                   target_platform=p.ort_platform)
    suffix = ".with_runtime_opt" if style == OptimizationStyle.Runtime else ""
    ort_path = src.with_suffix(f"{suffix}.ort")
    config = src.with_suffix(f".required_operators{suffix}.config")
    if not ort_path.is_file() or not config.is_file():
        raise UserInputError(f"onnxruntime's converter did not write {ort_path.name} and {config.name}: "
                             f"{quiet.getvalue().strip()[-300:]}")
    return str(ort_path), str(config)


def export_mobile(model_or_program: Any, example_inputs: Sequence[Any] | Any, path: str | os.PathLike, *,
                  provider: str | Provider, opset: int | None = None, ort: bool = True,
                  target: Any = None) -> MobileExport:
    """Write ``path`` for ``provider`` (plus ``.ort`` and its operator config unless ``ort=False``)
    and return the report; ``example_inputs`` fix the chunk length (and the batch, where the
    provider takes fixed shapes only).  A quantized Program exports in the provider's int8 form."""
    from rnnc.backends.onnx.export import _as_tuple, as_program
    from rnnc.backends.onnx.model import check_opset, to_onnx
    from rnnc.backends.onnx.render import DEFAULT_OPSET

    p = get_provider(provider)
    opset = check_opset(opset or DEFAULT_OPSET)
    examples = _as_tuple(example_inputs)
    if examples is None:
        raise UserInputError(f"an export for {p.short} needs example inputs: their shapes fix the chunk length"
                             f"{' and the batch' if p.fixed_shapes else ''}")
    program = as_program(model_or_program, examples)
    directory = os.path.dirname(os.fspath(path))
    if directory and not os.path.isdir(directory):
        raise UserInputError(f"cannot write {path}: directory {directory} does not exist")
    model = to_onnx(program, opset=opset, example_inputs=examples, provider=p, target=target)
    onnx.save(model, os.fspath(path))
    meta = {m.key: m.value for m in model.metadata_props}
    fixed = json.loads(meta["rnnc.streaming"])["fixed_dims"]
    rewrites = tuple(json.loads(meta.get("rnnc.rewrites", "[]")))
    cov = coverage(path, p)
    ort_path = config = None
    if ort:
        ort_path, config = write_ort(path, p)
    return MobileExport(p, os.fspath(path), cov, rewrites, ort_path, config, fixed)
