"""Small layers and a throw-away database for the tuner tests."""

from __future__ import annotations

from pathlib import Path

from rnnc.autotune_db import Database
from rnnc.tune import Layer, cell_layers


def small(cell: str = "lstm", hidden: int = 32, batch: int = 2, seq_len: int = 16) -> Layer:
    return cell_layers(cell, 8, hidden, batch=batch, seq_len=seq_len)[0]


def tmp_db(path: Path) -> Database:
    return Database(overlay=path / "db", shipped=None)
