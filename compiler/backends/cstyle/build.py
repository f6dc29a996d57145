"""Building rendered sources: gcc into cached shared libraries, nvcc into cubins with resources.

Shared libraries are cached under ``$RNNC_CACHE_DIR`` (default ``<repo>/.cache/rnnc/cstyle``,
git-ignored) keyed by the sha256 of the source and the compiler command, so a test suite or a
benchmark builds each distinct kernel once.  nvcc is only asked for ``-cubin --resource-usage``:
this machine has no GPU, and what we want from it is the register / shared memory / spill
report that the Schedule's predictions are checked against.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnc.errors import RnncError, UnsupportedError

#: ``-mtune=generic``: with the host tuning (gcc 12 reads Zen 5 as znver3) gcc folds every weight
#: load into its FMA, so a 4-row register tile issues 20 loads per 16 FMAs and is load-bound; the
#: generic tuning loads each weight vector once into a register (LSTM B=16 H=512: -13% per step)
C_FLAGS = ("-O3", "-march=native", "-mtune=generic", "-fopenmp", "-ffast-math", "-fPIC", "-shared", "-std=gnu11")
_LOADED: dict[str, ctypes.CDLL] = {}


def c_flags(target: Any = None) -> tuple[str, ...]:
    """gcc flags for the kernels of ``target``: its own ``-march`` (``cpu/x86-avx2`` ->
    ``x86-64-v3``) when this machine can run that code, so a target's kernels are built -- and
    measured -- as that CPU would run them (AVX2 code on an AVX-512 host); ``-march=native``
    for ``cpu/host``, GPU targets (their C twin is a numerics check) and ISAs this machine cannot
    execute (the same twin: numerics here, not the target's speed)."""
    from rnnc.targets.host import can_run

    cpu = getattr(target, "cpu", None)
    if cpu is None or cpu.march == "native" or not can_run(cpu)[0]:
        return C_FLAGS
    return tuple(f"-march={cpu.march}" if f == "-march=native" else f for f in C_FLAGS)


def cache_dir() -> Path:
    env = os.environ.get("RNNC_CACHE_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / ".cache" / "rnnc"
    path = root / "cstyle"
    path.mkdir(parents=True, exist_ok=True)
    return path


#: how a library is built, beyond its flags (part of the cache key): compiled with ``flags``, then
#: linked without ``-ffast-math`` -- gcc otherwise links crtfastmath.o, whose constructor turns on
#: flush-to-zero for the whole process the moment the library loads (every later torch op in the
#: user's program would flush denormals); the kernels flush inside their own threads instead
BUILD = "compile-then-link-v2"


def source_key(source: str, flags: tuple[str, ...]) -> str:
    return hashlib.sha256((source + "\0" + " ".join(flags) + "\0" + BUILD).encode()).hexdigest()[:24]


def build_c(source: str, flags: tuple[str, ...] = C_FLAGS) -> Path:
    """Compile ``source`` with gcc into a cached ``.so``; returns its path."""
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if cc is None:
        raise UnsupportedError("the C backend needs gcc on PATH (or CC set to a C compiler)")
    key = source_key(source, flags)
    out = cache_dir() / f"k_{key}.so"
    if out.exists():
        return out
    src = cache_dir() / f"k_{key}.c"
    src.write_text(source)
    with tempfile.NamedTemporaryFile(dir=cache_dir(), suffix=".so", delete=False) as tmp:
        tmp_path = tmp.name
    obj = f"{tmp_path}.o"
    compile_flags = [f for f in flags if f != "-shared"]
    link_flags = [f for f in flags if f in ("-shared", "-fopenmp") or f.startswith("-march")]
    proc = subprocess.run([cc, *compile_flags, "-c", str(src), "-o", obj], capture_output=True, text=True)
    if proc.returncode == 0:
        proc = subprocess.run([cc, *link_flags, obj, "-o", tmp_path, "-lm"], capture_output=True, text=True)
    if os.path.exists(obj):
        os.unlink(obj)
    if proc.returncode != 0:
        os.unlink(tmp_path)
        raise RnncError(f"gcc failed on generated source {src} (a bug in rnnc's C renderer):\n{proc.stderr[-2000:]}")
    os.replace(tmp_path, out)  # atomic: concurrent builders never load a half-written library
    return out


def load_library(path: Path) -> ctypes.CDLL:
    key = str(path)
    if key not in _LOADED:
        _LOADED[key] = ctypes.CDLL(key)
    return _LOADED[key]


@dataclass(frozen=True)
class Resources:
    """What ptxas reported for one kernel on one architecture."""

    arch: str
    registers: int
    shared_bytes: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    constant_bytes: int

    def to_dict(self) -> dict[str, int | str]:
        return dict(self.__dict__)


_RES = {
    "registers": re.compile(r"Used (\d+) registers"),
    "shared_bytes": re.compile(r"(\d+) bytes smem"),
    "stack_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "constant_bytes": re.compile(r"(\d+) bytes cmem\[0\]"),
}


def nvcc_path() -> str | None:
    return shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc") or None


def compile_cuda(source: str, arch: str, out_dir: Path | None = None) -> tuple[Path, Resources]:
    """``nvcc -cubin -arch=sm_XX --resource-usage``; returns the cubin and its resources."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise UnsupportedError("the CUDA backend needs nvcc on PATH to compile kernels")
    flags = ("-cubin", f"-arch={arch}", "--resource-usage", "-O3", "-std=c++17")
    key = source_key(source, flags)
    work = out_dir or cache_dir()
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"k_{key}.cu"
    src.write_text(source)
    cubin = work / f"k_{key}_{arch}.cubin"
    report = work / f"k_{key}_{arch}.ptxas.txt"
    if cubin.exists() and report.exists():  # same source and flags: nvcc would say the same
        return cubin, parse_resources(report.read_text(), arch)
    proc = subprocess.run([nvcc, *flags, str(src), "-o", str(cubin)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RnncError(f"nvcc failed for {arch} on {src} (a bug in rnnc's CUDA renderer):\n{proc.stderr[-2000:]}")
    # only the ptxas lines: nvcc's front-end warnings (unused helpers) are noise here
    text = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if "ptxas" in line or "spill" in line)
    report.write_text(text)
    return cubin, parse_resources(text, arch)


def parse_resources(text: str, arch: str) -> Resources:
    """Parse ptxas ``--resource-usage`` output (the last kernel's ``Function properties``)."""
    vals: dict[str, int] = {}
    for key, pat in _RES.items():
        found = pat.findall(text)
        vals[key] = int(found[-1]) if found else 0
    return Resources(arch=arch, **vals)
