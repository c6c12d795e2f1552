"""go_json_dumps against Go encoding/json behaviour and the §3.9 digests."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from modelkit.store import GoFloat32, GoJSONError, go_json_dumps, go_json_string


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a\nb\rc\td", '"a\\nb\\rc\\td"'),
        ("\b\f", '"\\b\\f"'),
        ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
        ("\x7f", '"\x7f"'),  # DEL is not escaped
        ("<|endoftext|>", '"\\u003c|endoftext|\\u003e"'),
        ("a & b", '"a \\u0026 b"'),
        ("</s>", '"\\u003c/s\\u003e"'),
        ("\u2028\u2029", '"\\u2028\\u2029"'),
        ("héllo 你好 👋", '"héllo 你好 👋"'),  # raw UTF-8
        ("lone \ud800", '"lone \\ufffd"'),  # invalid UTF-8 in Go terms
        ("'single'", "\"'single'\""),
        ("/slash", '"/slash"'),
    ],
)
def test_strings(text: str, encoded: str) -> None:
    assert go_json_string(text) == encoded
    assert go_json_dumps(text, newline=False) == encoded.encode("utf-8")


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0.6, "0.6"),
        (1.0, "1"),
        (1, "1"),
        (-3, "-3"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1e-7, "1e-7"),  # Go's 'e' format, then e-07 -> e-7
        (1.5e-10, "1.5e-10"),
        (1e-6, "0.000001"),  # the threshold itself is plain
        (9.99e-7, "9.99e-7"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789.0, "123456789"),
        (0.1 + 0.2, "0.30000000000000004"),
        (2.5, "2.5"),
        (-0.5, "-0.5"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (12345678901234567890, "12345678901234567890"),
    ],
)
def test_numbers(value: float, encoded: str) -> None:
    assert go_json_dumps(value, newline=False) == encoded.encode()


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (GoFloat32(0.6), "0.6"),  # float32(0.6) widened would print 0.6000000238418579
        (GoFloat32(0.7), "0.7"),
        (GoFloat32(1), "1"),
        (GoFloat32("0.123456789"), "0.12345679"),
        (GoFloat32(1e-7), "1e-7"),
        (GoFloat32(3e38), "3e+38"),
        (np.float32(0.95), "0.95"),
    ],
)
def test_float32(value: float, encoded: str) -> None:
    assert go_json_dumps(value, newline=False) == encoded.encode()
    assert float(GoFloat32(0.6)) == float(np.float32(0.6))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, GoFloat32(math.inf)])
def test_nan_inf_rejected(value: float) -> None:
    with pytest.raises(GoJSONError):
        go_json_dumps(value, newline=False)


def test_other_types() -> None:
    assert go_json_dumps(None, newline=False) == b"null"
    assert go_json_dumps(True, newline=False) == b"true"
    assert go_json_dumps([False, None, (1, 2)], newline=False) == b"[false,null,[1,2]]"
    assert go_json_dumps([], newline=False) == b"[]"
    assert go_json_dumps({}, newline=True) == b"{}\n"
    assert go_json_dumps(np.int64(7), newline=False) == b"7"
    with pytest.raises(GoJSONError):
        go_json_dumps({1: "x"}, newline=False)
    with pytest.raises(GoJSONError):
        go_json_dumps(object(), newline=False)


def test_key_order() -> None:
    obj = {"b": 1, "a": {"d": 1, "c": 2}, "é": 0, "Z": 0}
    assert go_json_dumps(obj, newline=False) == '{"b":1,"a":{"d":1,"c":2},"é":0,"Z":0}'.encode()
    assert (
        go_json_dumps(obj, newline=False, sort_keys=True)
        == '{"Z":0,"a":{"c":2,"d":1},"b":1,"é":0}'.encode()
    )
    assert go_json_dumps({"<": 1}, newline=False) == b'{"\\u003c":1}'


# -- §3.9 verified vectors -----------------------------------------------------------------


def test_params_vector() -> None:
    params = {"temperature": GoFloat32(1), "top_k": 10, "stop": ["USER:", "ASSISTANT:"]}
    raw = go_json_dumps(params, newline=True, sort_keys=True)
    assert raw == b'{"stop":["USER:","ASSISTANT:"],"temperature":1,"top_k":10}\n'
    digest = sha(raw)
    assert digest.startswith("1d0ad712") and digest.endswith("1e37")


def test_params_merged_vector() -> None:
    params = {"temperature": 0.6, "top_k": 10, "stop": ["USER:", "ASSISTANT:"], "top_p": 0.7}
    raw = go_json_dumps(params, newline=True, sort_keys=True)
    assert raw == b'{"stop":["USER:","ASSISTANT:"],"temperature":0.6,"top_k":10,"top_p":0.7}\n'
    assert sha(raw) == "e29a7b3c47287a2489c895d21fe413c20f859a85d20e749492f52a838e36e1ba"


def test_params_html_escape_vector() -> None:
    params = {"stop": ["<|endoftext|>"], "temperature": GoFloat32(0.6), "top_k": 10}
    params["top_p"] = GoFloat32(0.7)
    raw = go_json_dumps(params, newline=True, sort_keys=True)
    assert raw == (
        b'{"stop":["\\u003c|endoftext|\\u003e"],"temperature":0.6,"top_k":10,"top_p":0.7}\n'
    )
    assert sha(raw) == "12f58bb75cb3042d69a7e013ab87fb3c3c7088f50ddc62f0c77bd332f0d44d35"


def test_messages_vector() -> None:
    messages = [
        {"role": "assistant", "content": "What is my purpose?"},
        {"role": "user", "content": "You run tests."},
        {"role": "assistant", "content": "Oh, my god."},
    ]
    raw = go_json_dumps(messages, newline=True)
    assert sha(raw) == "298baeaf6928a60cf666d88d64a1ba606feb43a2865687c39e40652e407bffc4"


def test_phi3_params_vector() -> None:
    raw = go_json_dumps(
        {"stop": ["<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]}, newline=True
    )
    digest = sha(raw)
    assert digest.startswith("0d79f567") and digest.endswith("3cc5")


def test_text_layer_vectors() -> None:
    assert sha(b"Say hi!") == "f29e82a8284dbdf5910b1555580ff60b04238b8da9d5e51159ada67a4d0d5851"
    assert sha(b"Say bye!").startswith("4c5f51fa")
    assert sha(b"{{ .System }} {{ .Prompt }}").startswith("fe7ac77b")
