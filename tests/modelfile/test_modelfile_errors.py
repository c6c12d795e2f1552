"""Every parser error: Ollama's text, the real line:col, the source line and the caret."""

from __future__ import annotations

import contextlib

import pytest

from modelkit.errors import ModelfileError
from modelkit.modelfile import ParameterError, parse
from modelkit.modelfile.parser import (
    INVALID_COMMAND,
    INVALID_ROLE,
    NO_FROM,
    REQUIRES_NOT_SEMVER,
    UNEXPECTED_EOF,
)


def error_of(text: str | bytes, *, validate: bool = True) -> ModelfileError:
    with pytest.raises(ModelfileError) as info:
        parse(text, path="Modelfile", validate=validate)
    return info.value


def test_messages_are_ollamas() -> None:
    assert NO_FROM == "no FROM line"
    assert INVALID_COMMAND == (
        'command must be one of "from", "license", "template", "system", "adapter", "draft", '
        '"renderer", "parser", "parameter", "message", or "requires"'
    )
    assert INVALID_ROLE == 'message role must be one of "system", "user", or "assistant"'
    assert UNEXPECTED_EOF == "unexpected EOF"
    assert REQUIRES_NOT_SEMVER == "requires must be a valid semver (e.g. 0.14.0)"


@pytest.mark.parametrize(
    ("text", "message", "line", "col", "source_line"),
    [
        # unknown words, a word not followed by a space, a non-letter inside a word
        ("FROM a\n\n  BADCOMMAND x\n", INVALID_COMMAND, 3, 3, "  BADCOMMAND x"),
        ("FROM a\nFROM\n", INVALID_COMMAND, 2, 1, "FROM"),
        ("FR0M a\n", INVALID_COMMAND, 1, 1, "FR0M a"),
        ("FROM a\nSYSTEM: hi\n", INVALID_COMMAND, 2, 1, "SYSTEM: hi"),
        ("FROM a\n'SYSTEM' x\n", INVALID_COMMAND, 2, 1, "'SYSTEM' x"),
        ("FROM a\nFROMX b\n", INVALID_COMMAND, 2, 1, "FROMX b"),
        # a word or name running into the end of the input
        ("FROM a\nSYSTEM", UNEXPECTED_EOF, 2, 7, "SYSTEM"),
        ("FROM a\nBADWORD", UNEXPECTED_EOF, 2, 8, "BADWORD"),
        ("FROM a\nPARAMETER top_k", UNEXPECTED_EOF, 2, 16, "PARAMETER top_k"),
        ("FROM a\nMESSAGE system", UNEXPECTED_EOF, 2, 15, "MESSAGE system"),
        # a name / role cut by another character: Ollama adds what it had read
        ("FROM a\nPARAMETER param1\n", "unexpected EOF: param1", 2, 17, "PARAMETER param1"),
        ("FROM a\nPARAMETER top-k 1\n", "unexpected EOF: top", 2, 14, "PARAMETER top-k 1"),
        ("FROM a\nMESSAGE system\n", "unexpected EOF: system", 2, 15, "MESSAGE system"),
        ("FROM a\nMESSAGE user:hi\n", "unexpected EOF: user", 2, 13, "MESSAGE user:hi"),
        # roles
        (
            "FROM a\nMESSAGE badguy I'm a bad guy!\n",
            INVALID_ROLE,
            2,
            9,
            "MESSAGE badguy I'm a bad guy!",
        ),
        ("FROM a\nMESSAGE User hi\n", INVALID_ROLE, 2, 9, "MESSAGE User hi"),
        ("FROM a\nMESSAGE  user hi\n", INVALID_ROLE, 2, 9, "MESSAGE  user hi"),
        # open quotes: reported where the quote opens
        ('FROM a\nSYSTEM "abc\n', UNEXPECTED_EOF, 2, 8, 'SYSTEM "abc'),
        ('FROM a\nSYSTEM   """abc\ndef""\n', UNEXPECTED_EOF, 2, 10, 'SYSTEM   """abc'),
        ('FROM a\nSYSTEM "abc" def\nFROM b\n', UNEXPECTED_EOF, 2, 8, 'SYSTEM "abc" def'),
        ('FROM a\nMESSAGE user """hi\n', UNEXPECTED_EOF, 2, 14, 'MESSAGE user """hi'),
        # no FROM anywhere
        ("", NO_FROM, 1, 1, None),
        ("# just a comment\nSYSTEM hi\n", NO_FROM, 1, 1, None),
    ],
)
def test_syntax_errors(
    text: str, message: str, line: int, col: int, source_line: str | None
) -> None:
    err = error_of(text, validate=False)
    assert (err.message, err.line, err.col, err.source_line) == (message, line, col, source_line)
    assert err.path == "Modelfile"


def test_first_error_in_document_order_wins() -> None:
    err = error_of('FROM a\nBAD x\nSYSTEM "never closed\n')
    assert (err.message, err.line) == (INVALID_COMMAND, 2)
    err = error_of("FROM a\nMESSAGE bad x\nPARAMETER temperature hot\n")
    assert err.message == INVALID_ROLE
    # syntax errors come before "no FROM line", which comes before typing errors
    assert error_of("PARAMETER temperature hot\nBAD x\n").message == INVALID_COMMAND
    assert error_of("PARAMETER temperature hot\n").message == NO_FROM


def test_line_numbers_count_crlf_once_and_cr_alone() -> None:
    err = error_of("FROM a\r\n\r\nBAD x\r\n")
    assert (err.line, err.col, err.source_line) == (3, 1, "BAD x")
    err = error_of("FROM a\r\rBAD x\r")
    assert (err.line, err.col, err.source_line) == (3, 1, "BAD x")


def test_columns_count_characters_not_bytes() -> None:
    err = error_of("FROM a\nSYSTEM 你好 ok\nMESSAGE 你 x\n")
    # 你 is not an ASCII letter: the role is cut there, before it is even checked
    assert (err.message, err.line, err.col) == ("unexpected EOF: ", 3, 9)
    err = error_of("FROM 你好\nPARAMETER temperature 热\n")
    assert (err.line, err.col) == (2, 23)


def test_caret_display() -> None:
    err = error_of("FROM a\nMESSAGE badguy hi\n")
    assert str(err) == ("Modelfile:2:9: " + INVALID_ROLE + "\n    MESSAGE badguy hi\n            ^")
    err = error_of("FROM a\nPARAMETER temperature warm\n")
    assert str(err).splitlines()[1:] == [
        "    PARAMETER temperature warm",
        "                          ^",
    ]
    assert str(error_of("")) == "Modelfile:1:1: no FROM line"


# -- validation errors (what Ollama checks when it builds the create request) ----------------


@pytest.mark.parametrize(
    ("line_text", "fragments", "col"),
    [
        ("PARAMETER temperature hot", ["invalid float value [hot]", "temperature", "float"], 23),
        ("PARAMETER top_k 1.5", ["invalid int value [1.5]", "top_k", "int"], 17),
        ("PARAMETER use_mmap yes", ["invalid bool value [yes]", "use_mmap", "bool"], 20),
        ('PARAMETER seed "12 "', ["invalid int value [12 ]", "seed", "int"], 16),
        ("PARAMETER Temperature 0.5", ["unknown parameter 'Temperature'"], 11),
        ("PARAMETER numa true", ["unknown parameter 'numa'"], 11),
        ("PARAMETER num_gqa 8", ["unknown parameter 'num_gqa'"], 11),
        ("PARAMETER  temperature 0.5", ["unknown parameter ''"], 11),
    ],
)
def test_parameter_errors(line_text: str, fragments: list[str], col: int) -> None:
    err = error_of(f"FROM a\n{line_text}\n")
    assert isinstance(err, ParameterError)
    for fragment in fragments:
        assert fragment in err.message
    assert (err.line, err.col, err.source_line) == (2, col, line_text)


def test_parameter_error_attributes() -> None:
    err = error_of("FROM a\nPARAMETER temperature hot\n")
    assert isinstance(err, ParameterError)
    assert (err.parameter, err.value) == ("temperature", "hot")
    err = error_of("FROM a\nPARAMETER nope 1\n")
    assert isinstance(err, ParameterError)
    assert (err.parameter, err.value) == ("nope", None)


@pytest.mark.parametrize(
    "version",
    ["0.14.0", "v0.14.0", "1", "v1", "1.2", "v1.2", "1.2.3-rc1", "1.2.3-rc.1+build.5", "0.0.0"],
)
def test_requires_valid(version: str) -> None:
    assert parse(f"FROM a\nREQUIRES {version}\n").requires == version.removeprefix("v")


@pytest.mark.parametrize(
    "version",
    [
        "",
        "latest",
        "01.2",
        "1.02",
        "1.2.3.4",
        "1.2-rc1",
        "v1-rc1",
        "1.2.3-",
        "1.2.3-01",
        "V1.2",
        "vv1",
        "1.2.3+",
    ],
)
def test_requires_invalid(version: str) -> None:
    err = error_of(f'FROM a\nREQUIRES "{version}"\n')
    assert err.message == REQUIRES_NOT_SEMVER
    assert (err.line, err.col) == (2, 10)


def test_requires_unchecked_without_validation() -> None:
    assert parse("FROM a\nREQUIRES latest\n", validate=False).requires == "latest"


def test_no_lark_exception_escapes() -> None:
    nasty = ['"""', "\x00", "\r", "#\n", "\ufeff", "PARAMETER", " ", "FROM\t", '"', "MESSAGE\t"]
    for a in nasty:
        for b in nasty:
            for c in nasty:
                with contextlib.suppress(ModelfileError):
                    parse(a + b + c)
