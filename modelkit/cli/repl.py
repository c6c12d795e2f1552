"""The interactive ``modelkit run`` session as plain logic: the state of a chat and what each
line (a message or a ``/command``) does to it. The terminal loop lives in ``run_cmds``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from modelkit.cli.image_paths import encode_image, extract_images, names_image_path, read_image
from modelkit.modelfile import ParameterError, format_parameter_value, parse_parameter_value

HELP = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command

Use \"\"\" to begin a multi-line message."""

HELP_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking"""

HELP_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template"""


class ShowAPI(Protocol):
    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


@dataclass
class Session:
    model: str
    system: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    format: str | None = None
    think: bool | None = None
    verbose: bool = False
    wordwrap: bool = True
    history: bool = True
    vision: bool = False  # the model has a projector: image paths in prompts are sent

    def user_message(self, text: str) -> tuple[dict[str, Any], list[Path]]:
        """The user message for ``text`` and the image files attached to it.

        For a vision model, the image paths in ``text`` are read into ``images`` and leave
        the text (raises ``ImageFileError`` for a file that is no image or too big).
        """
        if not self.vision:
            return {"role": "user", "content": text}, []
        content, paths = extract_images(text)
        message: dict[str, Any] = {"role": "user", "content": content}
        if paths:
            message["images"] = [encode_image(read_image(p)) for p in paths]
        return message, paths

    def chat_messages(self) -> list[dict[str, Any]]:
        return list(self.messages)

    def set_system(self, text: str) -> None:
        self.system = text
        if self.messages and self.messages[-1]["role"] == "system":
            self.messages[-1]["content"] = text
        else:
            self.messages.append({"role": "system", "content": text})

    def clear(self) -> None:
        self.messages = []
        if self.system:
            self.messages.append({"role": "system", "content": self.system})


@dataclass
class Outcome:
    """What a line asks for: send ``text`` to the model, print ``text``, or leave."""

    kind: Literal["chat", "print", "exit"]
    text: str = ""


class LineAssembler:
    """Joins lines of a ``\"\"\"`` multi-line message; ``feed`` returns a whole message or None."""

    def __init__(self) -> None:
        self.parts: list[str] | None = None

    @property
    def continuing(self) -> bool:
        return self.parts is not None

    def feed(self, line: str) -> str | None:
        if self.parts is None:
            if not line.startswith('"""'):
                return line
            rest = line[3:]
            if rest.endswith('"""') and len(rest) >= 3:
                return rest[:-3]
            self.parts = [rest]
            return None
        if line.endswith('"""'):
            self.parts.append(line[:-3])
            text = "\n".join(self.parts)
            self.parts = None
            return text.lstrip("\n")
        self.parts.append(line)
        return None


def _set(session: Session, args: list[str]) -> str:
    if not args:
        return HELP_SET
    what, rest = args[0], args[1:]
    if what == "parameter":
        if len(rest) < 2:
            return "Usage: /set parameter <name> <value>"
        name, values = rest[0], rest[1:]
        try:
            typed = [parse_parameter_value(name, v) for v in values]
        except ParameterError as err:
            return f'Couldn\'t set parameter: "{err.message}"'
        if name == "stop":  # a list option: each value is one stop sequence
            session.options[name] = [str(v[0]) if isinstance(v, list) else v for v in typed]
            shown = ", ".join(session.options[name])
        else:
            session.options[name] = typed[0]
            shown = format_parameter_value(typed[0])
        return f"Set parameter '{name}' to '{shown}'"
    if what == "system":
        session.set_system(" ".join(rest).strip('"'))
        return "Set system message."
    toggles: dict[str, tuple[str, Any, str]] = {
        "verbose": ("verbose", True, "Set 'verbose' mode."),
        "quiet": ("verbose", False, "Set 'quiet' mode."),
        "wordwrap": ("wordwrap", True, "Set 'wordwrap' mode."),
        "nowordwrap": ("wordwrap", False, "Set 'nowordwrap' mode."),
        "history": ("history", True, "Set 'history' mode."),
        "nohistory": ("history", False, "Set 'nohistory' mode."),
        "noformat": ("format", None, "Disabled format."),
        "think": ("think", True, "Set 'think' mode."),
        "nothink": ("think", False, "Set 'nothink' mode."),
    }
    if what == "format":
        if rest != ["json"]:
            return "Invalid or missing format. For 'json' mode use '/set format json'"
        session.format = "json"
        return "Set format to 'json' mode."
    if what in toggles:
        attr, value, message = toggles[what]
        setattr(session, attr, value)
        return message
    return f"Unknown command '/set {what}'. Type /? for help"


def _show(session: Session, args: list[str], api: ShowAPI) -> str:
    if not args:
        return HELP_SHOW
    body: dict[str, Any] = {"model": session.model, "options": session.options}
    if session.system:
        body["system"] = session.system
    info = api.request("POST", "/api/show", body)
    what = args[0]
    if what == "info":
        details = info.get("details", {})
        rows = [
            ("architecture", details.get("family", "")),
            ("parameters", details.get("parameter_size", "")),
            ("quantization", details.get("quantization_level", "")),
        ]
        return "  Model\n" + "\n".join(f"    {k:<16}{v}" for k, v in rows)
    if what in ("license", "modelfile", "parameters", "system", "template"):
        text = str(info.get(what) or "")
        return text or f"No {what} was specified for this model."
    return f"Unknown command '/show {what}'. Type /? for help"


def _save(session: Session, args: list[str], api: ShowAPI) -> str:
    if len(args) != 1:
        return "Usage:\n  /save <modelname>"
    body: dict[str, Any] = {
        "model": args[0],
        "from": session.model,
        "parameters": session.options,
        "messages": [m for m in session.messages if m["role"] != "system"],
        "stream": False,
    }
    if session.system:
        body["system"] = session.system
    api.request("POST", "/api/create", body)
    return f"Created new model '{args[0]}'"


def _load(session: Session, args: list[str], api: ShowAPI) -> str:
    if len(args) != 1:
        return "Usage:\n  /load <modelname>"
    info = api.request("POST", "/api/show", {"model": args[0]})  # raises when it is missing
    session.model = args[0]
    session.vision = is_vision(info)
    session.messages = []
    return f"Loading model '{args[0]}'"


def is_vision(show: Any) -> bool:
    """Whether an ``/api/show`` answer describes a model that takes images."""
    return isinstance(show, dict) and "vision" in (show.get("capabilities") or [])


def handle_line(session: Session, line: str, api: ShowAPI) -> Outcome:
    """Apply one complete input line (after multi-line assembly) to ``session``."""
    stripped = line.strip()
    if not stripped.startswith("/"):
        return Outcome("chat", line) if stripped else Outcome("print", "")
    word, *args = stripped.split()
    if word in ("/bye", "/exit"):
        return Outcome("exit")
    if word in ("/?", "/help"):
        topic = args[0] if args else ""
        return Outcome("print", {"set": HELP_SET, "show": HELP_SHOW}.get(topic, HELP))
    if word == "/set":
        return Outcome("print", _set(session, args))
    if word == "/show":
        return Outcome("print", _show(session, args, api))
    if word in ("/think", "/no_think"):  # the Qwen-style switches, as a shortcut
        session.think = word == "/think"
        return Outcome("print", f"Set '{'think' if session.think else 'nothink'}' mode.")
    if word == "/clear":
        session.clear()
        return Outcome("print", "Cleared session context")
    if word == "/save":
        return Outcome("print", _save(session, args, api))
    if word == "/load":
        return Outcome("print", _load(session, args, api))
    if session.vision and names_image_path(stripped):
        return Outcome("chat", line)  # "/tmp/cat.png what is this?" is a prompt
    return Outcome("print", f"Unknown command '{word}'. Type /? for help")
