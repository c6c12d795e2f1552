"""The ``modelkit run`` session logic and the client-side formatting, without a terminal."""

from __future__ import annotations

from typing import Any

import pytest

from modelkit.cli.humanize import go_duration
from modelkit.cli.repl import LineAssembler, Session, handle_line
from modelkit.cli.run_cmds import format_stats


class FakeAPI:
    """Records requests; answers /api/show with a fixed body."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        self.calls.append((method, path, body))
        if path == "/api/show":
            return {"system": "sys", "template": "{{ .Prompt }}", "details": {"family": "llama"}}
        return {"status": "success"}


def test_set_parameter_types_values_and_reports_errors() -> None:
    s = Session("m")
    out = handle_line(s, "/set parameter temperature 0.5", FakeAPI())
    assert out.text == "Set parameter 'temperature' to '0.5'" and s.options["temperature"] == 0.5
    out = handle_line(s, "/set parameter stop a b", FakeAPI())
    assert s.options["stop"] == ["a", "b"] and out.text == "Set parameter 'stop' to 'a, b'"
    out = handle_line(s, "/set parameter num_ctx big", FakeAPI())
    assert out.text.startswith("Couldn't set parameter:") and "invalid int value [big]" in out.text
    assert "num_ctx" not in s.options


def test_set_system_replaces_trailing_system_message() -> None:
    s = Session("m")
    handle_line(s, "/set system be brief", FakeAPI())
    handle_line(s, "/set system be very brief", FakeAPI())
    assert s.messages == [{"role": "system", "content": "be very brief"}]
    s.messages.append({"role": "user", "content": "hi"})
    handle_line(s, "/clear", FakeAPI())
    assert s.messages == [{"role": "system", "content": "be very brief"}]


@pytest.mark.parametrize(
    ("line", "attr", "value"),
    [
        ("/set verbose", "verbose", True),
        ("/set format json", "format", "json"),
        ("/set think", "think", True),
        ("/set nothink", "think", False),
        ("/set nowordwrap", "wordwrap", False),
    ],
)
def test_toggles(line: str, attr: str, value: object) -> None:
    s = Session("m")
    handle_line(s, line, FakeAPI())
    assert getattr(s, attr) == value


def test_show_save_load_and_unknown() -> None:
    api = FakeAPI()
    s = Session("m", options={"temperature": 0.1})
    assert handle_line(s, "/show template", api).text == "{{ .Prompt }}"
    s.messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert handle_line(s, "/save mine", api).text == "Created new model 'mine'"
    _, path, body = api.calls[-1]
    assert path == "/api/create" and body is not None
    assert body["from"] == "m" and body["parameters"] == {"temperature": 0.1}
    assert len(body["messages"]) == 2
    assert handle_line(s, "/load other", api).text == "Loading model 'other'"
    assert s.model == "other" and s.messages == []
    assert handle_line(s, "/frobnicate", api).text.startswith("Unknown command '/frobnicate'")
    assert handle_line(s, "/bye", api).kind == "exit"
    assert handle_line(s, "hello there", api).kind == "chat"


def test_multiline_assembly() -> None:
    a = LineAssembler()
    assert a.feed("plain") == "plain"
    assert a.feed('"""one-liner"""') == "one-liner"
    assert a.feed('"""first') is None and a.continuing
    assert a.feed("second") is None
    assert a.feed('third"""') == "first\nsecond\nthird"
    assert not a.continuing


def test_go_duration_and_stats() -> None:
    assert [go_duration(n) for n in (0, 850, 1500, 123_456_000, 2_345_678_901)] == [
        "0s",
        "850ns",
        "1.5µs",
        "123.456ms",
        "2.345678901s",
    ]
    assert go_duration(62_500_000_000) == "1m2.5s" and go_duration(3_600_000_000_000) == "1h0m0s"
    stats = format_stats(
        {"total_duration": 2_000_000_000, "eval_count": 10, "eval_duration": 500_000_000}
    )
    assert stats.splitlines() == [
        "total duration:       2s",
        "eval count:           10 token(s)",
        "eval duration:        500ms",
        "eval rate:            20.00 tokens/s",
    ]


def test_think_shortcuts() -> None:
    s = Session("m")
    assert handle_line(s, "/think", FakeAPI()).text == "Set 'think' mode." and s.think is True
    assert handle_line(s, "/no_think", FakeAPI()).text == "Set 'nothink' mode." and not s.think
