"""modelkit.config: OLLAMA_* parsing against Ollama's envconfig vectors (reference §8)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from modelkit.config import (
    DEFAULT_ORIGINS,
    FOREVER,
    TRACE,
    HostURL,
    Settings,
    env_bool,
    env_tristate,
    env_uint,
    env_value,
    format_duration,
    parse_debug,
    parse_duration,
    parse_duration_ns,
    parse_host,
    parse_keep_alive,
    parse_origins,
)

# -- primitives ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", ""), ("  x ", "x"), ('"x"', "x"), ("'x'", "x"), (' "x" ', "x"), ("\"'x'\"", "x")],
)
def test_env_value_strips_space_then_quotes(raw: str, expected: str) -> None:
    assert env_value({"K": raw}, "K") == expected
    assert env_value({}, "K") == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", False),
        ("false", False),
        ("0", False),
        ("f", False),
        ("F", False),
        ("FALSE", False),
        ("False", False),
        ("true", True),
        ("1", True),
        ("t", True),
        ("TRUE", True),
        ("yes", True),  # unparsable non-empty counts as true
        ("random", True),
        ("something", True),
        ('"false"', False),
    ],
)
def test_env_bool(raw: str, expected: bool) -> None:
    assert env_bool({"K": raw}, "K") is expected


def test_env_bool_default_and_tristate() -> None:
    assert env_bool({}, "K") is False
    assert env_bool({}, "K", True) is True
    assert env_bool({"K": " "}, "K", True) is True
    assert env_bool({"K": "0"}, "K", True) is False
    assert env_tristate({}, "K") is None
    assert env_tristate({"K": ""}, "K") is None
    assert env_tristate({"K": "1"}, "K") is True
    assert env_tristate({"K": "false"}, "K") is False
    assert env_tristate({"K": "bogus"}, "K") is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", 11434),
        ("0", 0),
        ("1", 1),
        ("1337", 1337),
        (" 42 ", 42),
        ("'7'", 7),
        ("-1", 11434),
        ("0x10", 11434),
        ("1.5", 11434),
        ("+5", 11434),
        ("1_000", 11434),
        ("abc", 11434),
        ("18446744073709551616", 11434),  # 2^64 overflows ParseUint
    ],
)
def test_env_uint(raw: str, expected: int) -> None:
    assert env_uint({"K": raw}, "K", 11434) == expected


def test_env_uint_invalid_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelkit.config"):
        assert env_uint({"OLLAMA_NUM_PARALLEL": "many"}, "OLLAMA_NUM_PARALLEL", 1) == 1
    assert "OLLAMA_NUM_PARALLEL" in caplog.text
    assert "invalid" in caplog.text


# -- OLLAMA_HOST -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # envconfig/config_test.go TestHost, verbatim
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":1234", "http://:1234"),
        ("example.com", "http://example.com:11434"),
        ("example.com:1234", "http://example.com:1234"),
        (":0", "http://:0"),
        (":66000", "http://:11434"),
        (":-1", "http://:11434"),
        ("[::1]", "http://[::1]:11434"),
        ("::1", "http://[::1]:11434"),
        ("[::]", "http://[::]:11434"),
        ("::", "http://[::]:11434"),
        ("[::1]:1337", "http://[::1]:1337"),
        (" 1.2.3.4 ", "http://1.2.3.4:11434"),
        ('"1.2.3.4"', "http://1.2.3.4:11434"),
        ("'1.2.3.4'", "http://1.2.3.4:11434"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("https://1.2.3.4", "https://1.2.3.4:443"),
        ("http://1.2.3.4:1234", "http://1.2.3.4:1234"),
        ("https://example.com/ollama", "https://example.com:443/ollama"),
        ("https://example.com:1234/a/b", "https://example.com:1234/a/b"),
        ("http://example.com/", "http://example.com:80"),
        ("ollama.com", "https://ollama.com:443"),
        ("ollama.com:1234", "http://ollama.com:1234"),
        ("unix://x", "unix://x:11434"),  # other schemes keep 11434
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("0.0.0.0:8080", "http://0.0.0.0:8080"),
        ("::ffff:1.2.3.4", "http://1.2.3.4:11434"),  # Go prints v4-in-v6 as IPv4
        ("example.com:", "http://example.com:11434"),  # empty port → default
        ("example.com:http", "http://example.com:11434"),
    ],
)
def test_parse_host(raw: str, expected: str) -> None:
    assert parse_host(raw).url == expected
    assert str(Settings.from_env({"OLLAMA_HOST": raw}).host) == expected


def test_parse_host_parts() -> None:
    assert parse_host("https://[::1]:8443/api/x") == HostURL("https", "::1", 8443, "api/x")
    assert parse_host("") == HostURL()
    h = parse_host("[::1]:1337")
    assert (h.host, h.port, h.netloc) == ("::1", 1337, "[::1]:1337")


def test_parse_host_bad_port_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelkit.config"):
        assert parse_host(":66000").port == 11434
    assert "invalid port" in caplog.text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("::", "http://[::1]:11434"),
        ("[::]:99", "http://[::1]:99"),
        ("https://0.0.0.0/x", "https://127.0.0.1:443/x"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        ("example.com", "http://example.com:11434"),
        ("[::1]", "http://[::1]:11434"),
        (":1234", "http://127.0.0.1:1234"),  # empty host dials loopback
    ],
)
def test_connectable_url(raw: str, expected: str) -> None:
    assert Settings.from_env({"OLLAMA_HOST": raw}).connectable_url == expected


# -- OLLAMA_ORIGINS --------------------------------------------------------------------------

_DEFAULTS = [
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://0.0.0.0",
    "https://0.0.0.0",
    "http://0.0.0.0:*",
    "https://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
]


@pytest.mark.parametrize(
    ("raw", "user"),
    [
        ("", []),
        ("http://10.0.0.1", ["http://10.0.0.1"]),
        ("http://172.16.0.1,https://192.168.0.1", ["http://172.16.0.1", "https://192.168.0.1"]),
        (
            "http://totally.safe,http://definitely.legit",
            ["http://totally.safe", "http://definitely.legit"],
        ),
        ("*", ["*"]),
        ("chrome-extension://*", ["chrome-extension://*"]),
        ("a, b", ["a", " b"]),  # items are not trimmed, as in Ollama
    ],
)
def test_origins(raw: str, user: list[str]) -> None:
    assert list(DEFAULT_ORIGINS) == _DEFAULTS
    assert list(parse_origins(raw)) == [*user, *_DEFAULTS]
    assert list(Settings.from_env({"OLLAMA_ORIGINS": raw}).origins) == [*user, *_DEFAULTS]


# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("5s", 5_000_000_000),
        ("30s", 30_000_000_000),
        ("1478s", 1478_000_000_000),
        ("-5s", -5_000_000_000),
        ("+5s", 5_000_000_000),
        ("-0s", 0),
        ("5.0s", 5_000_000_000),
        ("5.6s", 5_600_000_000),
        ("5.s", 5_000_000_000),
        (".5s", 500_000_000),
        ("1.0s", 1_000_000_000),
        ("1.00s", 1_000_000_000),
        ("1.004s", 1_004_000_000),
        ("100.00100s", 100_001_000_000),
        ("10ns", 10),
        ("11us", 11_000),
        ("12µs", 12_000),
        ("12μs", 12_000),
        ("13ms", 13_000_000),
        ("14s", 14_000_000_000),
        ("15m", 15 * 60_000_000_000),
        ("16h", 16 * 3_600_000_000_000),
        ("3h30m", (3 * 60 + 30) * 60_000_000_000),
        ("10.5s4m", 4 * 60_000_000_000 + 10_500_000_000),
        ("-2m3.4s", -(2 * 60_000_000_000 + 3_400_000_000)),
        ("1h2m3s4ms5us6ns", 3_723_004_005_006),
        ("39h9m14.425s", 140_954_425_000_000),
        ("52763797000ns", 52_763_797_000),
        ("0.3333333333333333333h", 1_200_000_000_000),
        ("9007199254740993ns", 9_007_199_254_740_993),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
        ("0.100000000000000000000h", 360_000_000_000),
    ],
)
def test_parse_duration_go_vectors(text: str, ns: int) -> None:
    # from Go's time/time_test.go parseDurationTests
    assert parse_duration_ns(text) == ns
    assert parse_duration(text) == pytest.approx(ns / 1e9)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "3",
        "-",
        "s",
        ".",
        "-.",
        ".s",
        "+.s",
        "1d",
        "1w",
        "1y",
        "???",
        "\x85\x85",
        "\xffff",
        "hello \xffff world",
        "9223372036854775808ns",
        "9223372036854775810ns",
        "-9223372036854775809ns",
        "1 s",
        "1s ",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("3", 'time: missing unit in duration "3"'),
        ("300", 'time: missing unit in duration "300"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        (".s", 'time: invalid duration ".s"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ],
)
def test_parse_duration_error_texts_match_go(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


def test_parse_keep_alive_accepts_plain_seconds() -> None:
    assert parse_keep_alive("60") == 60.0
    assert parse_keep_alive("-1") == -1.0
    assert parse_keep_alive("1h30m") == 5400.0
    assert parse_keep_alive("300ms") == 0.3
    with pytest.raises(ValueError):
        parse_keep_alive("1d")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # envconfig/config_test.go TestKeepAlive
        ("", 300.0),
        ("1s", 1.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("5m0s", 300.0),
        ("1h2m3s", 3723.0),
        ("0", 0.0),
        ("60", 60.0),
        ("1", 1.0),
        ("3600", 3600.0),
        ("-0", 0.0),
        ("-1", FOREVER),
        ("-1m", FOREVER),
        (" ", 300.0),
        ("???", 300.0),
        ("1d", 300.0),
        ("1y", 300.0),
        ("1w", 300.0),
        ("300ms", 0.3),
        ("1h30m", 5400.0),
    ],
)
def test_keep_alive(raw: str, expected: float) -> None:
    assert Settings.from_env({"OLLAMA_KEEP_ALIVE": raw}).keep_alive == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # envconfig/config_test.go TestLoadTimeout
        ("", 300.0),
        ("1s", 1.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("5m0s", 300.0),
        ("1h2m3s", 3723.0),
        ("0", FOREVER),
        ("60", 60.0),
        ("1", 1.0),
        ("3600", 3600.0),
        ("-0", FOREVER),
        ("-1", FOREVER),
        ("-1m", FOREVER),
        (" ", 300.0),
        ("???", 300.0),
        ("1d", 300.0),
        ("1y", 300.0),
        ("1w", 300.0),
    ],
)
def test_load_timeout(raw: str, expected: float) -> None:
    assert Settings.from_env({"OLLAMA_LOAD_TIMEOUT": raw}).load_timeout == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (300, "5m0s"),
        (1, "1s"),
        (3723, "1h2m3s"),
        (5400, "1h30m0s"),
        (0.3, "300ms"),
        (0.0015, "1.5ms"),
        (2.5e-6, "2.5µs"),
        (1e-9, "1ns"),
        (-90, "-1m30s"),
        (10.5, "10.5s"),
        (math.inf, "forever"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# -- OLLAMA_DEBUG ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "verbosity", "slog", "py"),
    [
        # envconfig/config_test.go TestLogLevel
        ("", 0, 0, logging.INFO),
        ("false", 0, 0, logging.INFO),
        ("f", 0, 0, logging.INFO),
        ("0", 0, 0, logging.INFO),
        ("true", 1, -4, logging.DEBUG),
        ("t", 1, -4, logging.DEBUG),
        ("1", 1, -4, logging.DEBUG),
        ("2", 2, -8, TRACE),
        ("-1", -1, 4, logging.WARNING),
        ("-2", -2, 8, logging.ERROR),
        ("yes", 0, 0, logging.INFO),
        ("'1'", 1, -4, logging.DEBUG),
    ],
)
def test_debug(raw: str, verbosity: int, slog: int, py: int) -> None:
    settings = Settings.from_env({"OLLAMA_DEBUG": raw})
    assert settings.debug == verbosity
    assert settings.slog_level == slog
    assert settings.log_level == py


def test_parse_debug_large_values() -> None:
    assert parse_debug("99999999999999999999") == 0  # overflows ParseInt → INFO
    assert parse_debug("3") == 3


# -- Settings --------------------------------------------------------------------------------


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings.from_env({})
    assert s.models == tmp_path / ".ollama" / "models"
    assert s.host.url == "http://127.0.0.1:11434"
    assert s.connectable_url == "http://127.0.0.1:11434"
    assert s.origins == DEFAULT_ORIGINS
    assert s.keep_alive == 300.0
    assert s.load_timeout == 300.0
    assert s.num_parallel == 1
    assert s.max_loaded_models == 3
    assert s.max_queue == 512
    assert s.context_length == 4096
    assert s.flash_attention is None
    assert s.kv_cache_type == ""
    assert s.debug == 0
    assert s.tmpdir is None
    assert s.noprune is False
    assert s.nohistory is False
    # the dataclass defaults agree with the environment defaults
    assert Settings(models=s.models) == s


def test_from_env_reads_everything(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "OLLAMA_MODELS": str(tmp_path / "m"),
            "OLLAMA_HOST": "0.0.0.0:8080",
            "OLLAMA_ORIGINS": "http://x",
            "OLLAMA_KEEP_ALIVE": "10m",
            "OLLAMA_LOAD_TIMEOUT": "30s",
            "OLLAMA_NUM_PARALLEL": "4",
            "OLLAMA_MAX_LOADED_MODELS": "2",
            "OLLAMA_MAX_QUEUE": "10",
            "OLLAMA_CONTEXT_LENGTH": "8192",
            "OLLAMA_FLASH_ATTENTION": "1",
            "OLLAMA_KV_CACHE_TYPE": "q8_0",
            "OLLAMA_DEBUG": "1",
            "OLLAMA_TMPDIR": str(tmp_path / "t"),
            "OLLAMA_NOPRUNE": "true",
            "OLLAMA_NOHISTORY": "1",
        }
    )
    assert s.models == tmp_path / "m"
    assert s.host == HostURL("http", "0.0.0.0", 8080, "")
    assert s.connectable_url == "http://127.0.0.1:8080"
    assert s.origins[0] == "http://x"
    assert s.keep_alive == 600.0
    assert s.load_timeout == 30.0
    assert s.num_parallel == 4
    assert s.max_loaded_models == 2
    assert s.max_queue == 10
    assert s.context_length == 8192
    assert s.flash_attention is True
    assert s.kv_cache_type == "q8_0"
    assert s.debug == 1
    assert s.tmpdir == tmp_path / "t"
    assert s.noprune is True
    assert s.nohistory is True


def test_automatic_values_resolve() -> None:
    s = Settings.from_env(
        {"OLLAMA_NUM_PARALLEL": "0", "OLLAMA_MAX_LOADED_MODELS": "0", "OLLAMA_CONTEXT_LENGTH": "0"}
    )
    assert (s.num_parallel, s.max_loaded_models, s.context_length) == (1, 3, 4096)
    assert Settings.from_env({"OLLAMA_MAX_QUEUE": "0"}).max_queue == 0
    assert Settings.from_env({"OLLAMA_FLASH_ATTENTION": "false"}).flash_attention is False


def test_invalid_uints_warn_and_default(caplog: pytest.LogCaptureFixture) -> None:
    env = {
        "OLLAMA_NUM_PARALLEL": "-2",
        "OLLAMA_MAX_LOADED_MODELS": "x",
        "OLLAMA_MAX_QUEUE": "1e3",
        "OLLAMA_CONTEXT_LENGTH": "4k",
    }
    with caplog.at_level(logging.WARNING, logger="modelkit.config"):
        s = Settings.from_env(env)
    assert (s.num_parallel, s.max_loaded_models, s.max_queue, s.context_length) == (
        1,
        3,
        512,
        4096,
    )
    for key in env:
        assert key in caplog.text


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "example.com:1")
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", "-1")
    s = Settings.from_env()
    assert s.host.url == "http://example.com:1"
    assert s.keep_alive == math.inf


def test_describe_rows() -> None:
    s = Settings.from_env({"OLLAMA_MODELS": "/m", "OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_DEBUG": "2"})
    rows = s.describe()
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names))
    assert all(name.startswith(("OLLAMA_", "MODELKIT_")) and text for name, _, text in rows)
    values = {name: value for name, value, _ in rows}
    assert values["MODELKIT_AMX"] == "false" and values["MODELKIT_OLLAMA_VERSION"] == "0.33.0"
    assert values["OLLAMA_HOST"] == "http://127.0.0.1:11434"
    assert values["OLLAMA_MODELS"] == "/m"
    assert values["OLLAMA_KEEP_ALIVE"] == "forever"
    assert values["OLLAMA_LOAD_TIMEOUT"] == "5m0s"
    assert values["OLLAMA_DEBUG"] == "TRACE"
    assert values["OLLAMA_NUM_PARALLEL"] == "1"
    assert values["OLLAMA_MAX_LOADED_MODELS"] == "3"
    assert values["OLLAMA_MAX_QUEUE"] == "512"
    assert values["OLLAMA_CONTEXT_LENGTH"] == "4096"
    assert values["OLLAMA_FLASH_ATTENTION"] == "auto"
    assert values["OLLAMA_KV_CACHE_TYPE"] == "f16"
    assert values["OLLAMA_NOPRUNE"] == "false"
    assert values["OLLAMA_ORIGINS"].endswith("vscode-file://*")
    for key in (
        "OLLAMA_NOHISTORY",
        "OLLAMA_TMPDIR",
    ):
        assert key in values
