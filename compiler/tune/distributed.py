"""Fanning candidates out over Ray (``rnnc tune ... --ray [ADDRESS]``).

Ray is the engine: each candidate is one Ray task running :func:`rnnc.tune.evaluate.evaluate`;
results stream back with ``ray.wait`` in completion order and the driver records them (only the
driver writes the database, so workers need no access to it).  The time budget is enforced by
waiting no longer than the deadline and cancelling what is left.  ``address`` is ``True`` /
``"local"`` for a local Ray (started with ``num_cpus`` = ``RNNC_RAY_CPUS`` or all cores) or a
cluster address such as ``ray://head:10001`` or ``auto``.

On a cluster the workers must have rnnc installed (and gcc for the C backend): Ray ships the
function and its arguments, not the package.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from rnnc.errors import UnsupportedError

LOCAL = ("", "local", "True", "true")


def ensure_ray(address: str | bool) -> Any:
    """Import Ray and connect (once per process) to ``address``."""
    try:
        import ray
    except ImportError:
        raise UnsupportedError("--ray needs Ray: pip install 'rnnc[ray]'") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "ignore_reinit_error": True}
        if address is True or str(address) in LOCAL:
            cpus = os.environ.get("RNNC_RAY_CPUS")
            kwargs["num_cpus"] = int(cpus) if cpus else None
        else:
            kwargs["address"] = str(address)
        # workers must not inherit a 2-core box's worth of OpenMP threads each
        kwargs["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}}
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise UnsupportedError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
    return ray


def run_on_ray(address: str | bool, layer: Any, todo: Sequence[Any], target: str, backend: str, repeats: int,
               expected: Any, deadline: float | None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Evaluate ``todo`` (Schedules) as Ray tasks; yields (schedule, outcome) as they finish."""
    ray = ensure_ray(address)
    from rnnc.tune.evaluate import evaluate

    remote = ray.remote(num_cpus=1)(evaluate)
    layer_ref, expected_ref = ray.put(layer), ray.put(expected)
    pending = {remote.remote(layer_ref, s.to_json(), target, backend, repeats, expected=expected_ref): s
               for s in todo}
    try:
        while pending:
            timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            if not ready:
                return  # budget spent: the finally block cancels the rest
            ref = ready[0]
            yield pending.pop(ref), ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
