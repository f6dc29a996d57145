"""Suite-wide test policy: ``gpu``-marked tests need a CUDA device and are skipped without one
(the only skip the suite allows, docs/design.md convention 9)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (gpu marker); this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def emulated_avx2():
    """onnxruntime under ``qemu-x86_64 -cpu Haswell`` (AVX2, no VNNI): what a user whose CPU
    saturates u8 x s8 pair sums gets, on whatever CPU runs the suite (``tests/emulated_ort.py``)."""
    from emulated_ort import EmulatedOrt

    worker = EmulatedOrt("Haswell")
    yield worker
    worker.close()
