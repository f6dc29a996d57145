"""Suite-wide skip policy, the only place a test is skipped (docs/design.md convention 9):
``gpu``-marked tests need a CUDA device; ``nvcc``-marked tests need the CUDA compiler (installed on
the project's machines and CI; a machine without it skips them here, saying so).

The host probe of the CPU cost model is off for the suite (``RNNC_PROBE=off``): the untuned C
knobs of ``cpu/host`` then come from the YAML roofline, the same on every run of a machine,
instead of from timings that vary between runs; ``tests/lower/test_cpu_cost.py`` tests the probe."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    from rnnc.backends.cstyle.build import nvcc_path

    skips = {}
    if not torch.cuda.is_available():
        skips["gpu"] = pytest.mark.skip(reason="needs a CUDA GPU (gpu marker); this machine has none")
    if nvcc_path() is None:
        skips["nvcc"] = pytest.mark.skip(reason="needs nvcc (nvcc marker); it is not on PATH here")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_host_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNC_PROBE", "off")


@pytest.fixture(scope="session")
def emulated_avx2():
    """onnxruntime under ``qemu-x86_64 -cpu Haswell`` (AVX2, no VNNI): what a user whose CPU
    saturates u8 x s8 pair sums gets, on whatever CPU runs the suite (``tests/emulated_ort.py``)."""
    from emulated_ort import EmulatedOrt

    worker = EmulatedOrt("Haswell")
    yield worker
    worker.close()
