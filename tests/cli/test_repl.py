"""The ``modelkit run`` session logic and the client-side formatting, without a terminal."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.cli import run_cli
from fixtures.tiny_projector import tiny_image_bytes
from modelkit.cli import run_cmds
from modelkit.cli.humanize import go_duration
from modelkit.cli.repl import LineAssembler, Session, handle_line
from modelkit.cli.run_cmds import _interactive, format_stats


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


class FakeChatAPI(FakeAPI):
    """FakeAPI that also streams: records each streamed body, answers with one chunk."""

    def __init__(self, capabilities: list[str]) -> None:
        super().__init__()
        self.capabilities = capabilities
        self.streamed: list[tuple[str, dict[str, Any]]] = []

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = super().request(method, path, body)
        if path == "/api/show":
            return {**answer, "capabilities": self.capabilities}
        return answer

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.streamed.append((path, body))
        key = "message" if path == "/api/chat" else "response"
        part: Any = {"content": "ok"} if key == "message" else "ok"
        yield {key: part, "done": True}


def run_repl(
    api: FakeChatAPI, session: Session, lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feed ``lines`` to the interactive loop (then end of input)."""
    feed = iter(lines)

    def fake_input(prompt: str = "") -> str:
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    _interactive(api, session, False)  # type: ignore[arg-type]


@pytest.fixture
def picture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """``./cat.png`` and ``./my pic.png`` in the working directory; their bytes."""
    data = tiny_image_bytes("PNG")
    (tmp_path / "cat.png").write_bytes(data)
    (tmp_path / "my pic.png").write_bytes(data)
    (tmp_path / "fake.png").write_text("text")
    monkeypatch.chdir(tmp_path)
    return data


def test_repl_sends_typed_image_paths_as_images(
    picture: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeChatAPI(["completion", "vision"])
    session = Session("vision", vision=True)
    run_repl(
        api,
        session,
        [
            "/set parameter temperature 0",
            "what is in ./cat.png ?",
            "/home/nobody/none.png is missing",  # a /path prompt, left as it is
            '"""compare',
            "'my pic.png' ./my\\ pic.png",  # no ./ in quotes: only the escaped one is a path
            'please"""',
        ],
        monkeypatch,
    )
    chats = [body for path, body in api.streamed if path == "/api/chat"]
    assert len(chats) == 3
    first = chats[0]["messages"][-1]
    assert first == {
        "role": "user",
        "content": "what is in  ?",
        "images": [base64.b64encode(picture).decode()],
    }
    assert chats[0]["options"] == {"temperature": 0}
    assert chats[1]["messages"][-1] == {
        "role": "user",
        "content": "/home/nobody/none.png is missing",
    }
    third = chats[2]["messages"]
    assert third[-1]["content"] == "compare\n'my pic.png' \nplease"
    assert len(third[-1]["images"]) == 1
    # Images stay in the history, as in Ollama.
    assert third[0]["images"] == first["images"]
    err = capsys.readouterr().err
    assert err.count("Added image 'cat.png'") == 1
    assert "Added image 'my pic.png'" in err


def test_repl_refuses_a_file_that_is_no_image(
    picture: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeChatAPI(["completion", "vision"])
    session = Session("vision", vision=True)
    run_repl(api, session, ["look at ./fake.png", "hello"], monkeypatch)
    chats = [body for path, body in api.streamed if path == "/api/chat"]
    assert [c["messages"][-1]["content"] for c in chats] == ["hello"]
    err = capsys.readouterr().err
    assert 'Couldn\'t process file: "invalid file type: text/plain; charset=utf-8"' in err


def test_repl_without_vision_sends_paths_as_text(
    picture: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeChatAPI(["completion"])
    session = Session("tiny")
    run_repl(api, session, ["what is in ./cat.png ?", "/tmp/cat.png hi"], monkeypatch)
    chats = [body for path, body in api.streamed if path == "/api/chat"]
    assert [c["messages"][-1] for c in chats] == [
        {"role": "user", "content": "what is in ./cat.png ?"}
    ]
    out = capsys.readouterr()
    assert "Unknown command '/tmp/cat.png'. Type /? for help" in out.out
    assert "Added image" not in out.err


def test_load_switches_vision_from_capabilities() -> None:
    session = Session("tiny")
    handle_line(session, "/load vision", FakeChatAPI(["completion", "vision"]))
    assert session.vision
    handle_line(session, "/load tiny", FakeChatAPI(["completion"]))
    assert not session.vision


def test_one_shot_prompt_attaches_images(
    picture: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = FakeChatAPI(["completion", "vision"])
    monkeypatch.setattr(run_cmds, "_client", lambda: api)
    code, out, err = run_cli("run", "vision", "describe", "./cat.png")
    assert code == 0, err
    ((path, body),) = api.streamed
    assert path == "/api/generate"
    assert body["prompt"] == "describe"
    assert body["images"] == [base64.b64encode(picture).decode()]
    assert "Added image 'cat.png'" in err and out.strip() == "ok"
