"""Each CPU target's int8 dot product: the numpy models against onnxruntime, and the formats.

The models (``targets/int8dot.py``) are checked bit for bit against onnxruntime's own integer
GEMM twice: natively (the expectation is this host's detected semantics, so the verdict depends
on the CPU by design and says which) and under an emulated AVX2 CPU without VNNI (qemu), where
saturation must show.  The format tests then use the models for every shipped CPU target.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rnnc.errors import UserInputError
from rnnc.targets import get, list_tags
from rnnc.targets.host import host_int8_dot
from rnnc.targets.int8dot import WEIGHT_QMAX, dot, exact_on, int8_target, pair_headroom, weight_format


def _matmul_integer(w: np.ndarray, zp: int | None = None) -> bytes:
    """A bare ``MatMulInteger`` (u8 activations, ``w`` [K, N] int8 or uint8 with zero point)."""
    k, n = w.shape
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["a", "w"]
    if zp is not None:
        inits.append(numpy_helper.from_array(np.array(zp, w.dtype), "wz"))
        inputs += ["", "wz"]
    graph = helper.make_graph([helper.make_node("MatMulInteger", inputs, ["y"])], "mm",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, k])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [None, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def _operands(k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Full-range int8 weights and activations that include the worst case (all 255)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (k, 24)).astype(np.int8)
    a = rng.integers(0, 256, (16, k)).astype(np.uint8)
    a[:4] = 255
    a[4:8] = rng.integers(200, 256, (4, k))
    return a, w


@pytest.mark.parametrize("k", [64, 33])
def test_saturating_model_is_onnxruntime_on_an_avx2_cpu(emulated_avx2, k):
    a, w = _operands(k)
    got = emulated_avx2.run(_matmul_integer(w), {"a": a})[0]
    np.testing.assert_array_equal(got, dot(a, w, "saturating_pairs"))
    assert np.abs(got - dot(a, w, "exact")).max() > 1000  # the emulation really saturates


def test_7bit_and_u8_weights_are_exact_on_an_avx2_cpu(emulated_avx2):
    a, w = _operands(64, seed=1)
    w7 = np.clip(w, -63, 63).astype(np.int8)
    np.testing.assert_array_equal(emulated_avx2.run(_matmul_integer(w7), {"a": a})[0], dot(a, w7, "exact"))
    u8 = (w.astype(np.int16) + 128).astype(np.uint8)  # the u8 format: same codes, zero point 128
    np.testing.assert_array_equal(emulated_avx2.run(_matmul_integer(u8, 128), {"a": a})[0], dot(a, w, "exact"))


def test_host_onnxruntime_follows_the_detected_semantics():
    """CPU-dependent by design: on a VNNI/Arm host onnxruntime must be exact, on an AVX2 host
    without VNNI it must saturate -- either way exactly as ``cpu/host``'s int8_dot predicts."""
    semantics = get("cpu/host").cpu.int8_dot.semantics
    a, w = _operands(64, seed=2)
    got = ort.InferenceSession(_matmul_integer(w), providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]
    np.testing.assert_array_equal(got, dot(a, w, semantics), err_msg=f"host semantics {semantics}")


def test_pair_headroom_is_the_int16_boundary():
    assert pair_headroom(np.array([[64], [64]])) == 255 * 128  # 32640: still exact
    assert exact_on(np.array([[64], [64]], np.int8), "saturating_pairs")
    assert not exact_on(np.array([[64], [65]], np.int8), "saturating_pairs")  # 32895 > 32767
    assert exact_on(np.array([[-64], [-64]], np.int8), "saturating_pairs")  # -32640 >= -32768
    assert not exact_on(np.array([[127], [0], [2]], np.int8), "saturating_pairs")  # any pairing counts
    assert exact_on(np.array([[127], [127]], np.int8), "exact")
    a = np.full((1, 2), 255, np.uint8)
    for pair in ([[64], [64]], [[-64], [-64]], [[63], [63]]):  # the bound agrees with the model
        w = np.array(pair, np.int8)
        assert (dot(a, w, "saturating_pairs") == dot(a, w, "exact")).all() == exact_on(w, "saturating_pairs")


@pytest.mark.parametrize("tag", [t for t in list_tags() if get(t).cpu is not None])
def test_every_cpu_target_format_is_exact_on_its_dot_product(tag):
    dot_spec = get(tag).cpu.int8_dot
    rng = np.random.default_rng(3)
    w = rng.standard_normal((96, 40)) * rng.uniform(0.1, 3.0, (1, 40))
    qmax = WEIGHT_QMAX[dot_spec.format]
    codes = np.clip(np.round(w / (np.abs(w).max(axis=0) / qmax)), -qmax, qmax).astype(np.int8)
    assert np.abs(codes).max() == qmax  # the format's full range is used
    a = rng.integers(0, 256, (32, 96)).astype(np.uint8)
    a[:8] = 255
    stored = (codes.astype(np.int16) + 128).astype(np.uint8) if dot_spec.format == "u8" else codes
    shift = 128 * a.astype(np.int64).sum(axis=1, keepdims=True) if dot_spec.format == "u8" else 0
    np.testing.assert_array_equal(dot(a, stored, dot_spec.semantics) - shift, dot(a, codes, "exact"))
    full = np.clip(np.round(w / (np.abs(w).max(axis=0) / 127)), -127, 127).astype(np.int8)
    assert exact_on(full, dot_spec.semantics) == (dot_spec.semantics == "exact")


@pytest.mark.parametrize("flags,semantics", [
    ({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, "exact"),  # Ice Lake, Zen 4/5
    ({"avx2", "fma", "avx_vnni"}, "exact"),  # Alder Lake: VEX VNNI
    ({"avx2", "fma", "avx512f", "avx512bw"}, "saturating_pairs"),  # Skylake-SP: AVX-512 without VNNI
    ({"avx2", "fma"}, "saturating_pairs"),  # Zen 2/3, Haswell, Broadwell
])
def test_host_detection_reads_the_flags(flags, semantics, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    found = host_int8_dot(flags, {})
    assert found["semantics"] == semantics and "detected" in found["source"]
    assert found["format"] == ("s7" if semantics == "saturating_pairs" else "s8")


def test_targets_show_prints_the_int8_dot_product(capsys):
    from rnnc.cli import main

    assert main(["targets", "show", "cpu/x86-avx2"]) == 0
    out = capsys.readouterr().out
    assert "vpmaddubsw (saturating_pairs), format s7 [targets/cpu-x86-avx2.yaml]" in out
    assert main(["targets", "show", "cpu/host"]) == 0
    assert "int8_dot:" in capsys.readouterr().out and "detected" in str(get("cpu/host").cpu.int8_dot)


def test_gpu_and_unknown_targets_get_one_sentence():
    with pytest.raises(UserInputError, match="nvidia/h100-sxm is a GPU; rnnc's int8 models run on CPUs"):
        int8_target("nvidia/h100-sxm")
    with pytest.raises(UserInputError, match="unknown target 'cpu/x86-avx3'"):
        weight_format("cpu/x86-avx3")
    with pytest.raises(UserInputError, match="unknown int8 format 's6'"):
        weight_format("cpu/x86-avx2", "s6")


def test_a_target_file_must_declare_an_exact_format(tmp_path):
    text = (get("cpu/x86-avx2").path and open(get("cpu/x86-avx2").path).read())
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("format: s7", "format: s8"))
    with pytest.raises(UserInputError, match="s8 overflows a saturating pair sum"):
        get(str(bad))
    missing = tmp_path / "missing.yaml"
    missing.write_text(text.replace("  int8_dot:", "  int8_dot_unused:"))
    with pytest.raises(UserInputError, match="field 'cpu.int8_dot' is missing"):
        get(str(missing))


def test_a_jetson_points_at_its_cpu():
    for tag in ("nvidia/jetson-agx-orin", "nvidia/jetson-orin-nano"):
        cpu = get(get(tag).companion_cpu)
        assert cpu.cpu is not None and cpu.cpu.isa == "aarch64" and cpu.cpu.int8_dot.semantics == "exact"
        with pytest.raises(UserInputError, match=f"{tag} is a GPU; .* its CPU is cpu/arm64-a78ae"):
            int8_target(tag)
