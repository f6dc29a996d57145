"""The predicted latency ``scheme="auto"`` ranks plans by on targets it cannot time
(``rnnc.quant.latency``).

References: the targets' YAML numbers read here with PyYAML (not through rnnc's loader), and
the roofline arithmetic written out by hand for one site.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from quant_helpers import inputs

import rnnc
from rnnc.quant.latency import Rates, predict_seconds, site_load
from rnnc.targets import get

TARGETS = Path(__file__).resolve().parents[2] / "targets"


@pytest.mark.parametrize("tag,per_lane", [("cpu/x86-avx2", 2), ("cpu/x86-avx512", 4), ("cpu/arm64-neon", 4)])
def test_rates_come_from_the_targets_yaml(tag, per_lane):
    data = yaml.safe_load((TARGETS / f"{tag.replace('/', '-')}.yaml").read_text())
    cpu = data["cpu"]
    lanes = cpu["vector_width_bits"] // 32
    flt = cpu["fma_units_per_core"] * lanes * data["clock_mhz"] * 1e6
    rates = Rates.of(get(tag))
    assert rates.float_macs == pytest.approx(flt)
    assert rates.int8_macs == pytest.approx(flt * per_lane)  # vpmaddubsw pairs: 2; vpdpbusd / sdot: 4
    assert rates.elementwise == pytest.approx(lanes * data["clock_mhz"] * 1e6)


def test_a_large_site_gains_from_int8_and_a_small_one_loses():
    rates = Rates(float_macs=32e9, int8_macs=128e9, elementwise=16e9, source="made up")
    big, small = site_load((1024, 512), rows=100), site_load((4, 4), rows=100)
    assert big.macs == 100 * 512 * 1024
    f = predict_seconds({"w": big}, {"w": "float"}, rates)
    d = predict_seconds({"w": big}, {"w": "int8"}, rates)
    s = predict_seconds({"w": big}, {"w": "int8-static"}, rates)
    assert f == pytest.approx(big.macs / 32e9)
    assert d == pytest.approx(big.macs / 128e9 + (2 * 100 * 512 + 100 * 1024) / 16e9)
    assert s < d < f < 4 * d
    tiny_f = predict_seconds({"w": small}, {"w": "weight-only"}, rates)
    assert predict_seconds({"w": small}, {"w": "int8"}, rates) > tiny_f  # the passes cost more than they save


def _lstm():
    class Lstm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.head = torch.nn.LSTM(8, 128, batch_first=True), torch.nn.Linear(128, 64)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    torch.manual_seed(0)
    return rnnc.trace(Lstm().eval(), (inputs(),))


def test_another_targets_data_decides_the_plan(tmp_path):
    """The same model and budget on two targets that differ only in their integer dot product:
    with VNNI's exact four-per-lane products the fused int8 LSTM is predicted faster and chosen;
    with no integer dot product at all nothing integer is predicted faster, so a float-speed plan
    ships, and the report says so."""
    program = _lstm()
    calib = [inputs(seed=s) for s in range(4)]
    vnni = rnnc.quantize(program, calib, "auto", "none", max_loss=0.05, gptq=False, progress=False,
                         target="cpu/x86-avx512")
    assert vnni.auto.speed.startswith("predicted from the target's data (cpu/x86-avx512")
    assert vnni.auto.chosen.int8_sites and vnni.auto.chosen.latency_ms < vnni.auto.fp32_ms
    data = yaml.safe_load((TARGETS / "cpu-x86-avx512.yaml").read_text())
    data["cpu"]["int8_dot"] = {"instruction": "generic", "semantics": "exact", "format": "s8"}  # no dot product
    data["tag"] = "cpu/no-int8-dot"
    plain = tmp_path / "no-int8-dot.yaml"
    plain.write_text(yaml.safe_dump(data))
    q = rnnc.quantize(program, calib, "auto", "none", max_loss=0.05, gptq=False, progress=False, target=str(plain))
    assert q.auto.chosen.int8_sites == 0 and "no plan within the budget is predicted faster" in q.auto.note
