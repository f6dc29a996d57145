"""Every shipped target file validates, cites a source for every number, and matches the public
per-compute-capability table; broken files fail with one sentence naming file and field."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import rnnc.targets as targets
from rnnc.errors import UserInputError
from rnnc.targets import host

REQUIRED = [
    "nvidia/h100-sxm", "nvidia/h200", "nvidia/b200", "nvidia/a100-80gb", "nvidia/a10", "nvidia/l4",
    "nvidia/t4", "nvidia/rtx-3090", "nvidia/rtx-4090", "nvidia/rtx-5090", "nvidia/jetson-orin-nano",
    "nvidia/jetson-agx-orin", "cpu/x86-avx2", "cpu/x86-avx512", "cpu/arm64-neon", "cpu/host",
]
KiB = 1024


def test_every_required_tag_is_listed_and_loads():
    tags = targets.list_tags()
    for tag in REQUIRED:
        assert tag in tags
        spec = targets.get(tag)
        assert spec.tag == tag
        assert (spec.gpu is None) != (spec.cpu is None)


@pytest.mark.parametrize("path", targets.shipped_files(), ids=lambda p: p.name)
def test_shipped_file_validates_and_is_named_after_its_tag(path: Path):
    spec = targets.load_file(path)
    assert path.name == spec.tag.replace("/", "-") + ".yaml"
    for dtype, value in spec.peak_tflops:
        assert value > 0 and dtype in spec.dtypes


_NUMBER_LINE = re.compile(r"^\s*([a-z0-9_]+):\s*(\[?[0-9][^#]*?)\s*(#.*)?$")


@pytest.mark.parametrize("path", targets.shipped_files(), ids=lambda p: p.name)
def test_every_number_cites_a_source_key_that_exists(path: Path):
    data = yaml.safe_load(path.read_text())
    keys = set(data["sources"]) | {"der", "est"}  # derived / estimate markers explain themselves
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = _NUMBER_LINE.match(line)
        if not m or m.group(1) in ("tag",):
            continue
        comment = m.group(3) or ""
        cited = re.findall(r"\[([a-z]+)\]", comment)
        assert cited, f"{path.name}:{lineno}: number without a source comment: {line.strip()}"
        for key in cited:
            assert key in keys, f"{path.name}:{lineno}: cites [{key}] which is not in sources"


# Numbers below are copied by hand from the CUDA C++ Programming Guide table "Technical
# Specifications per Compute Capability" and the vendor datasheets, not from the YAML files.
@pytest.mark.parametrize(
    "tag, cc, smem_sm_kib, optin_kib, threads_sm, sms",
    [
        ("nvidia/t4", (7, 5), 64, 64, 1024, 40),
        ("nvidia/a100-80gb", (8, 0), 164, 163, 2048, 108),
        ("nvidia/a10", (8, 6), 100, 99, 1536, 72),
        ("nvidia/rtx-3090", (8, 6), 100, 99, 1536, 82),
        ("nvidia/jetson-agx-orin", (8, 7), 164, 163, 1536, 16),
        ("nvidia/l4", (8, 9), 100, 99, 1536, 58),
        ("nvidia/rtx-4090", (8, 9), 100, 99, 1536, 128),
        ("nvidia/h100-sxm", (9, 0), 228, 227, 2048, 132),
        ("nvidia/h200", (9, 0), 228, 227, 2048, 132),
        ("nvidia/rtx-5090", (12, 0), 100, 99, 1536, 170),
    ],
)
def test_gpu_limits_match_the_cuda_table(tag, cc, smem_sm_kib, optin_kib, threads_sm, sms):
    g = targets.get(tag).gpu
    assert g.compute_capability == cc
    assert g.shared_memory_per_sm_bytes == smem_sm_kib * KiB
    assert g.shared_memory_per_block_optin_bytes == optin_kib * KiB
    assert g.max_threads_per_sm == threads_sm
    assert g.sm_count == sms
    assert (g.registers_per_sm, g.registers_per_block, g.registers_per_thread) == (65536, 65536, 255)
    assert g.shared_memory_per_block_bytes == 48 * KiB
    assert g.warp_size == 32 and g.max_threads_per_block == 1024


def test_tensor_core_shapes_follow_the_ptx_isa():
    assert targets.get("nvidia/t4").gpu.mma("bf16") == ()  # no bf16 mma before sm_80
    assert str(targets.get("nvidia/t4").gpu.mma("fp16")[0]) == "m16n8k8"
    assert str(targets.get("nvidia/a100-80gb").gpu.mma("bf16")[0]) == "m16n8k16"
    assert targets.get("nvidia/a100-80gb").gpu.mma("fp8") == ()  # e4m3/e5m2 mma needs sm_89
    assert targets.get("nvidia/l4").gpu.mma("fp8")
    assert not targets.get("nvidia/t4").supports("bf16")


def test_unknown_tag_lists_close_matches():
    with pytest.raises(UserInputError) as exc:
        targets.get("nvidia/h100")
    msg = str(exc.value)
    assert "nvidia/h100-sxm" in msg and "rnnc targets" in msg and "\n" not in msg


def test_user_yaml_path_works(tmp_path: Path):
    src = targets.shipped_files()[0]
    data = yaml.safe_load(src.read_text())
    data["tag"] = "lab/my-device"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    assert targets.get(str(path)).tag == "lab/my-device"


def _broken(tmp_path: Path, mutate) -> str:
    data = yaml.safe_load((Path(targets.__file__).parent / "nvidia-t4.yaml").read_text())
    mutate(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserInputError) as exc:
        targets.load_file(path)
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_missing_field_is_named(tmp_path):
    msg = _broken(tmp_path, lambda d: d["gpu"].pop("sm_count"))
    assert "'gpu.sm_count'" in msg and "missing" in msg


def test_wrong_type_is_named(tmp_path):
    msg = _broken(tmp_path, lambda d: d["gpu"].__setitem__("warp_size", "thirty-two"))
    assert "'gpu.warp_size'" in msg and "integer" in msg


def test_negative_number_is_named(tmp_path):
    msg = _broken(tmp_path, lambda d: d["gpu"].__setitem__("sm_count", -40))
    assert "'gpu.sm_count'" in msg and "-40" in msg


def test_bad_size_unknown_dtype_and_kind(tmp_path):
    assert "'gpu.l2'" in _broken(tmp_path, lambda d: d["gpu"].__setitem__("l2", "4 bananas"))
    assert "'dtypes'" in _broken(tmp_path, lambda d: d.__setitem__("dtypes", ["fp32", "fp7"]))
    assert "'kind'" in _broken(tmp_path, lambda d: d.__setitem__("kind", "tpu"))
    msg = _broken(tmp_path, lambda d: d["gpu"].__setitem__("shared_memory_per_block_optin", "1 MiB"))
    assert "must not exceed shared_memory_per_sm" in msg


def test_invalid_yaml_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tag: [unclosed\n")
    with pytest.raises(UserInputError, match="not valid YAML"):
        targets.load_file(path)
    with pytest.raises(UserInputError, match="not found"):
        targets.load_file(tmp_path / "nope.yaml")


def test_host_is_detected_from_this_machine():
    import os

    spec = targets.get("cpu/host")
    assert spec.cpu.cores == len(os.sched_getaffinity(0))
    assert any("NOT measured" in n for n in spec.notes)
    assert spec.peak("fp32") > 0


def test_host_parsing_with_fake_proc_and_sysfs(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Fake CPU\n"
                       "cpu MHz\t\t: 3000.000\nflags\t\t: fpu sse avx avx2 fma\n\n")
    cache = tmp_path / "cache"
    for i, (level, ctype, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "32K"),
                                              (2, "Unified", "2048K"), (3, "Unified", "16M")]):
        d = cache / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{ctype}\n")
        (d / "size").write_text(f"{size}\n")
    monkeypatch.setattr(host, "CPUINFO", cpuinfo)
    monkeypatch.setattr(host, "SYSFS_CACHE", cache)
    monkeypatch.setattr(host, "SYSFS_FREQ", tmp_path / "nofreq")
    assert host.base_tag() == "cpu/x86-avx2"
    data = yaml.safe_load((Path(targets.__file__).parent / "cpu-x86-avx2.yaml").read_text())
    host.host_overrides(data)
    spec = targets.loader.parse(data, "fake")
    assert (spec.name, spec.vendor, spec.clock_mhz) == ("Fake CPU", "intel", 3000)
    assert (spec.cpu.l1d_bytes, spec.cpu.l2_bytes, spec.cpu.l3_bytes) == (32 * KiB, 2048 * KiB, 16 << 20)
    # cores x 2 FMA units x 8 fp32 lanes x 2 FLOP x 3 GHz, computed by hand
    assert spec.peak("fp32") == pytest.approx(spec.cpu.cores * 2 * 8 * 2 * 3.0e9 / 1e12, rel=1e-3)


def test_pure_libraries_do_not_import_torch_or_ortools():
    code = ("import sys, rnnc.constraints, rnnc.targets; "
            "rnnc.constraints.solve(rnnc.constraints.ProblemSpec('lstm', 256), 'nvidia/a10'); "
            "bad = [m for m in ('torch', 'ortools', 'rnnc.ir', 'rnnc.frontend') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
