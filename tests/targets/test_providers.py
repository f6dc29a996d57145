"""Execution-provider files (``targets/providers/*.yaml``): every shipped file loads under its own
tag, the NNAPI and CoreML tables are onnxruntime's own (the installed wheel's markdown tables),
every op key names an operator onnxruntime knows, broken files fail with one sentence naming the
file and the field, and ``Provider.supports`` answers from the table."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from rnnc.errors import UserInputError
from rnnc.targets.providers import Provider, get_provider, provider_files, provider_tags

SHIPPED = ["ep/coreml", "ep/nnapi", "ep/ort-mobile", "ep/qnn", "ep/xnnpack"]
_ROW = re.compile(r"^\|\s*([A-Za-z0-9_.]+:[A-Za-z0-9_]+)\s*\|(.*)\|\s*$")


def _ort_table(name: str) -> dict[str, str]:
    """The rows ``|domain:Op|note|`` of one of the installed wheel's mobile_helpers tables."""
    spec = importlib.util.find_spec("onnxruntime")
    assert spec is not None and spec.origin, "onnxruntime is a dependency of rnnc"
    path = Path(spec.origin).parent / "tools" / "mobile_helpers" / name
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line.strip())
        if m:
            assert m.group(1) not in rows, f"{name}: {m.group(1)} listed twice"
            rows[m.group(1)] = m.group(2)
    assert len(rows) > 20, f"{path}: parsed only {len(rows)} operator rows; has the table format changed?"
    return rows


# --- shipped files ------------------------------------------------------------------------------


def test_provider_tags_lists_all_five():
    assert provider_tags() == SHIPPED
    assert [p.stem for p in provider_files()] == [t.split("/", 1)[1] for t in SHIPPED]


@pytest.mark.parametrize("path", provider_files(), ids=lambda p: p.name)
def test_shipped_file_loads_under_its_file_name(path: Path):
    by_short = get_provider(path.stem)
    assert isinstance(by_short, Provider)
    assert by_short.tag == f"ep/{path.stem}"
    assert by_short.short == path.stem
    assert get_provider(f"ep/{path.stem}") is by_short
    by_path = get_provider(str(path))
    assert by_path.tag == by_short.tag and dict(by_path.ops) == dict(by_short.ops)
    # the table or 'all', never an empty table; a provider that lists ops also names a checker for them
    assert by_short.all_ops != bool(by_short.ops)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data.get("sources"), f"{path.name}: no 'sources' naming where the op table comes from"


@pytest.mark.parametrize("tag, wheel_file", [
    ("ep/nnapi", "nnapi_supported_ops.md"),
    ("ep/coreml", "coreml_supported_mlprogram_ops.md"),
])
def test_op_table_equals_onnxruntimes_own(tag: str, wheel_file: str):
    ours = set(get_provider(tag).ops)
    theirs = set(_ort_table(wheel_file))
    assert ours == theirs, (f"{tag} differs from onnxruntime's {wheel_file}: only ours {sorted(ours - theirs)}, "
                            f"only onnxruntime's {sorted(theirs - ours)}")


# Keys that are not a registered operator schema, each kept on purpose (see the provider file).
_KNOWN_ODD = {
    "ep/coreml": {"ai.onnx:Argmax"},  # onnxruntime's own table spells ArgMax this way
    "ep/xnnpack": {"com.microsoft:QLinearConvTranspose"},  # documented; registered only in com.ms.internal.nhwc
}


@pytest.mark.parametrize("tag", [t for t in SHIPPED if t != "ep/ort-mobile"])
def test_every_op_key_is_an_operator_onnxruntime_registers(tag: str):
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_c

    known = {f"{s.domain or 'ai.onnx'}:{s.name}" for s in ort_c.get_all_operator_schema()}
    unknown = set(get_provider(tag).ops) - known
    assert unknown == _KNOWN_ODD.get(tag, set()), f"{tag}: op keys onnxruntime has no schema for: {sorted(unknown)}"


def test_shipped_choices():
    qnn, xnn, mob = get_provider("qnn"), get_provider("xnnpack"), get_provider("ort-mobile")
    assert qnn.provider == "QNNExecutionProvider" and "HTP" in qnn.name and qnn.fixed_shapes
    assert qnn.quant.format == "qdq" and qnn.quant.activations == "uint8" and qnn.max_rank in (4, 5)
    assert xnn.provider == "XnnpackExecutionProvider" and not xnn.fixed_shapes and xnn.quant.format == "qdq"
    assert mob.provider == "CPUExecutionProvider" and mob.all_ops and not mob.ops and mob.max_rank == 8
    assert mob.conv_spatial_dims == (1, 2, 3) and mob.pad_modes == ("constant", "reflect", "edge")
    for p in (qnn, xnn, mob):
        assert p.checker == "table" and p.ort_style == "Fixed" and p.ort_platform == "arm"
    for tag in ("ep/nnapi", "ep/coreml"):
        assert get_provider(tag).ort_style == "Runtime"


# --- errors -------------------------------------------------------------------------------------


def test_unknown_provider_names_the_closest_one():
    with pytest.raises(UserInputError, match="nnapi") as err:
        get_provider("nnap")
    assert "did you mean 'nnapi'" in str(err.value)
    with pytest.raises(UserInputError, match="unknown execution provider"):
        get_provider("ep/tensorrt")


def _base() -> dict:
    return yaml.safe_load(Path(get_provider("nnapi").path).read_text(encoding="utf-8"))


def _drop_max_rank(d: dict) -> None:
    del d["max_rank"]


def _fp8(d: dict) -> None:
    d["quantization"]["format"] = "fp8"


def _empty_ops(d: dict) -> None:
    d["ops"] = {}


def _bare_tag(d: dict) -> None:
    d["tag"] = "nnapi"


def _rank_as_text(d: dict) -> None:
    d["max_rank"] = "four"


def _bool_as_int(d: dict) -> None:
    d["fixed_shapes"] = 1


def _op_without_domain(d: dict) -> None:
    d["ops"]["MatMul"] = ""


def _conv_4d(d: dict) -> None:
    d["conv_spatial_dims"] = [2, 4]


def _bad_style(d: dict) -> None:
    d["ort_format"]["optimization_style"] = "Basic"


@pytest.mark.parametrize("mutate, field, also", [
    (_drop_max_rank, "max_rank", "missing"),
    (_fp8, "quantization.format", "fp8"),
    (_empty_ops, "ops", "domain:Op"),
    (_bare_tag, "tag", "ep/"),
    (_rank_as_text, "max_rank", "wrong type"),
    (_bool_as_int, "fixed_shapes", "wrong type"),
    (_op_without_domain, "ops.MatMul", "domain:Op"),
    (_conv_4d, "conv_spatial_dims", "[2, 4]"),
    (_bad_style, "ort_format.optimization_style", "Basic"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_bad_field_names_file_and_field(tmp_path: Path, mutate, field: str, also: str):
    data = _base()
    assert get_provider(_write(tmp_path / "ok.yaml", data)).tag == "ep/nnapi"  # the base is valid
    mutate(data)
    path = _write(tmp_path / "broken.yaml", data)
    with pytest.raises(UserInputError) as err:
        get_provider(path)
    message = str(err.value)
    assert path in message
    assert f"'{field}'" in message
    assert also in message


def test_invalid_yaml_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("tag: ep/x\nops: {ai.onnx:Add: ''\n", encoding="utf-8")
    with pytest.raises(UserInputError) as err:
        get_provider(str(path))
    assert str(path) in str(err.value) and "YAML" in str(err.value)


def test_missing_file_and_non_mapping_name_the_file(tmp_path: Path):
    with pytest.raises(UserInputError, match="not found"):
        get_provider(str(tmp_path / "absent.yaml"))
    path = tmp_path / "list.yaml"
    path.write_text("- ai.onnx:Add\n", encoding="utf-8")
    with pytest.raises(UserInputError, match="mapping") as err:
        get_provider(str(path))
    assert str(path) in str(err.value)


def _write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


# --- supports -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tag, op, domain, expected", [
    ("ep/nnapi", "Gather", "", True),
    ("ep/coreml", "Gather", "", False),
    ("ep/coreml", "GatherND", "", True),
    ("ep/nnapi", "MatMul", "ai.onnx", True),
    ("ep/nnapi", "QLinearAdd", "com.microsoft", True),
    ("ep/nnapi", "QLinearAdd", "", False),  # listed under com.microsoft, not ai.onnx
    ("ep/nnapi", "Loop", "", False),
    ("ep/coreml", "QuantizeLinear", "", False),
    ("ep/xnnpack", "Conv", "", True),
    ("ep/xnnpack", "MatMul", "", True),
    ("ep/xnnpack", "Gather", "", False),
    ("ep/xnnpack", "QLinearSoftmax", "com.microsoft", True),
    ("ep/qnn", "LSTM", "", True),
    ("ep/qnn", "QuantizeLinear", "", True),
    ("ep/qnn", "QuantizeLinear", "com.microsoft", True),
    ("ep/qnn", "Loop", "", False),  # "Loops and Ifs are not supported"
    ("ep/ort-mobile", "Loop", "", True),
    ("ep/ort-mobile", "Scan", "ai.onnx", True),
    ("ep/ort-mobile", "QLinearAdd", "com.microsoft", True),
    ("ep/ort-mobile", "NoSuchOp", "com.example", True),
])
def test_supports(tag: str, op: str, domain: str, expected: bool):
    assert get_provider(tag).supports(op, domain) is expected


def test_supports_follows_every_listed_key():
    for tag in SHIPPED:
        p = get_provider(tag)
        for key in p.ops:
            domain, op = key.split(":", 1)
            assert p.supports(op, domain), f"{tag}: {key} listed but not supported"
            assert p.supports(op, "" if domain == "ai.onnx" else domain)
        assert not p.supports("NotAnOnnxOp") or p.all_ops
