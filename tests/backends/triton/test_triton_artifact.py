"""``compile(program, target, outdir)`` + ``rnnc.load``: sources, per-arch cubins, the manifest with
measured resources next to the Schedule, and a loaded program that matches the interpreter."""

from __future__ import annotations

import json

import torch
from triton_cases import INPUT, program

from rnnc.backends import get_backend
from rnnc.backends.manifest import load
from rnnc.targets import get
from rnnc.tolerances import assert_close


def test_compile_writes_manifest_and_loads(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    prog, _ = program("gru", 16, layers=2)
    manifest = get_backend("triton").compile(prog, get("nvidia/h100-sxm"), str(tmp_path))
    assert manifest["backend"] == "triton" and len(manifest["layers"]) == 2
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    for entry in on_disk["layers"].values():
        assert (tmp_path / entry["source"]).exists()
        assert entry["schedule"]["kernel"] == "fused_recurrence"
        for arch in ("sm_80", "sm_90"):
            assert entry["resources"][arch]["spill_stores"] == 0
            assert (tmp_path / f"{entry['source'][:-3]}.{arch}.cubin").stat().st_size > 0
    fn = load(tmp_path)
    x = torch.randn(4, 9, INPUT, generator=torch.Generator().manual_seed(5))
    for g, w in zip(fn(x), prog.run(x), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", "loaded gru program")


def test_compile_linear_cell_writes_scan_kernels_and_loads(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    """mLSTM: three scan components (stabiliser, C, n), each AOT-compiled; the loaded program
    (with the fed-back schedule's chunk/tile) matches the IR interpreter."""
    prog, _ = program("mlstm", 16)
    manifest = get_backend("triton").compile(prog, get("nvidia/h100-sxm"), str(tmp_path))
    (entry,) = manifest["layers"].values()
    assert entry["path"] == "chunked scan" and entry["schedule"]["kernel"] == "chunked_scan"
    assert entry["knobs"]["chunk"] == entry["schedule"]["params"]["chunk"]
    for arch in ("sm_80", "sm_90"):
        assert entry["resources"][arch]["spill_stores"] == 0
        for stem in ("", ".1", ".2"):
            assert (tmp_path / f"{entry['source'][:-3]}.{arch}{stem}.cubin").stat().st_size > 0
    x = torch.randn(2, 9, INPUT, generator=torch.Generator().manual_seed(6))
    for g, w in zip(load(tmp_path)(x), prog.run(x), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", "loaded mlstm program")
