"""The Go text/template engine: every construct, function, printing rule and error."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelkit.errors import TemplateError
from modelkit.template import GoTemplate, ToolProperty, render_prompt
from modelkit.template.values import GoStruct


@dataclass
class Point(GoStruct):
    """A small Go-like struct for the tests."""

    x: int
    y: str

    GO_FIELDS = (("X", "x"), ("Y", "y"))
    GO_TYPE = "main.Point"


def run(text: str, data: dict[str, Any] | None = None) -> str:
    """Render ``text`` with ``data`` (Response defaults to "", so the appended action is quiet)."""
    return GoTemplate(text).execute({"Response": "", **(data or {})})


def error_of(text: str, data: dict[str, Any] | None = None) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        run(text, data)
    return info.value


# ---- text, actions, trimming, comments ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        ("plain text", {}, "plain text"),
        ("a {{ .X }} b", {"X": 1}, "a 1 b"),
        ("a  {{- .X -}}  b", {"X": 1}, "a1b"),
        ("a\n\t \n{{- .X }}\n", {"X": 1}, "a1\n"),
        ("{{ .X -}}\n\n   tail", {"X": 1}, "1tail"),
        ("{{-3}}", {}, "-3"),
        ("{{ 3 -}} 4", {}, "34"),
        ("a {{/* comment */}} b", {}, "a  b"),
        ("a {{- /* comment */ -}} b", {}, "ab"),
        ("{{/* multi\nline\ncomment */}}ok", {}, "ok"),
        ('{{ "}}" }}', {}, "}}"),
        ("x { y } {{ .X }}", {"X": "z"}, "x { y } z"),
        ("{{\n  .X\n}}", {"X": "multi-line action"}, "multi-line action"),
        ("{{- if .X -}}\n  yes\n{{- else -}}\n  no\n{{- end -}}\n", {"X": True}, "yes"),
        ("{{- if .X -}}\n  yes\n{{- else -}}\n  no\n{{- end -}}\n", {"X": False}, "no"),
    ],
)
def test_text_actions_trimming(text: str, data: dict[str, Any], expected: str) -> None:
    assert run(text, data) == expected


@given(st.text().filter(lambda s: "{{" not in s))
def test_text_without_actions_renders_to_itself(text: str) -> None:
    assert render_prompt(GoTemplate(text), []) == text
    assert GoTemplate(text).execute({"Response": ""}) == text


# ---- pipelines, variables, literals ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        ('{{ "hi" | printf "%s!" }}', {}, "hi!"),
        ('{{ .L | len | printf "%d items" }}', {"L": [1, 2]}, "2 items"),
        ('{{ printf "%d-%d" (len .L) (index .L 0) }}', {"L": [7, 8]}, "2-7"),
        ('{{ (index .M "a").B }}', {"M": {"a": {"B": "deep"}}}, "deep"),
        ("{{ (.P).Y }}", {"P": Point(1, "why")}, "why"),
        ('{{ $x := "a" }}[{{ $x }}]', {}, "[a]"),
        ("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", {}, "2"),
        ("{{ $x := 0 }}{{ range .L }}{{ $x = . }}{{ end }}{{ $x }}", {"L": [1, 2, 3]}, "3"),
        ("{{ $ }}", {"Response": ""}, "map[Response:]"),
        ("{{ range .L }}{{ $.Name }}{{ . }}{{ end }}", {"L": [1, 2], "Name": "n"}, "n1n2"),
        ("{{ $p := .P }}{{ $p.X }}/{{ $p.Y }}", {"P": Point(3, "y")}, "3/y"),
        ("{{ with $v := .X }}{{ $v }}{{ . }}{{ end }}", {"X": "x"}, "xx"),
        ('{{ "a\\tb\\u00e9\\x41\\101\\"" }}', {}, 'a\tbéAA"'),
        ("{{ `raw\\n` }}", {}, "raw\\n"),
        ("{{ 0x1F }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ 1_000 }}", {}, "31 15 15 5 1000"),
        ("{{ 1.5 }} {{ 1e3 }} {{ -2.25 }} {{ 0x1p-2 }} {{ 2.0 }}", {}, "1.5 1000 -2.25 0.25 2"),
        ("{{ 'a' }} {{ '\\n' }}", {}, "97 10"),
        ("{{ true }} {{ false }} {{ print nil }}", {}, "true false <nil>"),
        ("{{ . }}", {"Response": ""}, "map[Response:]"),
    ],
)
def test_pipelines_variables_literals(text: str, data: dict[str, Any], expected: str) -> None:
    assert run(text, data) == expected


# ---- control structures ------------------------------------------------------------------

IF_CHAIN = (
    "{{ if eq .N 1 }}one{{ else if eq .N 2 }}two{{ else if gt .N 9 }}big{{ else }}other{{ end }}"
)


@pytest.mark.parametrize(("n", "expected"), [(1, "one"), (2, "two"), (10, "big"), (5, "other")])
def test_if_else_if_chain(n: int, expected: str) -> None:
    assert run(IF_CHAIN, {"N": n}) == expected


@pytest.mark.parametrize(
    ("value", "truth"),
    [
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        ([], False),
        ({}, False),
        (None, False),
        (True, True),
        (1, True),
        (-0.5, True),
        ("x", True),
        ([0], True),
        ({"a": 0}, True),
        (Point(0, ""), True),
    ],
)
def test_truthiness(value: Any, truth: bool) -> None:
    assert run("{{ if .V }}T{{ else }}F{{ end }}", {"V": value}) == ("T" if truth else "F")
    assert run("{{ if .Missing }}T{{ else }}F{{ end }}") == "F"


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        ("{{ range .L }}[{{ . }}]{{ end }}", {"L": ["a", "b"]}, "[a][b]"),
        ("{{ range $i, $v := .L }}{{ $i }}={{ $v }} {{ end }}", {"L": ["a", "b"]}, "0=a 1=b "),
        ("{{ range $v := .L }}{{ $v }}{{ end }}", {"L": ["a", "b"]}, "ab"),
        (
            "{{ range $k, $v := .M }}{{ $k }}:{{ $v }};{{ end }}",
            {"M": {"b": 2, "a": 1}},
            "a:1;b:2;",
        ),
        ("{{ range .M }}{{ . }}{{ end }}", {"M": {"z": 1, "y": 2}}, "21"),
        ("{{ range 3 }}{{ . }}{{ end }}", {}, "012"),
        ("{{ range $i := 3 }}{{ $i }}{{ end }}", {}, "012"),
        ("{{ range .L }}x{{ else }}empty{{ end }}", {"L": []}, "empty"),
        ("{{ range .Missing }}x{{ else }}nil{{ end }}", {}, "nil"),
        ("{{ range 0 }}x{{ else }}zero{{ end }}", {}, "zero"),
        (
            "{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}"
            "{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}",
            {"L": [1, 2, 3, 4, 5]},
            "13",
        ),
        (
            "{{ range .A }}{{ range .B }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }};"
            "{{ end }}",
            {"A": [{"B": [1, 2, 3]}, {"B": [1]}]},
            "1;1;",
        ),
        ("{{ range .L }}{{ $x := . }}{{ $x }}{{ end }}", {"L": [1, 2]}, "12"),
    ],
)
def test_range(text: str, data: dict[str, Any], expected: str) -> None:
    assert run(text, data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"X": "x"}, "[x]"),
        ({"X": "", "Y": 5}, "<5>"),
        ({}, "none"),
    ],
)
def test_with_else_with(data: dict[str, Any], expected: str) -> None:
    text = "{{ with .X }}[{{ . }}]{{ else with .Y }}<{{ . }}>{{ else }}none{{ end }}"
    assert run(text, data) == expected


def test_define_template_block() -> None:
    text = (
        '{{ define "greet" }}Hello, {{ . }}!{{ end }}'
        '{{ template "greet" .Name }} {{ block "sig" .Sig }}-- {{ . }}{{ end }}'
        '{{ template "greet" }}'
    )
    with pytest.raises(TemplateError, match="undefined template specified"):
        GoTemplate(text)  # Ollama rejects {{template}} without an argument
    text = text.replace('{{ template "greet" }}', "")
    assert run(text, {"Name": "Ada", "Sig": "me"}) == "Hello, Ada! -- me"
    assert GoTemplate(text).defined.keys() == {"greet", "sig"}


def test_template_call_has_its_own_variables_and_dot() -> None:
    text = '{{ define "t" }}{{ $ }}|{{ . }}{{ end }}{{ $x := 1 }}{{ template "t" .A }}'
    assert run(text, {"A": [1, 2]}) == "[1 2]|[1 2]"
    with pytest.raises(TemplateError, match='undefined variable "\\$x"'):
        GoTemplate('{{ define "t" }}{{ $x }}{{ end }}{{ $x := 1 }}{{ template "t" . }}')


def test_recursive_template_is_bounded() -> None:
    err = error_of('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}')
    assert "exceeded maximum template depth" in str(err)


def test_redefinition_is_an_error() -> None:
    with pytest.raises(TemplateError, match='multiple definition of template "a"'):
        GoTemplate('{{ define "a" }}A{{ end }}{{ define "a" }}B{{ end }}')
    # an empty (white space) definition may be replaced
    assert run('{{ define "a" }} {{ end }}{{ define "a" }}B{{ end }}{{ template "a" . }}') == "B"


# ---- fields ------------------------------------------------------------------------------


def test_fields_of_maps_and_structs() -> None:
    data = {"A": {"B": {"C": "deep"}}, "P": Point(7, "seven")}
    assert run("{{ .A.B.C }} {{ .P.X }} {{ .P.Y }}", data) == "deep 7 seven"
    # missingkey=zero: a missing map key is nil and prints <no value>
    assert run("{{ .Nope }}|{{ .A.Nope }}|{{ print .Nope }}", data) == "<no value>|<no value>|<nil>"


def test_missing_struct_field_is_an_error() -> None:
    err = error_of("a\n  {{ .P.Z }}", {"P": Point(1, "y")})
    assert err.line == 2
    assert err.col == 5
    assert str(err) == (
        'template: :2:5: executing "" at <.P.Z>: can\'t evaluate field Z in type main.Point'
    )


def test_field_of_nil_and_of_scalar() -> None:
    assert "nil pointer evaluating interface {}.B" in str(error_of("{{ .Missing.B }}"))
    assert "can't evaluate field B in type string" in str(error_of("{{ .S.B }}", {"S": "s"}))


# ---- functions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ and 1 0 2 }}", "0"),
        ("{{ and 1 2 }}", "2"),
        ('{{ or 0 "" }}', ""),
        ('{{ or 0 "x" 1 }}', "x"),
        ("{{ and false (index .L 10) }}", "false"),
        ("{{ or true (index .L 10) }}", "true"),
        ("{{ not 0 }} {{ not 1 }} {{ not .L }}", "true false false"),
        ("{{ eq 1 1 }} {{ eq 1 2 }} {{ eq 1 2 3 1 }}", "true false true"),
        ('{{ eq "a" "a" }} {{ eq .Missing "x" }} {{ eq .Missing .Nope }}', "true false true"),
        ("{{ ne 1 2 }} {{ ne 1 1 }}", "true false"),
        ("{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 2 3 }}", "true true false false"),
        ('{{ lt "a" "b" }} {{ gt 1.5 1.25 }}', "true true"),
        ('{{ len "héllo" }} {{ len .L }} {{ len .M }}', "6 3 1"),
        ('{{ index .L 1 }} {{ index .M "k" }} {{ index .N "a" 1 }}', "2 v y"),
        ('{{ index .M "absent" }}', "<no value>"),
        (
            '{{ slice "hello" 1 3 }} {{ slice .L 1 }} {{ slice .L }} {{ slice .L 0 1 2 }}',
            "el [2 3] [1 2 3] [1]",
        ),
        ('{{ print "a" 1 2 "b" }}', "a1 2b"),
        ("{{ println 1 2 }}", "1 2\n"),
        (
            '{{ printf "%s|%5.2f|%-4d|%q|%v|%x" "s" 3.14159 7 "q" .L 255 }}',
            's| 3.14|7   |"q"|[1 2 3]|ff',
        ),
        ('{{ html "<a href=\\"x\\">&\'" }}', "&lt;a href=&#34;x&#34;&gt;&amp;&#39;"),
        ('{{ js "it\'s \\"q\\" <b> a=b\\n" }}', 'it\\\'s \\"q\\" \\u003Cb\\u003E a\\u003Db\\u000A'),
        ('{{ urlquery "a b&c=d/é" }}', "a+b%26c%3Dd%2F%C3%A9"),
        ("{{ html 1 2 }}", "1 2"),
        ("{{ call .Add 2 3 }}", "5"),
    ],
)
def test_builtin_functions(text: str, expected: str) -> None:
    data = {
        "L": [1, 2, 3],
        "M": {"k": "v"},
        "N": {"a": ["x", "y"]},
        "Add": lambda a, b: a + b,
    }
    assert run(text, data) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ index .L 5 }}", "error calling index: index out of range: 5"),
        ('{{ index .L "a" }}', "cannot index slice/array with type string"),
        ("{{ index .Missing 0 }}", "index of untyped nil"),
        ('{{ eq 1 "a" }}', "error calling eq: incompatible types for comparison"),
        ("{{ eq 1 1.0 }}", "incompatible types for comparison"),
        ("{{ eq .L .L }}", "non-comparable type"),
        ('{{ lt 1 "a" }}', "incompatible types for comparison"),
        ("{{ lt true false }}", "invalid type for comparison"),
        ("{{ eq 1 }}", "missing argument for comparison"),
        ("{{ len 3 }}", "error calling len: len of type int"),
        ("{{ len 1 2 }}", "wrong number of args for len: want 1 got 2"),
        ("{{ not }}", "wrong number of args for not: want 1 got 0"),
        ("{{ slice .L 2 1 }}", "invalid slice index: 2 > 1"),
        ("{{ printf 1 }}", "wrong type for value; expected string; got int"),
        ("{{ range .S }}{{ end }}", "range can't iterate over hello"),
        ("{{ range $i, $v := 3 }}{{ end }}", "can't use 3 to iterate over more than one variable"),
        ("{{ .L 1 }}", "L is not a method but has arguments"),
        ("{{ 1 2 }}", "can't give argument to non-function 1"),
        ('{{ template "nope" . }}', 'no such template "nope"'),
        ("{{ .P.X 1 }}", "X has arguments but cannot be invoked as function"),
        ("{{ eq .L nil }}", "cannot assign nil to reflect.Value"),
        ("{{ currentDate nil }}", "cannot assign nil to string"),
    ],
)
def test_execution_errors(text: str, message: str) -> None:
    err = error_of(text, {"L": [1, 2, 3], "S": "hello", "P": Point(1, "y")})
    assert message in str(err)
    assert str(err).startswith("template: :1:")


def test_error_context_names_the_command() -> None:
    err = error_of("{{ index .L 5 }}", {"L": [1]})
    assert str(err) == (
        'template: :1:3: executing "" at <index .L 5>: error calling index: index out of range: 5'
    )


def test_ollama_functions() -> None:
    data = {
        "M": {"b": "<x>", "a": [1, 2.5, None, True]},
        "P": ToolProperty.from_dict({"type": ["string", "integer"]}),
        "Q": ToolProperty.from_dict({"anyOf": [{"type": "array"}, {"type": "object"}]}),
        "R": ToolProperty.from_dict({}),
    }
    assert run("{{ json .M }}", data) == '{"a":[1,2.5,null,true],"b":"\\u003cx\\u003e"}'
    assert run('{{ json "a<b" }} {{ json 1.0 }} {{ json .Nope }}', data) == '"a\\u003cb" 1 null'
    assert run("{{ json .NaN }}", {"NaN": float("nan")}) == ""
    today = datetime.date.today()
    assert run("{{ currentDate }}") == today.isoformat()
    assert run('{{ currentDate "2006-01-02" }}') == today.isoformat()
    assert run("{{ yesterdayDate }}") == (today - datetime.timedelta(days=1)).isoformat()
    assert run("{{ toTypeScriptType .P }}", data) == "string | number"
    assert run("{{ toTypeScriptType .Q }}", data) == "any[] | Record<string, any>"
    assert run("{{ toTypeScriptType .R }} {{ toTypeScriptType 1 }}", data) == "any any"


# ---- printing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (True, "true"),
        (42, "42"),
        (-7, "-7"),
        (1.0, "1"),
        (0.1, "0.1"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (float("inf"), "+Inf"),
        (float("nan"), "NaN"),
        ("text", "text"),
        (["a", "b"], "[a b]"),
        ([["a", 1], []], "[[a 1] []]"),
        ([None, True, 1.5], "[<nil> true 1.5]"),
        ({"b": 2, "a": [1]}, "map[a:[1] b:2]"),
        ({}, "map[]"),
        (Point(1, "y"), "{1 y}"),
        ([Point(1, "y")], "[{1 y}]"),
        (None, "<no value>"),
        (b"hi", "[104 105]"),
    ],
)
def test_go_printing(value: Any, printed: str) -> None:
    assert run("{{ .V }}", {"V": value}) == printed


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%d|%5d|%-5d|%05d|%+d", [1, 2, 3, -4, 5], "1|    2|3    |-0004|+5"),
        (
            "%x|%#x|%X|%o|%O|%b|%c|%U",
            [255, 255, 255, 8, 8, 5, 65, 65],
            "ff|0xff|FF|10|0o10|101|A|U+0041",
        ),
        (
            "%f|%.2f|%8.3f|%e|%g|%G",
            [1.5, 3.14159, 3.14159, 1234.5678, 1e6, 1e-7],
            "1.500000|3.14|   3.142|1.234568e+03|1e+06|1E-07",
        ),
        (
            "%s|%q|%10s|%-4s|%.2s|%x",
            ["a", 'b"\n', "r", "l", "trunc", "hi"],
            'a|"b\\"\\n"|         r|l   |tr|6869',
        ),
        ("%t|%v|%v", [True, [1, "x"], {"k": 1}], "true|[1 x]|map[k:1]"),
        ("%+v|%v", [Point(1, "y"), Point(1, "y")], "{X:1 Y:y}|{1 y}"),
        ("%T|%T|%T|%T", [1, "s", 1.5, [1]], "int|string|float64|[]interface {}"),
        ("%d|%s", ["x", 5], "%!d(string=x)|%!s(int=5)"),
        ("%d %d", [1], "1 %!d(MISSING)"),
        ("%d", [1, "a"], "1%!(EXTRA string=a)"),
        ("100%%", [], "100%"),
        ("%", [], "%!(NOVERB)"),
        ("%*d|%.*f", [5, 1, 2, 3.14159], "    1|3.14"),
        ("%v|%s", [None, None], "<nil>|%!s(<nil>)"),
        ("%5.1f|%-8v|", [2.25, "x"], "  2.2|x       |"),
        ("%s", [["a", "b"]], "[a b]"),
        ("%q", [["a", "b"]], '["a" "b"]'),
    ],
)
def test_printf_verbs(fmt: str, args: list[Any], expected: str) -> None:
    names = "".join(f" .A{i}" for i in range(len(args)))
    data = {"F": fmt, **{f"A{i}": arg for i, arg in enumerate(args)}}
    assert run("{{ printf .F" + names + " }}", data) == expected


def test_stringers_print_their_text() -> None:
    from modelkit.template.values import JSONList, JSONMap

    data = {"A": JSONMap({"b": 1, "a": "x"}), "T": JSONList(nil=True), "E": JSONList()}
    assert run("{{ .A }} {{ .T }} {{ .E }}", data) == '{"a":"x","b":1} null []'
    assert run("{{ range $k, $v := .A }}{{ $k }}={{ $v }};{{ end }}", data) == "a=x;b=1;"
    assert run('{{ printf "%v|%s" .A .A }}', data) == '{"a":"x","b":1}|{"a":"x","b":1}'


# ---- parse errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("{{ .Prompt ", "unclosed action", 1),
        ("line one\n{{ if .X }}\n{{ .Y ", "unclosed action", 3),
        ("{{ if .X }}open", "unexpected EOF", 1),
        ("{{ end }}", "unexpected {{end}}", 1),
        ("a\n{{ else }}", "unexpected {{else}}", 2),
        ("{{ }}", "missing value for command", 1),
        ("{{ if }}{{ end }}", "missing value for if", 1),
        ("{{ range }}{{ end }}", "missing value for range", 1),
        ("{{ foo }}", 'function "foo" not defined', 1),
        ("{{ $y }}", 'undefined variable "$y"', 1),
        ("{{ $y = 1 }}", 'undefined variable "$y"', 1),
        ("{{ if true }}{{ $z := 1 }}{{ end }}{{ $z }}", 'undefined variable "$z"', 1),
        ("{{ break }}", "{{break}} outside {{range}}", 1),
        ("{{ if .X }}{{ continue }}{{ end }}", "{{continue}} outside {{range}}", 1),
        ("{{/* never closed", "unclosed comment", 1),
        ("{{/* a */ b }}", "comment ends before closing delimiter", 1),
        ('{{ "abc }}', "unterminated quoted string", 1),
        ("{{ .X @ }}", "unrecognized character in action: U+0040 '@'", 1),
        ("{{ 08 }}", 'bad number syntax: "08"', 1),
        ('{{ "\\q" }}', "invalid syntax", 1),
        ("{{ .A | 1 }}", "non executable command in pipeline stage 2", 1),
        ("{{ if $a, $b := .X }}{{ end }}", "too many declarations in if", 1),
        ('{{ if .X }}{{ define "a" }}{{ end }}{{ end }}', "unexpected <define> in command", 1),
        ("{{ nil }}", "nil is not a command", 1),
    ],
)
def test_errors_name_line_and_message(text: str, message: str, line: int) -> None:
    with pytest.raises(TemplateError) as info:
        run(text)
    err = info.value
    assert message in str(err)
    assert err.line == line
    assert str(err).startswith(f"template: :{line}:")


def test_parse_error_column_is_go_byte_offset() -> None:
    with pytest.raises(TemplateError) as info:
        GoTemplate("héllo {{ nope }}")
    assert (info.value.line, info.value.col) == (1, 10)
    assert str(info.value) == 'template: :1:10: function "nope" not defined'


# ---- Ollama's parse rules: Vars and the implicit {{ .Response }} --------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ .Prompt }}", ["prompt", "response"]),
        ("{{ .System }} {{ .Prompt }}", ["prompt", "response", "system"]),
        ("{{ .System }} {{ .Prompt }} {{ .Response }}", ["prompt", "response", "system"]),
        (
            "{{ with .Tools }}{{ . }}{{ end }} {{ .System }} {{ .Prompt }}",
            ["prompt", "response", "system", "tools"],
        ),
        (
            "{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}",
            ["content", "messages", "role"],
        ),
        (
            '{{ range .Messages }}{{ if eq .Role "tool" }}{{ .ToolName }}{{ end }}{{ end }}',
            ["messages", "role", "toolname"],
        ),
        (
            '{{- range .Messages }}\n{{- if eq .Role "system" }}S{{ .Content }}\n'
            '{{- else if eq .Role "user" }}U{{ .Content }}\n{{- end }}\n{{- end }}',
            ["content", "messages", "role"],
        ),
        (
            "{{- if .Messages }}{{ range .Messages }}{{ .Role }}{{ .Content }}{{ end }}"
            "{{- else }}{{ .System }}{{ .Prompt }}{{ end }}{{ .Response }}",
            ["content", "messages", "prompt", "response", "role", "system"],
        ),
        ("{{ $x := .A.B }}{{ $x.C }}{{ $ }}", ["$", "$x", "a", "b", "c", "response"]),
        (
            '{{ define "t" }}{{ .Inner }}{{ end }}{{ template "t" .Outer }}',
            ["inner", "outer", "response"],
        ),
    ],
)
def test_vars(text: str, expected: list[str]) -> None:
    assert GoTemplate(text).vars() == expected


def test_response_is_appended_but_raw_text_kept() -> None:
    template = GoTemplate("{{ .Prompt }}")
    assert str(template) == template.raw == "{{ .Prompt }}"
    assert template.execute({"Prompt": "a", "Response": "b"}) == "ab"
    with_messages = GoTemplate("{{ range .Messages }}{{ .Content }}{{ end }}")
    assert with_messages.execute({"Messages": [], "Response": "b"}) == ""


def test_prefill_cut_after_first_response() -> None:
    template = GoTemplate(
        "A{{ .Prompt }}B{{ if .X }}x{{ .Response }}y{{ else }}z{{ end }}C{{ .Response }}D"
    )
    data = {"Prompt": "p", "Response": "r", "X": True}
    assert template.execute(data) == "ApBxryCrD"
    assert template.execute_prefill(data) == "ApBxr"
    plain = GoTemplate("[INST] {{ .Prompt }} [/INST] {{ .Response }}</s>")
    assert plain.execute_prefill({"Prompt": "p", "Response": "so"}) == "[INST] p [/INST] so"
