"""``rnnc.load(OUTDIR)`` on a damaged output directory: one clear sentence naming the file, never a
traceback from deep inside (and nothing is written or deleted)."""

from __future__ import annotations

import json

import pytest
import torch

import rnnc
from rnnc.cli import main
from rnnc.errors import UserInputError


@pytest.fixture()
def outdir(tmp_path):
    model_file = tmp_path / "m.py"
    model_file.write_text("import torch\ntorch.manual_seed(0)\nmodel = torch.nn.GRU(6, 8, batch_first=True)\n")
    out = tmp_path / "out"
    assert main(["compile", str(model_file), "--input-shape", "1,5,6", "--backend", "c", "-o", str(out)]) == 0
    return out


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _expect(out, pattern: str) -> None:
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(UserInputError, match=pattern) as exc:
        rnnc.load(out)
    assert "\n" not in str(exc.value)
    assert sorted(p.name for p in out.iterdir()) == before  # loses no data


def test_intact_directory_loads(outdir):
    assert rnnc.load(outdir)(torch.randn(2, 4, 6))[0].shape == (2, 4, 8)


def test_missing_and_corrupt_manifest(outdir, tmp_path):
    with pytest.raises(UserInputError, match="is not an rnnc output directory"):
        rnnc.load(tmp_path / "nowhere")
    (outdir / "manifest.json").write_text("{ not json")
    _expect(outdir, "is not an rnnc output directory")


def test_newer_format_and_unknown_backend(outdir):
    m = _manifest(outdir)
    (outdir / "manifest.json").write_text(json.dumps({**m, "format": 99}))
    _expect(outdir, "has format 99; this rnnc reads 1")
    (outdir / "manifest.json").write_text(json.dumps({**m, "backend": "fpga"}))
    _expect(outdir, "fpga")


def test_missing_or_edited_files(outdir):
    program = (outdir / "program.rnnc").read_text()
    (outdir / "program.rnnc").write_text(program.replace("8", "9", 1))
    _expect(outdir, "does not match the manifest's program hash")
    (outdir / "program.rnnc").write_text(program)
    weights = (outdir / "weights.pt").read_bytes()
    (outdir / "weights.pt").write_bytes(b"garbage")
    _expect(outdir, "weights.pt")
    (outdir / "weights.pt").write_bytes(weights)
    m = _manifest(outdir)
    (outdir / "manifest.json").write_text(json.dumps({k: v for k, v in m.items() if k != "program_hash"}))
    _expect(outdir, "program_hash")
    (outdir / "manifest.json").write_text(json.dumps(m))
    lib = next(outdir.glob("*.so"))
    lib.rename(lib.with_suffix(".gone"))
    with pytest.raises(UserInputError, match=lib.name):
        rnnc.load(outdir)


def test_a_missing_optional_backend_names_its_extra(monkeypatch):
    """Heavy backends are extras: without apache-tvm, asking for TVM says which extra installs it,
    and the CPU preference order falls back to C."""
    import sys

    from rnnc.errors import UnsupportedError

    for mod in [m for m in sys.modules if m == "tvm" or m.startswith("tvm.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "tvm", None)  # import tvm -> ModuleNotFoundError
    model = torch.nn.GRU(6, 8, batch_first=True).eval()
    x = torch.randn(1, 4, 6)
    with pytest.raises(UnsupportedError, match=r"tvm: the TVM backend needs apache-tvm, which is not installed: "
                                               r"pip install 'rnnc\[tvm\]'"):
        rnnc.compile(model, (x,), target="cpu/host", backend="tvm")
    assert rnnc.compile(model, (x,), target="cpu/host").choice.backend == "c"
