"""Hardware targets: one YAML file per device, loaded into frozen :class:`HardwareSpec`s.

Tags look like ``nvidia/h100-sxm`` or ``cpu/x86-avx512``; the file of tag ``a/b`` is
``targets/a-b.yaml`` and repeats its tag inside.  ``cpu/host`` is not a file: it is detected
from this machine when first asked for.  Anything that looks like a path (ends in ``.yaml`` or
``.yml``, or exists on disk) is loaded as a user-written target file, so ``--target
./my-gpu.yaml`` works wherever a tag does.

No torch, no backends: hardware is data (docs/design.md convention 4).
"""

from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path

import yaml

from rnnc.errors import UserInputError

from .host import base_tag, host_overrides
from .loader import load_file, parse
from .spec import DTYPE_BYTES, CpuSpec, GpuSpec, HardwareSpec, MmaShape

__all__ = [
    "DTYPE_BYTES",
    "CpuSpec",
    "GpuSpec",
    "HardwareSpec",
    "MmaShape",
    "get",
    "list_tags",
    "load_file",
    "shipped_files",
]

HOST_TAG = "cpu/host"
_DIR = Path(__file__).resolve().parent


def shipped_files() -> list[Path]:
    """Every YAML file shipped in the package, sorted."""
    return sorted(_DIR.glob("*.yaml"))


def _file_for(tag: str) -> Path:
    return _DIR / (tag.replace("/", "-") + ".yaml")


def list_tags() -> list[str]:
    """All known tags: the shipped files plus ``cpu/host``, sorted (GPUs first by vendor name)."""
    tags = [p.stem.replace("-", "/", 1) for p in shipped_files()]
    return sorted({*tags, HOST_TAG})


@functools.cache
def _load_shipped(tag: str) -> HardwareSpec:
    spec = load_file(_file_for(tag))
    if spec.tag != tag:
        raise UserInputError(f"{spec.path}: field 'tag' is {spec.tag!r} but the file name says {tag!r}.")
    return spec


@functools.lru_cache(maxsize=1)
def _load_host() -> HardwareSpec:
    path = _file_for(base_tag())
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return parse(data, f"{path} (cpu/host)", overrides=host_overrides)


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or os.path.isfile(name)


def get(tag: str | HardwareSpec) -> HardwareSpec:
    """The spec of ``tag`` (or of a YAML file path); unknown tags list close matches."""
    if isinstance(tag, HardwareSpec):
        return tag
    name = str(tag).strip()
    if _looks_like_path(name):
        return load_file(name)
    if name == HOST_TAG:
        return _load_host()
    if _file_for(name).is_file() and "/" in name:
        return _load_shipped(name)
    raise UserInputError(_unknown_message(name))


def _unknown_message(name: str) -> str:
    tags = list_tags()
    low = name.lower()
    close = [t for t in tags if low and (low in t or t.split("/")[-1] in low)]
    close += [t for t in difflib.get_close_matches(low, tags, n=3, cutoff=0.5) if t not in close]
    hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
    return (
        f"unknown target {name!r}{hint}; run `rnnc targets` to list all {len(tags)} targets, "
        "or pass the path of a target YAML file"
    )
