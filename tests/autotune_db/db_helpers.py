"""Record factories shared by the autotune_db and tune tests."""

from __future__ import annotations

from rnnc.autotune_db import Record, RecordKey, target_fingerprint

TARGET = "cpu/x86-avx512"


def key(layer: str = "abc123", batch: int = 4, target: str = TARGET, backend: str = "c") -> RecordKey:
    return RecordKey(layer, (("seq_len", 64), ("batch", batch), ("hidden", 32)), "float32", target, backend)


def record(k: RecordKey | None = None, time_s: float = 1e-3, threads: int = 1, **kw) -> Record:
    k = k or key()
    schedule = {"kernel": "cpu_fused_recurrence", "cell": "lstm", "target": k.target, "params": {"threads": threads},
                "problem": {}, "resources": {}, "estimate": None, "source": "tuned", "version": 1}
    return Record(k, schedule, time_s, target_fingerprint=target_fingerprint(k.target) or "", **kw)
