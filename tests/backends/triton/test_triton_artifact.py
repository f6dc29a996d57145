"""``compile(program, target, outdir)`` + ``rnnc.load``: sources, per-arch cubins, the manifest with
measured resources next to the Schedule, and a loaded program that matches the interpreter."""

from __future__ import annotations

import json

import torch
from triton_cases import INPUT, program

from rnnc.backends import get_backend
from rnnc.backends.manifest import load
from rnnc.ir import rnn_program
from rnnc.kernels import CELLS
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
    """minGRU: a chunked-scan kernel, AOT-compiled; the loaded program (with the fed-back
    schedule's chunk/tile) matches the IR interpreter."""
    prog, _ = program("mingru", 16)
    manifest = get_backend("triton").compile(prog, get("nvidia/h100-sxm"), str(tmp_path))
    (entry,) = manifest["layers"].values()
    assert entry["path"] == "chunked scan" and entry["schedule"]["kernel"] == "chunked_scan"
    assert entry["knobs"]["chunk"] == entry["schedule"]["params"]["chunk"]
    for arch in ("sm_80", "sm_90"):
        assert entry["resources"][arch]["spill_stores"] == 0
    x = torch.randn(2, 9, INPUT, generator=torch.Generator().manual_seed(6))
    for g, w in zip(load(tmp_path)(x), prog.run(x), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", "loaded mingru program")


def test_mlstm_writes_the_chunkwise_kernel_or_its_scan_fallback(tmp_path) -> None:  # noqa: ANN001
    """mLSTM with four 4-wide heads: the chunkwise kernel; one 256-wide head is past what the
    solver gives the chunkwise kernel on an H100, so three scan components (stabiliser, C, n) are
    written instead -- and each output directory loads as the path it recorded (the fallback's
    numbers: ``test_triton_chunk.py``, at a size the interpreter runs quickly)."""
    narrow, _ = program("mlstm", 16)
    entry = next(iter(get_backend("triton").compile(narrow, get("nvidia/h100-sxm"), str(tmp_path / "n"))
                      ["layers"].values()))
    assert entry["path"] == "chunkwise" and entry["schedule"]["kernel"] == "chunkwise"
    torch.manual_seed(0)
    cell, weights = CELLS["mlstm"].load_module_class()(INPUT, 256, num_heads=1).rnnc_layer()
    wide = rnn_program([cell], [[weights]])
    entry = next(iter(get_backend("triton").compile(wide, get("nvidia/h100-sxm"), str(tmp_path / "w"))
                      ["layers"].values()))
    assert entry["path"] == "chunked scan" and entry["schedule"]["kernel"] == "chunked_scan"
    for stem in ("", ".1", ".2"):
        assert (tmp_path / "w" / f"{entry['source'][:-3]}.sm_90{stem}.cubin").stat().st_size > 0
    (lk,) = next(iter(load(tmp_path / "w").kernels.values()))
    assert lk.is_scan
    x = torch.randn(2, 9, INPUT, generator=torch.Generator().manual_seed(6))
    for g, w in zip(load(tmp_path / "n")(x), narrow.run(x), strict=True):
        assert_close(g.cpu(), w, "float32", "triton", "loaded mlstm program")
