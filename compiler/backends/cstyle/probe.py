"""A short probe of this host's rates for the CPU cost model (``rnnc.lower.cpu_cost``).

What it measures: the C backend's own one-row micro-kernels (``ukernels``, float and int8
weights, a tile of four vectors of outputs), built for this machine (``-march=native``),
streaming a weight panel sized for each memory level (half the L1, half the L2, a quarter of the
L3, DRAM), as seconds per multiply-add.  The int8 kernel is the one a one-row int8 step runs;
the float one stands in for the float step's loop GEMV (the same loads and FMAs per weight).
That is the table the cost model reads, measured rather than derived: how fast this core reads
each level and what widening int8 codes costs are properties of the micro-architecture that
datasheets do not give.  A few seconds once per machine: the result is cached as JSON
under the build cache, keyed by the CPU's model, flags, cores and caches and by
:data:`VERSION`.  A cache file that does not parse is measured again and rewritten (it holds
nothing but these numbers).  ``RNNC_PROBE=off`` skips the probe and uses the YAML roofline.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import time
from typing import Any

from rnnc.backends.cstyle import ukernels
from rnnc.lower.cpu_cost import LEVELS, WEIGHT_BYTES, CpuRates, yaml_rates

#: bump when what is measured or how changes (old cache files are then ignored)
VERSION = 2
#: accumulator sets of the probed one-row kernels (as the int8 one-row step uses)
_PARTS = 4

_SOURCE = """
{prelude}
{float_kernel}
{int8_kernel}

/* reps of the one-row float (wtype 0) or int8 (1) micro-kernel over a K x {gj} panel w, as the
   step loop runs it: the output feeds the next rep's input (steps depend on each other) */
float rn_probe_gemv(int wtype, const void* w, long k, float* h, long reps) {{
  float acc[{gj}] __attribute__((aligned(64)));
  const float* a[1] = {{h}};
  float sum = 0.0f;
  for (long r = 0; r < reps; ++r) {{
    if (wtype) {int8_name}(k, a, (const signed char*)w, acc); else {float_name}(k, a, (const float*)w, acc);
    h[r % k] = 1e-3f * acc[r % {gj}];
    sum += acc[0];
  }}
  return sum;
}}
"""


def tile_outputs(target: Any) -> int:
    """Outputs of the probed tile: four vectors, as an LSTM's untuned tile (4 gates x one vector
    of units) gives the kernels on this ISA."""
    return 4 * (target.cpu.vector_width_bits // 32)


def _source(gj: int) -> str:
    float_name = ukernels.name(1, gj, "float", _PARTS)
    int8_name = ukernels.name(1, gj, "int8", _PARTS)
    return _SOURCE.format(prelude=ukernels.PRELUDE, float_kernel=ukernels.render(1, gj, "float", _PARTS),
                          int8_kernel=ukernels.render(1, gj, "int8", _PARTS), gj=gj,
                          float_name=float_name, int8_name=int8_name)


def _timed(fn: Any, *args: Any, min_s: float = 0.01) -> float:
    """Seconds per call of ``fn(*args, reps)``: reps doubled until one call takes ``min_s``, then
    the best of three (the least disturbed by other processes)."""
    reps = 1
    while True:
        t0 = time.perf_counter()
        fn(*args, reps)
        dt = time.perf_counter() - t0
        if dt >= min_s or reps >= 1 << 30:
            break
        reps *= 2
    best = dt
    for _ in range(2):
        t0 = time.perf_counter()
        fn(*args, reps)
        best = min(best, time.perf_counter() - t0)
    return best / reps


def panel_bytes(target: Any) -> dict[str, int]:
    """Weight bytes probed per level: well inside L1 and L2, a quarter of the L3 (more than the
    L2s hold), twice the L3 (at least 64 MiB, at most 256 MiB) for DRAM."""
    cpu = target.cpu
    return {"l1": cpu.l1d_bytes // 2, "l2": cpu.l2_bytes // 2,
            "l3": min(max(4 * cpu.l2_bytes, cpu.l3_bytes // 4), cpu.l3_bytes // 2),
            "dram": min(max(2 * cpu.l3_bytes, 64 << 20), 256 << 20)}


def measure(target: Any) -> dict[str, Any]:
    """The probe's numbers for ``target`` (``cpu/host``): see the module docstring."""
    import numpy as np

    from rnnc.backends.cstyle.build import C_FLAGS, build_c

    gj = tile_outputs(target)
    lib = ctypes.CDLL(str(build_c(_source(gj), C_FLAGS)))
    lib.rn_probe_gemv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
    lib.rn_probe_gemv.restype = ctypes.c_float
    table = {}
    panels = panel_bytes(target)
    for level, size in panels.items():
        for wtype, dtype in (("float", np.float32), ("int8", np.int8)):
            k = max(size // (gj * np.dtype(dtype).itemsize) // _PARTS, 1) * _PARTS
            w = np.resize(np.array([-3, -2, -1, 0, 1, 2, 3], dtype=dtype), k * gj)
            h = np.full(k, 1e-3, dtype=np.float32)
            seconds = _timed(lib.rn_probe_gemv, 1 if wtype == "int8" else 0, w.ctypes.data, k, h.ctypes.data)
            table[f"{wtype}/{level}"] = seconds / (k * gj)
    return {"version": VERSION, "mac_seconds": table, "panel_bytes": panels,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _key(target: Any) -> str:
    from rnnc.targets.host import host_flags

    cpu = target.cpu
    source = hashlib.sha256(_source(tile_outputs(target)).encode()).hexdigest()  # a changed kernel: probe again
    text = f"{target.name}|{sorted(host_flags())}|{cpu.cores}|{cpu.l2_bytes}|{cpu.l3_bytes}|{VERSION}|{source}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(target: Any) -> Any:
    from rnnc.backends.cstyle.build import cache_dir

    return cache_dir().parent / "probe" / f"host_{_key(target)}.json"


_MEMO: dict[str, CpuRates] = {}


def _rates(data: Any, target: Any, path: Any) -> CpuRates:
    """The cached numbers as :class:`CpuRates`; raises (KeyError, TypeError, ValueError) on a
    file that is not a probe of this version."""
    if data["version"] != VERSION:
        raise ValueError(f"probe version {data['version']}, not {VERSION}")
    table = tuple(((w, lv), float(data["mac_seconds"][f"{w}/{lv}"])) for w in WEIGHT_BYTES for lv in LEVELS)
    if not all(v > 0 for _, v in table):
        raise ValueError("non-positive time in the probe")
    cpu = target.cpu
    caches = (("l1", cpu.l1d_bytes), ("l2", cpu.l2_bytes), ("l3", cpu.l3_bytes))
    return CpuRates(table, caches, cpu.cores, f"probed on this host {data.get('date', '')} ({path})")


def _read(path: Any, target: Any) -> CpuRates | None:
    try:
        return _rates(json.loads(path.read_text()), target, path)
    except (OSError, KeyError, TypeError, ValueError):
        return None  # absent, unreadable, corrupted or another version: measured again


def _write(path: Any, data: dict[str, Any]) -> None:
    """Write atomically (a unique temporary file renamed over the cache); a cache that cannot be
    written only means the next process probes again."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass


def host_rates(target: Any, refresh: bool = False) -> CpuRates:
    """This host's :class:`CpuRates`: from the cache, else probed (and cached); the YAML
    roofline when ``RNNC_PROBE=off`` or the probe cannot build its kernels.  Processes that start
    at once probe one at a time (a lock file beside the cache), so their timings do not disturb
    each other and all but the first read the first one's result."""
    if os.environ.get("RNNC_PROBE", "").lower() in ("off", "0", "no"):
        return yaml_rates(target)
    path = cache_path(target)
    if not refresh and str(path) in _MEMO:
        return _MEMO[str(path)]
    rates = None if refresh else _read(path, target)
    if rates is None:
        from rnnc.errors import RnncError

        with _locked(path):
            rates = None if refresh else _read(path, target)  # another process may have probed meanwhile
            if rates is None:
                try:
                    data = measure(target)
                except (RnncError, OSError) as exc:
                    est = yaml_rates(target)
                    rates = CpuRates(est.mac_seconds, est.cache_bytes, est.cores,
                                     f"{est.source}; the host probe could not run ({exc})")
                else:
                    _write(path, data)
                    rates = _rates(data, target, path)
    _MEMO[str(path)] = rates
    return rates


class _locked:
    """An exclusive lock on ``<cache>.lock`` (none where the folder cannot be written)."""

    def __init__(self, path: Any) -> None:
        self.lock_path, self.fd = path.with_suffix(".lock"), None

    def __enter__(self) -> None:
        try:
            import fcntl

            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (OSError, ImportError):
            self.fd = None

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
