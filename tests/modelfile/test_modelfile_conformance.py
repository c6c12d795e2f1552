"""Ollama's parser conformance cases (parser/parser_test.go, reference §1.8), case by case.

Ollama's ``ParseFile`` does not type parameters, so cases with made-up names (``param1``)
use ``parse(..., validate=False)``; the CreateRequest cases use ``typed_parameters``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modelkit.errors import ModelfileError
from modelkit.modelfile import (
    Adapter,
    Draft,
    From,
    Instruction,
    License,
    Message,
    Modelfile,
    Parameter,
    Parser,
    Renderer,
    System,
    Template,
    format_modelfile,
    parse,
    parse_file,
    typed_parameters,
)

INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'


def commands(text: str | bytes) -> list[Instruction]:
    return list(parse(text, validate=False).instructions)


def parse_error(text: str | bytes) -> ModelfileError:
    with pytest.raises(ModelfileError) as info:
        parse(text, validate=False)
    return info.value


def test_parse_file_file() -> None:
    text = (
        "FROM model1\n"
        "ADAPTER adapter1\n"
        "LICENSE MIT\n"
        "PARAMETER param1 value1\n"
        "PARAMETER param2 value2\n"
        'TEMPLATE """{{ if .System }}<|start_header_id|>system<|end_header_id|>\n'
        "\n"
        "{{ .System }}<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n"
        "\n"
        "{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n"
        "\n"
        '{{ .Response }}<|eot_id|>"""    \n'
    )
    template = (
        "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n"
        "\n"
        "{{ .System }}<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n"
        "\n"
        "{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n"
        "\n"
        "{{ .Response }}<|eot_id|>"
    )
    assert commands(text) == [
        From("model1"),
        Adapter("adapter1"),
        License("MIT"),
        Parameter("param1", "value1"),
        Parameter("param2", "value2"),
        Template(template),
    ]


def test_parse_file_draft() -> None:
    mf = parse("FROM base\nDRAFT ./assistant\n")
    assert list(mf.instructions) == [From("base"), Draft("./assistant")]
    assert "DRAFT ./assistant" in format_modelfile(mf)


def test_parse_file_trim_space() -> None:
    text = (
        'FROM "     model 1"\n'
        "ADAPTER      adapter3\n"
        'LICENSE "MIT       "\n'
        "PARAMETER param1        value1\n"
        "PARAMETER param2    value2\n"
        'TEMPLATE """   {{ if .System }}<|start_header_id|>system<|end_header_id|>\n'
        "\n"
        '{{ .System }}<|eot_id|>{{ end }}   """\n'
    )
    assert commands(text) == [
        From("     model 1"),
        Adapter("adapter3"),
        License("MIT       "),
        Parameter("param1", "value1"),
        Parameter("param2", "value2"),
        Template(
            "   {{ if .System }}<|start_header_id|>system<|end_header_id|>\n"
            "\n"
            "{{ .System }}<|eot_id|>{{ end }}   "
        ),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('FROM "FOO  BAR  "', [From("FOO  BAR  ")]),
        (
            'FROM "FOO BAR"\nPARAMETER param1 value1',
            [From("FOO BAR"), Parameter("param1", "value1")],
        ),
        ("FROM     FOOO BAR    ", [From("FOOO BAR")]),
        ("FROM /what/is/the path ", [From("/what/is/the path")]),
        ("FROM foo", [From("foo")]),
        ("FROM /path/to/model", [From("/path/to/model")]),
        ("FROM /path/to/model/fp16.bin", [From("/path/to/model/fp16.bin")]),
        ("FROM llama3:latest", [From("llama3:latest")]),
        ("FROM llama3:7b-instruct-q4_K_M", [From("llama3:7b-instruct-q4_K_M")]),
        ("PARAMETER param1 value1\nFROM foo", [Parameter("param1", "value1"), From("foo")]),
        (
            "PARAMETER what the \nFROM lemons make lemonade ",
            [Parameter("what", "the"), From("lemons make lemonade")],
        ),
    ],
)
def test_parse_file_from(text: str, expected: list[Instruction]) -> None:
    assert commands(text) == expected


@pytest.mark.parametrize("text", ["", "PARAMETER param1 value1"])
def test_parse_file_from_missing(text: str) -> None:
    assert parse_error(text).message == "no FROM line"


def test_parse_file_parameters_missing_value() -> None:
    err = parse_error("FROM foo\nPARAMETER param1\n")
    assert err.message.startswith("unexpected EOF")


def test_parse_file_bad_command() -> None:
    err = parse_error("FROM foo\nADAPTER adapter1\nBADCOMMAND param1 value1\n")
    assert err.message == INVALID_COMMAND
    assert (err.line, err.col) == (3, 1)


def test_parse_file_renderer_and_parser() -> None:
    assert commands("FROM foo\nRENDERER renderer1\n") == [From("foo"), Renderer("renderer1")]
    assert commands("FROM foo\nPARSER parser1\n") == [From("foo"), Parser("parser1")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "MESSAGE system You are a file parser. Always parse things.\n",
            [Message("system", "You are a file parser. Always parse things.")],
        ),
        (
            "MESSAGE system You are a file parser. Always parse things.",
            [Message("system", "You are a file parser. Always parse things.")],
        ),
        (
            "MESSAGE system You are a file parser. Always parse things.\n"
            "MESSAGE user Hey there!\n"
            "MESSAGE assistant Hello, I want to parse all the things!\n",
            [
                Message("system", "You are a file parser. Always parse things."),
                Message("user", "Hey there!"),
                Message("assistant", "Hello, I want to parse all the things!"),
            ],
        ),
        (
            'MESSAGE system """\nYou are a multiline file parser. Always parse things.\n"""'
            "\n    \n",
            [Message("system", "\nYou are a multiline file parser. Always parse things.\n")],
        ),
    ],
)
def test_parse_file_messages(body: str, expected: list[Instruction]) -> None:
    assert commands("FROM foo\n" + body) == [From("foo"), *expected]


def test_parse_file_messages_bad_role() -> None:
    err = parse_error(
        "FROM foo\nMESSAGE system You are a file parser.\nMESSAGE badguy I'm a bad guy!\n"
    )
    assert err.message == INVALID_ROLE
    assert err.line == 3


@pytest.mark.parametrize("body", ["MESSAGE system\n", "MESSAGE system"])
def test_parse_file_messages_missing_text(body: str) -> None:
    assert parse_error("FROM foo\n" + body).message.startswith("unexpected EOF")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('SYSTEM """\nThis is a\nmultiline system.\n"""', "\nThis is a\nmultiline system.\n"),
        ('SYSTEM """\nThis is a\nmultiline system."""', "\nThis is a\nmultiline system."),
        ('SYSTEM """This is a\nmultiline system."""', "This is a\nmultiline system."),
        ('SYSTEM """This is a multiline system."""', "This is a multiline system."),
        (
            'SYSTEM """\nThis is a multiline system with "quotes".\n"""',
            '\nThis is a multiline system with "quotes".\n',
        ),
        ('SYSTEM """"""', ""),
        ('SYSTEM ""', ""),
        ('SYSTEM "\'"', "'"),
        ('SYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""', "''\"'\"\"'\"\"'\"'''''\"\"'\"\"'"),
    ],
)
def test_parse_file_quoted(body: str, expected: str) -> None:
    assert commands("FROM foo\n" + body) == [From("foo"), System(expected)]


def test_parse_file_quoted_template_at_eof() -> None:
    assert commands('FROM foo\nTEMPLATE """\n{{ .Prompt }}\n"""') == [
        From("foo"),
        Template("\n{{ .Prompt }}\n"),
    ]


@pytest.mark.parametrize("body", ['SYSTEM """This is a multiline system.""', 'SYSTEM "'])
def test_parse_file_quoted_unterminated(body: str) -> None:
    assert parse_error("FROM foo\n" + body).message == "unexpected EOF"


PARAMETER_CASES = [
    ("numa true", "numa", "true"),
    ("num_ctx 1", "num_ctx", "1"),
    ("num_batch 1", "num_batch", "1"),
    ("num_gqa 1", "num_gqa", "1"),
    ("num_gpu 1", "num_gpu", "1"),
    ("main_gpu 1", "main_gpu", "1"),
    ("use_mmap true", "use_mmap", "true"),
    ("num_thread 1", "num_thread", "1"),
    ("num_keep 1", "num_keep", "1"),
    ("seed 1", "seed", "1"),
    ("num_predict 1", "num_predict", "1"),
    ("top_k 1", "top_k", "1"),
    ("top_p 1.0", "top_p", "1.0"),
    ("min_p 0.05", "min_p", "0.05"),
    ("typical_p 1.0", "typical_p", "1.0"),
    ("repeat_last_n 1", "repeat_last_n", "1"),
    ("temperature 1.0", "temperature", "1.0"),
    ("repeat_penalty 1.0", "repeat_penalty", "1.0"),
    ("presence_penalty 1.0", "presence_penalty", "1.0"),
    ("frequency_penalty 1.0", "frequency_penalty", "1.0"),
    ("penalize_newline true", "penalize_newline", "true"),
    ("stop ### User:", "stop", "### User:"),
    ("stop ### User: ", "stop", "### User:"),
    ('stop "### User:"', "stop", "### User:"),
    ('stop "### User: "', "stop", "### User: "),
    ('stop """### User:"""', "stop", "### User:"),
    ('stop """### User:\n"""', "stop", "### User:\n"),
    ("stop <|endoftext|>", "stop", "<|endoftext|>"),
    ("stop <|eot_id|>", "stop", "<|eot_id|>"),
    ("stop </s>", "stop", "</s>"),
]


@pytest.mark.parametrize(("text", "name", "value"), PARAMETER_CASES)
def test_parse_file_parameters(text: str, name: str, value: str) -> None:
    assert commands(f"FROM foo\nPARAMETER {text}\n") == [From("foo"), Parameter(name, value)]


def test_parse_file_parameters_unknown_ones_fail_typing() -> None:
    # Ollama's ParseFile accepts numa/num_gqa; its CreateRequest then rejects them.
    for text in ("numa true", "num_gqa 1"):
        with pytest.raises(ModelfileError, match="unknown parameter"):
            parse(f"FROM foo\nPARAMETER {text}\n")


def test_parse_file_comments() -> None:
    assert commands("\n# comment\nFROM foo\n\t") == [From("foo")]


ROUND_TRIP_INPUTS = [
    """FROM foo
ADAPTER adapter1
LICENSE MIT
PARAMETER param1 value1
PARAMETER param2 value2
TEMPLATE template1
MESSAGE system You are a file parser. Always parse things.
MESSAGE user Hey there!
MESSAGE assistant Hello, I want to parse all the things!
""",
    '''FROM foo
ADAPTER adapter1
LICENSE MIT
PARAMETER param1 value1
PARAMETER param2 value2
TEMPLATE template1
MESSAGE system """
You are a store greeter. Always responsed with "Hello!".
"""
MESSAGE user Hey there!
MESSAGE assistant Hello, I want to parse all the things!
''',
    '''FROM foo
ADAPTER adapter1
LICENSE """
Very long and boring legal text.
Blah blah blah.
"Oh look, a quote!"
"""

PARAMETER param1 value1
PARAMETER param2 value2
TEMPLATE template1
MESSAGE system """
You are a store greeter. Always responsed with "Hello!".
"""
MESSAGE user Hey there!
MESSAGE assistant Hello, I want to parse all the things!
''',
    'FROM foo\nSYSTEM ""\n',
]


@pytest.mark.parametrize("text", ROUND_TRIP_INPUTS)
def test_parse_file_format_parse_file(text: str) -> None:
    parsed = parse(text, validate=False)
    assert parse(format_modelfile(parsed), validate=False) == parsed


UTF16_TEXT = "FROM bob\nPARAMETER param1 1\nPARAMETER param2 4096\nSYSTEM You are a utf16 file.\n"
UTF16_EXPECTED = [
    From("bob"),
    Parameter("param1", "1"),
    Parameter("param2", "4096"),
    System("You are a utf16 file."),
]


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe" + UTF16_TEXT.encode("utf-16-le"),
        b"\xfe\xff" + UTF16_TEXT.encode("utf-16-be"),
    ],
    ids=["utf16le", "utf16be"],
)
def test_parse_file_utf16(data: bytes) -> None:
    assert commands(data) == UTF16_EXPECTED


MULTIBYTE = "FROM test\n\tSYSTEM 你好👋"


@pytest.mark.parametrize(
    "data",
    [
        MULTIBYTE.encode("utf-8"),
        b"\xef\xbb\xbf" + MULTIBYTE.encode("utf-8"),
        b"\xff\xfe" + MULTIBYTE.encode("utf-16-le"),
        b"\xfe\xff" + MULTIBYTE.encode("utf-16-be"),
        MULTIBYTE,
        "\ufeff" + MULTIBYTE,
    ],
    ids=["utf8", "utf8-bom", "utf16le", "utf16be", "str", "str-bom"],
)
def test_parse_multibyte(data: str | bytes) -> None:
    assert commands(data) == [From("test"), System("你好👋")]


def test_parse_file_reads_bytes_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_bytes(b"\xff\xfe" + "FROM bob\nSYSTEM hi\n".encode("utf-16-le"))
    mf = parse_file(path)
    assert list(mf.instructions) == [From("bob"), System("hi")]
    assert mf.path == str(path)


def test_parse_file_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelfileError, match="cannot read Modelfile") as info:
        parse_file(tmp_path / "nope")
    assert info.value.path == str(tmp_path / "nope")


# -- TestCreateRequest: the typed parameters and the other request fields -------------------


def test_create_request_from_only() -> None:
    mf = parse("FROM test")
    assert [f.value for f in mf.froms] == ["test"]
    assert typed_parameters(mf) == {}


def test_create_request_template() -> None:
    mf = parse("FROM test\nTEMPLATE some template")
    assert mf.template == "some template"


def test_create_request_license_parameter_message() -> None:
    mf = parse("FROM test\nLICENSE single license\nPARAMETER temperature 0.5\nMESSAGE user Hello\n")
    assert mf.licenses == ["single license"]
    params = typed_parameters(mf)
    assert params == {"temperature": 0.5}
    assert type(params["temperature"]) is float
    assert [(m.role, m.content) for m in mf.messages] == [("user", "Hello")]


def test_create_request_everything() -> None:
    mf = parse(
        "FROM test\n"
        "PARAMETER temperature 0.5\n"
        "PARAMETER top_k 1\n"
        "SYSTEM You are a bot.\n"
        "LICENSE license1\n"
        "LICENSE license2\n"
        "MESSAGE user Hello there!\n"
        "MESSAGE assistant Hi! How are you?\n"
    )
    params = typed_parameters(mf)
    assert params == {"temperature": 0.5, "top_k": 1}
    assert type(params["top_k"]) is int
    assert mf.system == "You are a bot."
    assert mf.licenses == ["license1", "license2"]
    assert [(m.role, m.content) for m in mf.messages] == [
        ("user", "Hello there!"),
        ("assistant", "Hi! How are you?"),
    ]


def test_modelfile_accessors() -> None:
    mf = parse(
        "FROM a\nFROM b\nADAPTER x.gguf\nRENDERER r\nPARSER p\nREQUIRES v0.14.0\n"
        "TEMPLATE t1\nTEMPLATE t2\nDRAFT ./d\n"
    )
    assert isinstance(mf, Modelfile)
    assert [f.value for f in mf.froms] == ["a", "b"]
    assert mf.template == "t2"
    assert [a.path for a in mf.adapters] == ["x.gguf"]
    assert (mf.renderer, mf.parser, mf.requires) == ("r", "p", "0.14.0")
    assert [d.path for d in mf.drafts] == ["./d"]


def test_positions() -> None:
    text = 'FROM a\r\n  PARAMETER  top_k   5\n\tSYSTEM   "x\ny"\nMESSAGE user  hi\n'
    mf = parse(text.replace("PARAMETER  top_k", "PARAMETER top_k"))
    from_, param, system, message = mf.instructions
    assert (from_.pos.line, from_.pos.col, from_.value_pos.col) == (1, 1, 6)
    assert isinstance(param, Parameter)
    assert (param.pos.line, param.pos.col) == (2, 3)
    assert (param.name_pos.line, param.name_pos.col) == (2, 13)
    assert (param.value_pos.line, param.value_pos.col) == (2, 21)
    assert (system.pos.line, system.pos.col, system.value_pos.col) == (3, 2, 11)
    assert (message.pos.line, message.value_pos.col) == (5, 15)


def test_positions_do_not_affect_equality() -> None:
    assert parse("FROM a\nSYSTEM b\n") == parse("\n\n  FROM   a\n# x\nSYSTEM    b")
