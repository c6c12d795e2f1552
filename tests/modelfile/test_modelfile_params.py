"""The PARAMETER table and Go's value rules (reference §1.5)."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelkit.errors import ModelfileError
from modelkit.modelfile import (
    DEPRECATED_PARAMETERS,
    PARAMETER_TYPES,
    Diagnostic,
    Modelfile,
    Parameter,
    ParameterError,
    format_parameter_value,
    parse,
    parse_parameter_value,
    typed_parameters,
)
from modelkit.modelfile.params import go_format_float, shortest_float32_repr


def test_table_is_ollamas() -> None:
    ints = {
        "num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch",
        "num_gpu", "main_gpu", "num_thread", "draft_num_predict",
    }  # fmt: skip
    floats = {
        "top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
        "frequency_penalty",
    }  # fmt: skip
    expected = {
        **dict.fromkeys(ints, "int"),
        **dict.fromkeys(floats, "float"),
        "use_mmap": "bool",
        "stop": "list",
    }
    assert expected == PARAMETER_TYPES
    deprecated = "mirostat mirostat_tau mirostat_eta penalize_newline low_vram f16_kv logits_all"
    assert frozenset((deprecated + " vocab_only use_mlock").split()) == DEPRECATED_PARAMETERS
    assert not DEPRECATED_PARAMETERS & PARAMETER_TYPES.keys()


# -- int ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0", 0),
        ("1", 1),
        ("-1", -1),
        ("+7", 7),
        ("007", 7),
        ("4096", 4096),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
    ],
)
def test_int_good(raw: str, value: int) -> None:
    got = parse_parameter_value("num_ctx", raw)
    assert got == value
    assert type(got) is int


@pytest.mark.parametrize(
    "raw",
    [
        "", "1.0", "1e3", "0x10", "1_000", " 1", "1 ", "one", "١٢", "１",
        "9223372036854775808", "-9223372036854775809", "+", "-", "--1", "true",
    ],
)  # fmt: skip
def test_int_bad(raw: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_parameter_value("top_k", raw)
    err = info.value
    assert f"invalid int value [{raw}]" in err.message
    assert "top_k" in err.message
    assert "int" in err.message
    assert (err.parameter, err.value, err.line) == ("top_k", raw, 0)


# -- float -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0.7", 0.7),
        ("0.1", 0.1),
        ("1.0", 1.0),
        ("1", 1.0),
        ("0.5", 0.5),
        ("0.05", 0.05),
        ("0.33333333333", 0.33333334),  # 1/3 as a float32, shortest form
        ("0.333333333333333333333", 0.33333334),
        ("-2", -2.0),
        ("+.5", 0.5),
        ("5.", 5.0),
        ("1e-7", 1e-07),
        ("1E3", 1000.0),
        ("16777217", 16777216.0),  # 2**24 + 1 is not a float32
        ("3.4028235e38", 3.4028235e38),  # the largest float32
        ("1e-45", 1e-45),  # the smallest float32 subnormal
        ("1e-46", 0.0),  # underflow is zero, not an error (as in Go)
        ("0x1p-2", 0.25),  # Go hex float
        ("0x1.8p1", 3.0),
        ("1_000.5", 1000.5),  # Go accepts _ between digits in ParseFloat
        ("0x_1p0", 1.0),
    ],
)
def test_float_good(raw: str, value: float) -> None:
    got = parse_parameter_value("temperature", raw)
    assert got == value
    assert type(got) is float


def test_float_is_float32_shortest() -> None:
    got = parse_parameter_value("temperature", "0.7")
    assert repr(got) == "0.7"
    f32 = struct.unpack("<f", struct.pack("<f", 0.7))[0]
    assert f32 != 0.7  # the float32 itself is 0.699999988079071
    assert shortest_float32_repr(f32) == "0.7"
    assert repr(parse_parameter_value("top_p", "0.9")) == "0.9"
    assert repr(parse_parameter_value("repeat_penalty", "1.1")) == "1.1"
    assert parse_parameter_value("min_p", "-0") == 0.0
    assert math.copysign(1.0, float(parse_parameter_value("min_p", "-0"))) == -1.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        "", "abc", "0.7f", "1,5", " 0.5", "0.5 ", "1e", "e5", ".", "-", "0x1.8", "0x",
        "1__0", "_1", "1_", "1_.5", "1._5", "1e_5", "１.０", "nan", "NaN", "inf", "-Inf",
        "infinity", "3.4028236e38", "1e39", "-1e39", "1e99999999", "0x1p128",
    ],
)  # fmt: skip
def test_float_bad(raw: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_parameter_value("temperature", raw)
    assert f"invalid float value [{raw}]" in info.value.message
    assert "temperature" in info.value.message
    assert "float" in info.value.message


@settings(max_examples=300, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_values_round_trip(f32: float) -> None:
    text = shortest_float32_repr(f32)
    got = parse_parameter_value("temperature", text)
    assert isinstance(got, float)
    assert struct.pack("<f", got) == struct.pack("<f", f32)
    np = pytest.importorskip("numpy")
    # numpy prints float32s with the shortest unique digits too
    assert got == float(str(np.float32(f32)))


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-3.4e38, max_value=3.4e38))
def test_float_rounds_like_ieee_float32(x: float) -> None:
    # The exact decimal expansion of x must round the way struct (IEEE, ties to even) rounds x.
    got = parse_parameter_value("temperature", str(Decimal(x)))
    assert isinstance(got, float)
    assert struct.pack("<f", got) == struct.pack("<f", x)


# -- bool --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "t", "T", "TRUE", "true", "True"])
def test_bool_true(raw: str) -> None:
    assert parse_parameter_value("use_mmap", raw) is True


@pytest.mark.parametrize("raw", ["0", "f", "F", "FALSE", "false", "False"])
def test_bool_false(raw: str) -> None:
    assert parse_parameter_value("use_mmap", raw) is False


@pytest.mark.parametrize("raw", ["", "yes", "no", "on", "tRUE", "fAlse", "2", " true", "y"])
def test_bool_bad(raw: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_parameter_value("use_mmap", raw)
    assert f"invalid bool value [{raw}]" in info.value.message
    assert "use_mmap" in info.value.message
    assert "bool" in info.value.message


# -- names, lists, deprecation -----------------------------------------------------------------


def test_stop_is_a_list() -> None:
    assert parse_parameter_value("stop", "<|eot_id|>") == ["<|eot_id|>"]
    assert parse_parameter_value("stop", "") == [""]


@pytest.mark.parametrize(
    "name", ["numa", "num_gqa", "Temperature", "TOP_K", "", "tfs_z", *sorted(DEPRECATED_PARAMETERS)]
)
def test_unknown_names(name: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_parameter_value(name, "1")
    assert f"unknown parameter '{name}'" in info.value.message
    assert info.value.value is None


def test_unknown_name_suggestion() -> None:
    with pytest.raises(ParameterError, match=r"did you mean 'temperature'"):
        parse_parameter_value("Temperature", "1")


def test_typed_parameters_last_wins_stop_accumulates_deprecated_skipped() -> None:
    mf = parse(
        "FROM x\n"
        "PARAMETER stop <|a|>\n"
        "PARAMETER temperature 0.1\n"
        "PARAMETER mirostat 2\n"
        'PARAMETER stop "<|b|> "\n'
        "PARAMETER temperature 0.7\n"
        "PARAMETER use_mmap F\n"
        "PARAMETER stop <|a|>\n"
        "PARAMETER num_ctx 8192\n"
    )
    params = typed_parameters(mf)
    assert params == {
        "stop": ["<|a|>", "<|b|> ", "<|a|>"],
        "temperature": 0.7,
        "use_mmap": False,
        "num_ctx": 8192,
    }
    assert list(params) == ["stop", "temperature", "use_mmap", "num_ctx"]
    assert mf.warnings == (
        Diagnostic(4, 11, "warning", "parameter mirostat is deprecated", "deprecated-parameter"),
    )
    assert Parameter("mirostat", "2") in mf.instructions  # kept in the AST


@pytest.mark.parametrize("name", sorted(DEPRECATED_PARAMETERS))
def test_every_deprecated_name_warns(name: str) -> None:
    mf = parse(f"FROM x\nPARAMETER {name} whatever value\n")
    assert [w.message for w in mf.warnings] == [f"parameter {name} is deprecated"]
    assert all(w.severity == "warning" for w in mf.warnings)
    assert typed_parameters(mf) == {}


def test_typed_parameters_on_a_hand_built_ast() -> None:
    mf = Modelfile((Parameter("top_k", "x"),), path="hand")
    with pytest.raises(ModelfileError, match=r"invalid int value \[x\]") as info:
        typed_parameters(mf)
    assert info.value.path == "hand"


# -- formatting values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (40, "40"),
        (-1, "-1"),
        (True, "true"),
        (False, "false"),
        (0.7, "0.7"),
        (1.0, "1"),
        (0.33333334, "0.33333334"),
        (1e-07, "1e-07"),
        (0.0001, "0.0001"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (123456789.0, "1.23456789e+08"),
        (-0.0, "-0"),
        (["a", "b"], "[a b]"),
        ("<|eot|>", "<|eot|>"),
    ],
)
def test_format_parameter_value(value: float | bool | list[str] | str, text: str) -> None:
    assert format_parameter_value(value) == text


@pytest.mark.parametrize("name", sorted(n for n, t in PARAMETER_TYPES.items() if t != "list"))
@pytest.mark.parametrize("raw", ["1", "0", "0.25", "true", "-3", "0.7", "1e-7", "123456789"])
def test_format_is_the_inverse_of_parse(name: str, raw: str) -> None:
    try:
        value = parse_parameter_value(name, raw)
    except ParameterError:
        return
    assert parse_parameter_value(name, format_parameter_value(value)) == value


def test_go_format_float_special() -> None:
    assert go_format_float(math.nan) == "NaN"
    assert go_format_float(math.inf) == "+Inf"
    assert go_format_float(-math.inf) == "-Inf"
    assert go_format_float(0.0) == "0"
    assert go_format_float(123456.7) == "123456.7"
    assert go_format_float(1.5e300) == "1.5e+300"
