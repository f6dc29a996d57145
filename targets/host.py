"""``cpu/host``: the machine rnnc runs on, detected at load time.

Why detection starts from a shipped ISA file: what Linux exposes (/proc/cpuinfo flags, sysfs
cache sizes, ``os.sched_getaffinity``) covers cores, vector width and caches, but not memory
bandwidth or per-cycle cache bandwidth.  Those stay the values of the matching generic target
and the spec's ``notes`` say so, so nobody mistakes them for measurements.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

from .spec import DTYPE_BYTES

CPUINFO = Path("/proc/cpuinfo")
SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
SYSFS_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")

_SIZE = re.compile(r"^([0-9]+)([KMG]?)$")


def _cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo as key -> value (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        if not line.strip():
            if info:
                break
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip().lower(), value.strip())
    return info


def _meminfo_bytes() -> int | None:
    """MemTotal from /proc/meminfo in bytes, or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysfs_caches() -> dict[str, int]:
    """Data/unified cache sizes per level from sysfs: {'l1d': bytes, 'l2': bytes, 'l3': bytes}."""
    out: dict[str, int] = {}
    if not SYSFS_CACHE.is_dir():
        return out
    for index in sorted(SYSFS_CACHE.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            ctype = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        match = _SIZE.match(size)
        if not match or ctype == "Instruction":
            continue
        nbytes = int(match.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2)]
        out["l1d" if level == "1" else f"l{level}"] = nbytes
    return out


def _flags(info: dict[str, str]) -> frozenset[str]:
    """CPU flags of a /proc/cpuinfo block (x86 spells them ``flags``, Arm ``features``)."""
    return frozenset(info.get("flags", info.get("features", "")).split())


def host_flags() -> frozenset[str]:
    """This CPU's flags as /proc/cpuinfo spells them."""
    return _flags(_cpuinfo())


def can_run(cpu: Any) -> tuple[bool, str]:
    """Whether code built for a CPU target (its ``isa`` and ``isa_flags``) runs on this machine,
    and if not, which flag or ISA is missing -- so the C backend can build a target's kernels
    with its own ``-march`` and still measure them here (AVX2 code on an AVX-512 host)."""
    machine = platform.machine().lower()
    here = "aarch64" if machine in ("aarch64", "arm64") else "x86_64" if machine in ("x86_64", "amd64") else machine
    if cpu.isa != here:
        return False, f"it is {cpu.isa} code and this machine is {here}"
    missing = sorted(set(cpu.isa_flags) - host_flags())
    return (not missing, f"this CPU lacks {', '.join(missing)}" if missing else "")


def base_tag() -> str:
    """The generic target whose ISA matches this machine (what cpu/host starts from)."""
    flags = host_flags()
    if "avx512f" in flags:
        return "cpu/x86-avx512"
    if "avx2" in flags:
        return "cpu/x86-avx2"
    if platform.machine().lower() in ("aarch64", "arm64") or "asimd" in flags:
        return "cpu/arm64-neon"
    return "cpu/x86-avx2"


def host_overrides(data: dict[str, Any]) -> None:
    """Patch a generic CPU target document in place with what this machine reports."""
    info = _cpuinfo()
    flags = _flags(info)
    cpu = data.setdefault("cpu", {})
    base = data.get("tag", "?")
    detected: list[str] = []
    data["tag"] = "cpu/host"
    data["name"] = info.get("model name") or platform.processor() or platform.machine() or "host CPU"
    vendor_id = info.get("vendor_id", "")
    data["vendor"] = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(vendor_id, data.get("vendor", "unknown"))
    data["architecture"] = f"host ({cpu.get('vector_extension', '?')} class)"
    detected += ["name", "vendor"]
    mem = _meminfo_bytes()
    if mem:
        data["memory"] = mem
        detected.append("memory")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    cpu["cores"] = cores
    detected.append("cores")
    for key, nbytes in _sysfs_caches().items():
        if key in ("l1d", "l2", "l3"):
            cpu[key] = nbytes
            detected.append(key)
    mhz = None
    try:
        mhz = int(SYSFS_FREQ.read_text().strip()) // 1000
    except (OSError, ValueError):
        try:
            mhz = int(float(info.get("cpu mhz", "")))
        except ValueError:
            mhz = None
    if mhz:
        data["clock_mhz"] = mhz
        detected.append("clock_mhz")
    cpu["int8_dot"] = host_int8_dot(flags, dict(cpu.get("int8_dot") or {}))
    cpu["march"], cpu["isa_flags"] = "native", sorted(set(cpu.get("isa_flags") or ()) & flags)
    detected.append("int8_dot")
    dtypes = list(data.get("dtypes") or [])
    for flag, dtype in (("avx512_bf16", "bf16"), ("avx512_fp16", "fp16")):
        if flag in flags and dtype not in dtypes:
            dtypes.append(dtype)
    data["dtypes"] = dtypes
    _rescale_peaks(data)
    data.setdefault("sources", {})["host"] = "/proc/cpuinfo, /sys/devices/system/cpu/cpu0/cache, sched_getaffinity"
    data["notes"] = [
        f"detected from this machine: {', '.join(detected)}; everything else is copied from {base}",
        "memory bandwidth and cache bandwidth are NOT measured: they are the generic target's values",
    ]


#: x86 flags (as /proc/cpuinfo spells them) whose integer dot product adds into int32 without
#: saturation: onnxruntime's MLAS takes a VNNI or AMX kernel whenever one of them is present
_X86_EXACT = ("avx512_vnni", "avx_vnni", "amx_int8")


def host_int8_dot(flags: frozenset[str] | set[str], generic: dict[str, Any]) -> dict[str, str]:
    """This CPU's integer dot-product semantics from its flags (``Int8Dot``'s fields).

    Why not the generic file's entry: an AVX-512 CPU without VNNI (Skylake-SP) and an AVX2 CPU
    with AVX-VNNI (Alder Lake) both exist, so the ISA family does not decide; the flags do.
    """
    if platform.machine().lower() in ("aarch64", "arm64") or "asimd" in flags:
        dot = "asimddp" in flags
        return {"instruction": "udot/sdot" if dot else "umull/uadalp", "semantics": "exact", "format": "s8",
                "source": f"detected: /proc/cpuinfo {'has' if dot else 'lacks'} asimddp; MLAS widens "
                          "8-bit products exactly either way"}
    exact = [f for f in _X86_EXACT if f in flags]
    if exact:
        return {"instruction": "vpdpbusd", "semantics": "exact", "format": "s8",
                "source": f"detected: /proc/cpuinfo flag {exact[0]}"}
    if "avx2" in flags or "avx512bw" in flags or "ssse3" in flags:
        return {"instruction": "vpmaddubsw", "semantics": "saturating_pairs", "format": "s7",
                "source": f"detected: /proc/cpuinfo has no {'/'.join(_X86_EXACT)}"}
    return {**generic, "source": "no CPU flags readable; copied from the generic target"}


def _rescale_peaks(data: dict[str, Any]) -> None:
    """Peak FLOP/s = cores x fma units x lanes x 2 x clock, with the detected cores and clock."""
    cpu, peaks = data["cpu"], data.get("peak_tflops") or {}
    for dtype in list(peaks):
        lanes = max(1, int(cpu["vector_width_bits"]) // (8 * DTYPE_BYTES[dtype]))
        ops = int(cpu["cores"]) * int(cpu["fma_units_per_core"]) * lanes * 2 * int(data["clock_mhz"]) * 1e6
        peaks[dtype] = round(ops / 1e12, 3)
