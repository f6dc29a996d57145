"""`rnnc targets` and `rnnc targets show` through rnnc.cli.main."""

from __future__ import annotations

import json

import rnnc.targets as targets
from rnnc.cli import main


def test_targets_table_lists_every_tag(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for tag in targets.list_tags():
        assert tag in out
    assert main(["targets", "list"]) == 0
    assert capsys.readouterr().out == out


def test_targets_json(capsys):
    assert main(["targets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(d["tag"] for d in data) == targets.list_tags()


def test_show_text_and_json(capsys):
    assert main(["targets", "show", "nvidia/t4"]) == 0
    out = capsys.readouterr().out
    assert "sm_count: 40" in out and "64 KiB" in out and "[ds]" in out
    assert main(["targets", "show", "nvidia/t4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpu"]["shared_memory_per_block_optin_bytes"] == 65536
    assert data["gpu"]["mma_shapes"]["fp16"] == ["m16n8k8"]


def test_show_unknown_tag_exits_2(capsys):
    assert main(["targets", "show", "nvidia/t5"]) == 2
    err = capsys.readouterr().err
    assert "unknown target 'nvidia/t5'" in err and "nvidia/t4" in err
