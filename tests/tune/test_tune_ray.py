"""`--ray`: candidates fan out as Ray tasks on a local Ray with 2 CPUs; the driver records them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray  # the ray extra, which make setup installs (no skips outside tests/conftest.py)
from tune_helpers import small, tmp_db

from rnnc.tune import Tuner
from rnnc.tune.evaluate import OK


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def test_candidates_run_as_ray_tasks(tmp_path: Path, local_ray) -> None:
    db = tmp_db(tmp_path)
    layer = small("mingru", hidden=64)
    report = Tuner("cpu/host", "c", db=db, max_candidates=2, ray=True, progress=False).tune([layer])
    trials = report.layers[0].trials
    assert report.ok and [t["status"] for t in trials] == [OK, OK]
    assert len(db.scan().entries) == 2
    # each ran in a Ray worker process, not in this one, and the records say where
    assert all(t["host"]["pid"] != os.getpid() for t in trials)
    assert all(e.record.host["machine"] for e in db.scan().entries)
    again = Tuner("cpu/host", "c", db=db, max_candidates=2, ray=True, progress=False).tune([layer])
    assert again.layers[0].resumed == 2 and again.layers[0].trials == []


def test_budget_cancels_outstanding_ray_tasks(tmp_path: Path, local_ray) -> None:
    db = tmp_db(tmp_path)
    out = Tuner("cpu/host", "c", db=db, max_candidates=2, ray=True, time_budget=1e-6,
                progress=False).tune([small("gru")])
    assert "time budget" in out.layers[0].stopped and db.scan().entries == []
