"""ModelName: Ollama's parse rules and test vectors (reference §3.5), plus store safety."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from modelkit.errors import ModelNameError
from modelkit.names import ModelName


@pytest.mark.parametrize(
    ("text", "host", "namespace", "model", "tag"),
    [
        ("model", "registry.ollama.ai", "library", "model", "latest"),
        ("namespace/model", "registry.ollama.ai", "namespace", "model", "latest"),
        ("host:port/namespace/model", "host:port", "namespace", "model", "latest"),
        ("scheme://host:port/namespace/model:tag", "host:port", "namespace", "model", "tag"),
        ("_why/_the/_lucky:_stiff", "_why", "_the", "_lucky", "_stiff"),
        ("h/n/m:t", "h", "n", "m", "t"),
        ("host:https/namespace/model:tag", "host:https", "namespace", "model", "tag"),
        ("llama3.2", "registry.ollama.ai", "library", "llama3.2", "latest"),
        (
            "llama3:7b-instruct-q4_K_M",
            "registry.ollama.ai",
            "library",
            "llama3",
            "7b-instruct-q4_K_M",
        ),
        ("localhost:5000/me/tiny:v1.0", "localhost:5000", "me", "tiny", "v1.0"),
        ("ollama.com/library/qwen2.5:0.5b", "ollama.com", "library", "qwen2.5", "0.5b"),
    ],
)
def test_parse_valid(text: str, host: str, namespace: str, model: str, tag: str) -> None:
    name = ModelName.parse(text)
    assert (name.host, name.namespace, name.model, name.tag) == (host, namespace, model, tag)
    assert ModelName.is_valid(text)


def test_parse_scheme() -> None:
    assert ModelName.parse("scheme://host:port/namespace/model:tag").scheme == "scheme"
    assert ModelName.parse("http://localhost:5000/a/b").scheme == "http"
    assert ModelName.parse("model").scheme == "https"


def test_max_lengths() -> None:
    part = "a" * 80
    host = "h" * 350
    name = ModelName.parse(f"{host}/{part}/{part}:{part}")
    assert (name.host, name.namespace, name.model, name.tag) == (host, part, part, part)
    for text in (
        f"{'h' * 351}/n/m:t",
        f"h/{'n' * 81}/m:t",
        f"h/n/{'m' * 81}:t",
        f"h/n/m:{'t' * 81}",
    ):
        with pytest.raises(ModelNameError):
            ModelName.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mm:",
        "n/m:",
        "/nn/mm",
        "//",
        "//mm",
        "hh//",
        "@",
        "00@",
        "m@d",
        "^",
        "-model",
        "-ns/model",
        "-host/ns/model",
        "model:-tag",
        "host/name:space/model:tag",
        "ns.dot/model",  # no '.' in a namespace
        ":tag",
        "a/b/c/d",  # host may not contain '/'
        # Anything that could escape the store:
        "..",
        ".",
        "../model",
        "ns/..",
        "../../etc/passwd",
        "/etc/passwd",
        "a/../b",
        "host/ns/..:latest",
        "model:..",
        "model:.",
        "model:.hidden",
        "back\\slash",
        "ns\\..\\model",
        "model:ta/g",
        "mödel",
        "model name",
        " model",
        "model\x00",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(ModelNameError, match=r"^invalid model name"):
        ModelName.parse(text)
    assert not ModelName.is_valid(text)


def test_error_message_has_text_and_reason() -> None:
    with pytest.raises(ModelNameError) as info:
        ModelName.parse("mm:")
    assert str(info.value) == "invalid model name: mm: (tag is empty)"


def test_constructor_validates() -> None:
    with pytest.raises(ModelNameError):
        ModelName("registry.ollama.ai", "library", "..", "latest")
    with pytest.raises(ModelNameError):
        ModelName("registry.ollama.ai", "lib/rary", "m", "latest")


def test_str_display_and_relpath() -> None:
    n = ModelName.parse("llama3.2")
    assert str(n) == "registry.ollama.ai/library/llama3.2:latest"
    assert n.display == "llama3.2:latest"
    assert n.manifest_relpath == PurePosixPath("registry.ollama.ai/library/llama3.2/latest")
    assert ModelName.parse("me/tiny:v1").display == "me/tiny:v1"
    assert ModelName.parse("localhost:5000/library/tiny").display == (
        "localhost:5000/library/tiny:latest"
    )
    assert ModelName.parse("Registry.Ollama.AI/Library/X:y").display == "X:y"
    assert ModelName.parse("h:1/n/m:t").manifest_relpath == PurePosixPath("h:1/n/m/t")


def test_matches_is_case_insensitive() -> None:
    a = ModelName.parse("Llama3.2:Latest")
    b = ModelName.parse("llama3.2")
    assert a.matches(b) and b.matches(a)
    assert a != b
    assert not a.matches(ModelName.parse("llama3.2:other"))
    assert ModelName.parse("http://h/n/m:t").matches(ModelName.parse("H/N/M:T"))


def test_from_manifest_relpath() -> None:
    n = ModelName.from_manifest_relpath(["registry.ollama.ai", "library", "llama3.2", "latest"])
    assert n == ModelName.parse("llama3.2")
    assert ModelName.from_manifest_relpath(PurePosixPath("h:1/n/m/t")) == ModelName.parse(
        "h:1/n/m:t"
    )
    for parts in (
        ["library", "llama3.2", "latest"],
        ["a", "registry.ollama.ai", "library", "llama3.2", "latest"],
        ["registry.ollama.ai", "library", "..", "latest"],
        ["registry.ollama.ai", ".", "m", "latest"],
        ["registry.ollama.ai", "library", "m", ".tmp"],
        ["registry.ollama.ai", "library", "m", ""],
    ):
        with pytest.raises(ModelNameError):
            ModelName.from_manifest_relpath(parts)


def test_with_tag() -> None:
    assert ModelName.parse("me/m:a").with_tag("b") == ModelName.parse("me/m:b")
    with pytest.raises(ModelNameError):
        ModelName.parse("me/m:a").with_tag("../x")
