"""Run every corpus entry eagerly and print its input and output shapes.

Usage: ``python tests/frontend/corpus/check_eager.py [NAME ...]`` (from the repository root).
Exits non-zero if any entry fails, is non-deterministic, or returns something other than tensors.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

import torch


def _load_corpus():
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent))
    return importlib.import_module(here.name).CORPUS


def _lengths_for(entry, wanted):
    out = []
    for n in wanted:
        n = max(n, entry.min_length)
        m = entry.length_multiple
        out.append(-(-n // m) * m)
    return out


def _flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple) and all(isinstance(o, torch.Tensor) for o in out):
        return list(out)
    raise TypeError(f"output must be a tensor or a flat tuple of tensors, got {type(out).__name__}")


def _fmt(tensors):
    parts = []
    for t in tensors:
        dtype = str(t.dtype).replace("torch.", "")
        parts.append(f"{tuple(t.shape)}{'' if dtype == 'float32' else ':' + dtype}")
    return ", ".join(parts)


def check(name, entry, cases=((2, 24), (3, 40))):
    model = entry.build()
    assert not model.training, "model must be in eval mode"
    lines = []
    for batch, length in zip((b for b, _ in cases), _lengths_for(entry, [t for _, t in cases]), strict=True):
        inputs = entry.inputs(batch, length)
        assert isinstance(inputs, tuple) and len(inputs) == len(entry.dynamic), "inputs/dynamic arity mismatch"
        for x, dyn in zip(inputs, entry.dynamic, strict=True):
            if dyn is None:
                continue
            for dim, tag in dyn.items():
                want = batch if tag == "B" else length
                assert x.shape[dim] == want, f"input dim {dim} ({tag}) is {x.shape[dim]}, expected {want}"
        again = entry.inputs(batch, length)
        assert all(torch.equal(a, b) for a, b in zip(inputs, again, strict=True)), "inputs are not deterministic"
        with torch.no_grad():
            out1 = _flatten(model(*inputs))
            out2 = _flatten(model(*inputs))
        for a, b in zip(out1, out2, strict=True):
            assert torch.equal(a, b), "forward is not deterministic"
            if a.is_floating_point():
                assert torch.isfinite(a).all(), "non-finite output"
        lines.append(f"    (B={batch}, T={length}) in: {_fmt(inputs)}  ->  out: {_fmt(out1)}")
    return lines


def main(argv):
    corpus = _load_corpus()
    names = argv or list(corpus)
    failed = []
    for name in names:
        entry = corpus[name]
        try:
            lines = check(name, entry)
        except Exception:
            failed.append(name)
            print(f"FAIL {name}")
            traceback.print_exc()
            continue
        print(f"ok   {name}  [{entry.domain}]  multiple={entry.length_multiple} min={entry.min_length}")
        print("\n".join(lines))
    print(f"\n{len(names) - len(failed)}/{len(names)} entries passed")
    if failed:
        print("failed:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
