"""The CPU cost model (``rnnc.lower.cpu_cost``) and the host probe that calibrates it
(``rnnc.backends.cstyle.probe``): its decision follows the rates it is given, the YAML roofline
is physically ordered, the probe measures once per machine and survives a corrupted cache."""

from __future__ import annotations

import json

import pytest

from rnnc.backends.cstyle import probe
from rnnc.lower import cpu_cost
from rnnc.lower.cpu_cost import LEVELS, CpuRates, stream_int8_codes, yaml_rates
from rnnc.lower.knobs import cpu_knobs
from rnnc.targets import get

CPU_TARGETS = ("cpu/x86-avx2", "cpu/x86-avx512", "cpu/arm64-neon", "cpu/arm64-a78ae")
KIB, MIB = 1 << 10, 1 << 20


def _rates(float_gmacs: dict[str, float], int8_gmacs: float, cores: int = 1) -> CpuRates:
    """Rates of a made-up core: float weights at the given GMAC/s per level, int8 codes at one
    widening-bound rate everywhere; 32 KiB L1, 1 MiB L2, 32 MiB L3."""
    table = tuple(((w, lv), 1e-9 / (float_gmacs[lv] if w == "float" else int8_gmacs))
                  for w in ("float", "int8") for lv in LEVELS)
    return CpuRates(table, (("l1", 32 * KIB), ("l2", MIB), ("l3", 32 * MIB)), cores, "made up")


def test_streaming_wins_only_where_the_float_weights_leave_the_fast_levels():
    """A core that reads float weights from L1/L2 as fast as it widens int8 codes, and from DRAM
    five times slower: an LSTM whose float weights fit the L2 widens its codes once; one whose
    float weights come from DRAM (and int8 codes do not) streams them."""
    rates = _rates({"l1": 40, "l2": 30, "l3": 20, "dram": 6}, int8_gmacs=28)
    assert not stream_int8_codes(128, 4, rates)  # 256 KiB of floats: L2, 30 vs 28 GMAC/s is a tie
    assert stream_int8_codes(2048, 4, rates)  # 64 MiB of floats: DRAM at 6 vs 28 GMAC/s
    # the same layer on 64 such cores: each core's share of the floats fits its L2
    assert not stream_int8_codes(2048, 4, _rates({"l1": 40, "l2": 30, "l3": 20, "dram": 6}, 28, cores=64))


def test_step_time_reads_the_level_of_each_cores_share():
    rates = _rates({"l1": 40, "l2": 30, "l3": 20, "dram": 5}, int8_gmacs=25, cores=2)
    macs = 4 * 512 * 512  # float: 2 MiB per core (L3); int8: 512 KiB per core (L2)
    assert rates.step_seconds(macs, "float") == pytest.approx(macs / 2 / 20e9)
    assert rates.step_seconds(macs, "int8") == pytest.approx(macs / 2 / 25e9)


@pytest.mark.parametrize("tag", CPU_TARGETS)
def test_yaml_roofline_is_ordered_by_memory_level(tag):
    """Float weights are never read faster from a farther level, and from DRAM int8 codes (a
    quarter of the bytes) are faster than floats on every target."""
    rates = yaml_rates(get(tag))
    table = dict(rates.mac_seconds)
    per_level = [table[("float", lv)] for lv in LEVELS]
    assert per_level == sorted(per_level) and all(t > 0 for t in table.values())
    assert table[("int8", "dram")] < table[("float", "dram")]
    assert tag in rates.source


def test_untuned_int8_knobs_follow_the_cost_model(monkeypatch):
    """``cpu_knobs`` widens int8 codes where the model says streaming does not pay and streams
    them where it does; float layers have nothing to widen."""
    target = get("cpu/x86-avx512")
    slow_dram = _rates({"l1": 40, "l2": 30, "l3": 20, "dram": 2}, int8_gmacs=28)
    monkeypatch.setattr(cpu_cost, "yaml_rates", lambda t: slow_dram)
    assert cpu_knobs(2048, 4, target, "float32", int8_weights=True).widen_codes == 0
    assert cpu_knobs(64, 4, target, "float32", int8_weights=True).widen_codes == 1
    assert cpu_knobs(2048, 4, target, "float32").widen_codes == 0


def test_probe_measures_once_and_remeasures_a_corrupted_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("RNNC_PROBE", raising=False)
    monkeypatch.setattr(probe, "_MEMO", {})
    host = get("cpu/host")
    calls = []

    def fake_measure(target):
        calls.append(target.tag)
        return {"version": probe.VERSION, "date": "now",
                "mac_seconds": {f"{w}/{lv}": 1e-11 * (i + 1) for i, (w, lv) in
                                enumerate((w, lv) for w in ("float", "int8") for lv in LEVELS)}}

    monkeypatch.setattr(probe, "measure", fake_measure)
    first = probe.host_rates(host)
    path = probe.cache_path(host)
    assert calls == ["cpu/host"] and path.exists() and "probed on this host" in first.source
    monkeypatch.setattr(probe, "_MEMO", {})
    assert probe.host_rates(host) == first and calls == ["cpu/host"]  # read back from the file
    for bad in ("{not json", json.dumps({"version": probe.VERSION}), json.dumps([1, 2])):
        path.write_text(bad)
        monkeypatch.setattr(probe, "_MEMO", {})
        assert probe.host_rates(host) == first  # measured again, the file rewritten
        assert json.loads(path.read_text())["version"] == probe.VERSION
    assert len(calls) == 4
    monkeypatch.setenv("RNNC_PROBE", "off")
    assert probe.host_rates(host).source == yaml_rates(host).source


def test_probe_of_this_host_measures_every_level(tmp_path, monkeypatch):
    """The real probe (a few seconds): every entry positive, float weights slower from DRAM than
    from L1 (any machine's DRAM is slower than its L1)."""
    monkeypatch.setenv("RNNC_CACHE_DIR", str(tmp_path))
    data = probe.measure(get("cpu/host"))
    table = data["mac_seconds"]
    assert set(table) == {f"{w}/{lv}" for w in ("float", "int8") for lv in LEVELS}
    assert all(v > 0 for v in table.values())
    assert table["float/dram"] > table["float/l1"]


@pytest.mark.parametrize("tag", CPU_TARGETS)
def test_yaml_roofline_shares_steps_among_the_cores_that_run_them(tag):
    """A target this machine can execute runs here, on at most this machine's cores; another
    ISA's kernel runs on the target's own cores."""
    import os

    from rnnc.targets.host import can_run

    target = get(tag)
    here = len(os.sched_getaffinity(0))
    cores = yaml_rates(target).cores
    assert cores == (min(target.cpu.cores, here) if can_run(target.cpu)[0] else target.cpu.cores)


def test_a_probe_that_cannot_build_falls_back_to_the_roofline_once(tmp_path, monkeypatch):
    from rnnc.errors import RnncError

    monkeypatch.setenv("RNNC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("RNNC_PROBE", raising=False)
    monkeypatch.setattr(probe, "_MEMO", {})
    calls = []

    def broken(target):
        calls.append(1)
        raise RnncError("gcc failed")

    monkeypatch.setattr(probe, "measure", broken)
    host = get("cpu/host")
    rates = probe.host_rates(host)
    assert "could not run (gcc failed)" in rates.source
    assert rates.mac_seconds == yaml_rates(host).mac_seconds
    assert probe.host_rates(host) is rates and calls == [1]  # remembered, not rebuilt per compile
    assert not probe.cache_path(host).exists()  # nothing measured, nothing cached
