"""Read and validate one target YAML file into a :class:`HardwareSpec`.

Why hand-written validation instead of a schema library: the messages must be one sentence a
person can act on ("nvidia-t4.yaml: field 'gpu.sm_count' must be a positive integer, got -40"),
naming the file and the dotted field, and this package must stay dependency-light (pyyaml only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rnnc.errors import UserInputError

from .spec import DTYPE_BYTES, INT8_FORMATS, INT8_SEMANTICS, CpuSpec, GpuSpec, HardwareSpec, Int8Dot, MmaShape

# Binary units for on-chip sizes (what vendors mean by "64 KB shared memory"), decimal units for
# DRAM capacity as marketed ("80 GB HBM3").
_UNITS = {
    "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)\s*$")
_MMA_RE = re.compile(r"^m([0-9]+)n([0-9]+)k([0-9]+)$")
_TAG_RE = re.compile(r"^[a-z0-9]+/[a-z0-9][a-z0-9.\-]*$")


class _Reader:
    """Typed access to a YAML mapping that raises one-sentence errors naming file and field."""

    def __init__(self, path: str, data: dict[str, Any], prefix: str = "") -> None:
        self.path, self.data, self.prefix = path, data, prefix

    def fail(self, field: str, problem: str) -> UserInputError:
        return UserInputError(f"{self.path}: field '{self.prefix}{field}' {problem}.")

    def raw(self, field: str) -> Any:
        if field not in self.data or self.data[field] is None:
            raise self.fail(field, "is missing; every target file must set it (see targets/*.yaml)")
        return self.data[field]

    def str(self, field: str) -> str:
        value = self.raw(field)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"must be a non-empty string, got {value!r}")
        return value

    def int(self, field: str, minimum: int = 1) -> int:
        value = self.raw(field)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"must be an integer, got {value!r}")
        if value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self.fail(field, f"must be {kind}, got {value}")
        return value

    def float(self, field: str) -> float:
        value = self.raw(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"must be a number, got {value!r}")
        if value <= 0:
            raise self.fail(field, f"must be a positive number, got {value}")
        return float(value)

    def size(self, field: str, minimum: int = 1) -> int:
        """Bytes, written as an integer or as '64 KiB' / '50 MiB' / '80 GiB'."""
        value = self.raw(field)
        if isinstance(value, bool):
            raise self.fail(field, f"must be a size such as 65536 or '64 KiB', got {value!r}")
        if isinstance(value, int):
            nbytes = value
        elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
            nbytes = int(float(match.group(1)) * _UNITS[match.group(2)])
        else:
            raise self.fail(field, f"must be a size such as 65536 or '64 KiB', got {value!r}")
        if nbytes < minimum:
            raise self.fail(field, f"must be at least {minimum} bytes, got {value!r}")
        return nbytes

    def mapping(self, field: str) -> dict[str, Any]:
        value = self.raw(field)
        if not isinstance(value, dict) or not value:
            raise self.fail(field, f"must be a non-empty mapping, got {value!r}")
        return value

    def sub(self, field: str) -> _Reader:
        return _Reader(self.path, self.mapping(field), f"{self.prefix}{field}.")

    def dtypes(self, field: str) -> tuple[str, ...]:
        value = self.raw(field)
        if not isinstance(value, list) or not value:
            raise self.fail(field, f"must be a non-empty list of dtypes, got {value!r}")
        for item in value:
            if item not in DTYPE_BYTES:
                raise self.fail(field, f"has unknown dtype {item!r}; known: {', '.join(DTYPE_BYTES)}")
        return tuple(value)

    def tflops(self, field: str) -> tuple[tuple[str, float], ...]:
        sub = self.sub(field)
        for name in sub.data:
            if name not in DTYPE_BYTES:
                raise sub.fail(name, f"is not a dtype; known: {', '.join(DTYPE_BYTES)}")
        return tuple(sorted((name, sub.float(name)) for name in sub.data))

    def mma(self, field: str) -> tuple[tuple[str, tuple[MmaShape, ...]], ...]:
        value = self.raw(field)
        if not isinstance(value, dict):
            raise self.fail(field, f"must be a mapping from dtype to shapes like [m16n8k16], got {value!r}")
        out = []
        for name, shapes in value.items():
            if name not in DTYPE_BYTES:
                raise self.fail(f"{field}.{name}", f"is not a dtype; known: {', '.join(DTYPE_BYTES)}")
            if not isinstance(shapes, list) or not shapes:
                raise self.fail(f"{field}.{name}", f"must be a list of shapes like m16n8k16, got {shapes!r}")
            parsed = []
            for shape in shapes:
                match = _MMA_RE.match(str(shape))
                if not match:
                    raise self.fail(f"{field}.{name}", f"has shape {shape!r}, expected the form m16n8k16")
                parsed.append(MmaShape(*(int(g) for g in match.groups())))
            out.append((name, tuple(parsed)))
        return tuple(sorted(out))

    def strings(self, field: str, optional: bool = True) -> tuple[str, ...]:
        if optional and self.data.get(field) is None:
            return ()
        value = self.raw(field)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(field, f"must be a list of strings, got {value!r}")
        return tuple(value)


def _gpu(r: _Reader) -> GpuSpec:
    cc = r.raw("compute_capability")
    if not (isinstance(cc, list) and len(cc) == 2 and all(isinstance(v, int) and v >= 0 for v in cc)):
        raise r.fail("compute_capability", f"must be [major, minor] such as [9, 0], got {cc!r}")
    spec = GpuSpec(
        compute_capability=(cc[0], cc[1]),
        sm_count=r.int("sm_count"),
        warp_size=r.int("warp_size"),
        max_threads_per_block=r.int("max_threads_per_block"),
        max_threads_per_sm=r.int("max_threads_per_sm"),
        max_blocks_per_sm=r.int("max_blocks_per_sm"),
        registers_per_sm=r.int("registers_per_sm"),
        registers_per_block=r.int("registers_per_block"),
        registers_per_thread=r.int("registers_per_thread"),
        register_allocation_unit=r.int("register_allocation_unit"),
        shared_memory_per_sm_bytes=r.size("shared_memory_per_sm"),
        shared_memory_per_block_bytes=r.size("shared_memory_per_block"),
        shared_memory_per_block_optin_bytes=r.size("shared_memory_per_block_optin"),
        shared_memory_reserved_per_block_bytes=r.size("shared_memory_reserved_per_block", minimum=0),
        l1_shared_per_sm_bytes=r.size("l1_shared_per_sm"),
        l2_bytes=r.size("l2"),
        schedulers_per_sm=r.int("schedulers_per_sm"),
        shared_memory_bytes_per_clock=r.int("shared_memory_bytes_per_clock"),
        dram_latency_cycles=r.int("dram_latency_cycles"),
        grid_sync_us=r.float("grid_sync_us"),
        mma_shapes=r.mma("mma_shapes"),
    )
    if spec.shared_memory_per_block_optin_bytes > spec.shared_memory_per_sm_bytes:
        raise r.fail("shared_memory_per_block_optin", "must not exceed shared_memory_per_sm")
    if spec.registers_per_block > spec.registers_per_sm:
        raise r.fail("registers_per_block", "must not exceed registers_per_sm")
    return spec


def _cpu(r: _Reader) -> CpuSpec:
    return CpuSpec(
        isa=r.str("isa"),
        vector_extension=r.str("vector_extension"),
        vector_width_bits=r.int("vector_width_bits"),
        vector_registers=r.int("vector_registers"),
        fma_units_per_core=r.int("fma_units_per_core"),
        fma_latency_cycles=r.int("fma_latency_cycles"),
        cores=r.int("cores"),
        l1d_bytes=r.size("l1d"),
        l2_bytes=r.size("l2"),
        l3_bytes=r.size("l3", minimum=0),
        cache_line_bytes=r.int("cache_line_bytes"),
        l2_bytes_per_cycle=r.int("l2_bytes_per_cycle"),
        int8_dot=_int8_dot(r),
        march=str(r.data.get("march") or "native"),
        isa_flags=r.strings("isa_flags"),
    )


def _int8_dot(r: _Reader) -> Int8Dot:
    """The ``cpu.int8_dot`` entry: required, because a wrong guess ships wrong int8 models."""
    d = r.sub("int8_dot")
    semantics, fmt = d.str("semantics"), d.str("format")
    if semantics not in INT8_SEMANTICS:
        raise d.fail("semantics", f"must be one of {', '.join(INT8_SEMANTICS)}, got {semantics!r}")
    if fmt not in INT8_FORMATS:
        raise d.fail("format", f"must be one of {', '.join(INT8_FORMATS)}, got {fmt!r}")
    if semantics == "saturating_pairs" and fmt == "s8":
        raise d.fail("format", "s8 overflows a saturating pair sum (255 * 127 * 2 > 32767); use s7 or u8")
    source = str(d.data.get("source") or f"targets/{Path(r.path.split(' ')[0]).name}")
    return Int8Dot(d.str("instruction"), semantics, fmt, source)


def parse(data: Any, path: str, overrides: Callable[[dict[str, Any]], None] | None = None) -> HardwareSpec:
    """Validate an already-parsed YAML document; ``overrides`` may patch it first (cpu/host)."""
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: a target file must be a YAML mapping of fields, got {type(data).__name__}.")
    if overrides is not None:
        overrides(data)
    r = _Reader(path, data)
    tag = r.str("tag")
    if not _TAG_RE.match(tag):
        raise r.fail("tag", f"must look like 'vendor/device' in lower case, got {tag!r}")
    kind = r.str("kind")
    if kind not in ("gpu", "cpu"):
        raise r.fail("kind", f"must be 'gpu' or 'cpu', got {kind!r}")
    other = "cpu" if kind == "gpu" else "gpu"
    if data.get(other) is not None:
        raise r.fail(other, f"must not be set in a {kind} target")
    sources = r.mapping("sources")
    spec = HardwareSpec(
        tag=tag,
        name=r.str("name"),
        vendor=r.str("vendor"),
        kind=kind,
        architecture=r.str("architecture"),
        clock_mhz=r.int("clock_mhz"),
        memory_bytes=r.size("memory"),
        memory_bandwidth_gbs=r.float("memory_bandwidth_gbs"),
        dtypes=r.dtypes("dtypes"),
        peak_tflops=r.tflops("peak_tflops"),
        gpu=_gpu(r.sub("gpu")) if kind == "gpu" else None,
        cpu=_cpu(r.sub("cpu")) if kind == "cpu" else None,
        sources=tuple(sorted((str(k), str(v)) for k, v in sources.items())),
        notes=r.strings("notes"),
        path=path,
        companion_cpu=str(data.get("companion_cpu") or ""),
    )
    for dtype, _ in spec.peak_tflops:
        if dtype not in spec.dtypes:
            raise r.fail(f"peak_tflops.{dtype}", "names a dtype that is not in 'dtypes'")
    return spec


def read_yaml(path: str | Path, what: str = "target") -> Any:
    """The YAML document of a ``what`` file (target or provider); one sentence naming the file
    when it is missing, unreadable or not YAML (with the line where the parser stopped)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"{p}: {what} file not found.") from None
    except OSError as exc:
        raise UserInputError(f"{p}: cannot read {what} file ({exc.strerror}).") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserInputError(f"{p}: not valid YAML{where}; fix the syntax and retry.") from None


def load_file(path: str | Path) -> HardwareSpec:
    """Load and validate one target YAML file (shipped or user-written)."""
    return parse(read_yaml(path), str(path))
