"""Mobile and edge execution providers as data: ``targets/providers/<name>.yaml``.

A device YAML (``targets/*.yaml``) says what a chip has; a provider YAML says what an
onnxruntime execution provider *takes*: its op table (copied from onnxruntime's own support
tables, with their caveats), whether shapes must be fixed, the largest rank, which conv and pad
forms it runs, the int8 format its quantized kernels place (static QDQ, weight-only storage, or
none), and how onnxruntime recommends converting models to ``.ort`` for it.  ``rnnc export
--for TAG`` reads it to decide how to write recurrences and which rewrites to apply
(``rnnc.backends.onnx.mobile``), and checks the result against the same table.

Tags are ``ep/<name>``; the bare name (``nnapi``) works too.  No onnx or torch here: hardware
and providers are data (docs/design.md).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rnnc.errors import UserInputError

from .loader import read_yaml

_DIR = Path(__file__).resolve().parent / "providers"
CHECKERS = ("nnapi", "coreml-mlprogram", "table")
QUANT_FORMATS = ("qdq", "weight_only", "none")
ORT_STYLES = ("Fixed", "Runtime")


@dataclass(frozen=True)
class ProviderQuant:
    """The int8 form the provider's quantized kernels place: ``qdq`` (QuantizeLinear and
    DequantizeLinear around float ops, static scales), ``weight_only`` (int8 weights widened at
    load, float compute) or ``none`` (float only)."""

    format: str
    activations: str
    weights: str


@dataclass(frozen=True)
class Provider:
    """One execution provider's constraints (see the module docstring)."""

    tag: str
    name: str
    provider: str
    checker: str
    fixed_shapes: bool
    shares_cpu: bool  # runs on the CPU in onnxruntime's memory: a fallback node costs no device copy
    max_rank: int
    conv_spatial_dims: tuple[int, ...]
    pad_modes: tuple[str, ...]
    quant: ProviderQuant
    ort_style: str
    ort_platform: str
    ops: Mapping[str, str]  # "domain:Op" -> onnxruntime's caveat ("" for none); empty with all_ops
    all_ops: bool  # every op of onnxruntime's CPU kernels (the ORT Mobile CPU provider)
    path: str

    @property
    def short(self) -> str:
        """The name ``--for`` takes (``nnapi`` for ``ep/nnapi``)."""
        return self.tag.split("/", 1)[1]

    def supports(self, op_type: str, domain: str = "") -> bool:
        """Whether the provider's table lists ``op_type`` (in ``domain``, default ai.onnx)."""
        return self.all_ops or f"{domain or 'ai.onnx'}:{op_type}" in self.ops


def provider_files() -> list[Path]:
    """The shipped provider YAML files, sorted."""
    return sorted(_DIR.glob("*.yaml"))


def provider_tags() -> list[str]:
    """``ep/<name>`` of every shipped provider."""
    return [f"ep/{p.stem}" for p in provider_files()]


def _fail(path: str, field: str, problem: str) -> UserInputError:
    return UserInputError(f"{path}: field '{field}' {problem}.")


def _get(data: Mapping[str, Any], path: str, field: str, kind: type | tuple[type, ...]) -> Any:
    value = data
    for part in field.split("."):
        if not isinstance(value, Mapping) or value.get(part) is None:
            raise _fail(path, field, "is missing; every provider file must set it (see targets/providers/*.yaml)")
        value = value[part]
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise _fail(path, field, f"has the wrong type ({type(value).__name__})")
    return value


def _choice(data: Mapping[str, Any], path: str, field: str, allowed: tuple[str, ...]) -> str:
    value = _get(data, path, field, str)
    if value not in allowed:
        raise _fail(path, field, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def parse(data: Any, path: str) -> Provider:
    """Validate one provider mapping; every problem is one sentence naming the file and field."""
    if not isinstance(data, Mapping):
        raise UserInputError(f"{path}: a provider file must be a YAML mapping")
    ops = data.get("ops")
    all_ops = ops == "all"
    if not all_ops and (not isinstance(ops, Mapping) or not ops):
        raise _fail(path, "ops", "must map 'domain:Op' to onnxruntime's note, or be 'all'")
    for key in ({} if all_ops else ops):
        if not isinstance(key, str) or ":" not in key:
            raise _fail(path, f"ops.{key}", "must be written 'domain:Op' (e.g. 'ai.onnx:MatMul')")
    dims = tuple(_get(data, path, "conv_spatial_dims", list))
    if not all(d in (1, 2, 3) for d in dims):
        raise _fail(path, "conv_spatial_dims", f"must list spatial ranks 1, 2 or 3, got {list(dims)}")
    tag = _get(data, path, "tag", str)
    if not tag.startswith("ep/"):
        raise _fail(path, "tag", f"must start with 'ep/', got {tag!r}")
    return Provider(
        tag=tag, name=_get(data, path, "name", str), provider=_get(data, path, "provider", str),
        checker=_choice(data, path, "checker", CHECKERS), fixed_shapes=_get(data, path, "fixed_shapes", bool),
        shares_cpu=_get(data, path, "shares_cpu", bool),
        max_rank=_get(data, path, "max_rank", int), conv_spatial_dims=dims,
        pad_modes=tuple(_get(data, path, "pad_modes", list)),
        quant=ProviderQuant(_choice(data, path, "quantization.format", QUANT_FORMATS),
                            _choice(data, path, "quantization.activations", ("uint8", "int8", "float32")),
                            _choice(data, path, "quantization.weights", ("uint8", "int8"))),
        ort_style=_choice(data, path, "ort_format.optimization_style", ORT_STYLES),
        ort_platform=_choice(data, path, "ort_format.target_platform", ("arm", "amd64")),
        ops=MappingProxyType({} if all_ops else {str(k): str(v or "") for k, v in ops.items()}),
        all_ops=all_ops, path=path)


def load_provider_file(path: str | Path) -> Provider:
    """Load and validate one provider YAML file (shipped or user-written)."""
    return parse(read_yaml(path, "provider"), str(path))


@functools.cache
def _shipped(tag: str) -> Provider:
    spec = load_provider_file(_DIR / f"{tag.split('/', 1)[1]}.yaml")
    if spec.tag != tag:
        raise UserInputError(f"{spec.path}: field 'tag' is {spec.tag!r} but the file name says {tag!r}.")
    return spec


def get_provider(name: str | Provider) -> Provider:
    """The provider of ``name`` (``nnapi``, ``ep/nnapi`` or a YAML path); unknown names list
    the shipped ones and the closest match."""
    if isinstance(name, Provider):
        return name
    if name.endswith((".yaml", ".yml")):
        return load_provider_file(name)
    tag = name if name.startswith("ep/") else f"ep/{name}"
    if tag in provider_tags():
        return _shipped(tag)
    short = [t.split("/", 1)[1] for t in provider_tags()]
    close = difflib.get_close_matches(name.removeprefix("ep/"), short, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserInputError(f"unknown execution provider {name!r}{hint}; rnnc knows {', '.join(short)} "
                         f"(targets/providers/*.yaml), or pass a provider YAML file")
