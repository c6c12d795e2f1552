"""``modelkit build`` checks the model before it writes the tag: a smoke check by default
(load, render a system + user message, generate a few tokens) and ``--test SPEC``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gguf
import pytest

from fixtures.cli import run_cli as run
from modelkit.names import ModelName
from modelkit.runtime.runner.child import CRASH_AFTER
from modelkit.store import Store

PASSING_SPEC = """\
cases:
  - name: short
    prompt: Say hello
    options: {num_predict: 4}
    assert:
      - max_tokens: 4
"""

FAILING_SPEC = (
    PASSING_SPEC
    + """\
  - name: impossible
    prompt: Say hello
    options: {num_predict: 4}
    assert:
      - contains: "IMPOSSIBLE-zz-9f3b"
"""
)


def tagged(models: Path, name: str) -> str | None:
    """The manifest digest of ``name`` in the store, or None when it has no tag."""
    store = Store(models)
    for stored in store.list_models():
        if stored.name == store.resolve_name(ModelName.parse(name)):
            return stored.digest
    return None


def test_smoke_check_runs_once_per_model(project: Path, ollama_models: Path) -> None:
    modelfile = str(project / "Modelfile")
    code, _, err = run("build", "-f", modelfile, "-t", "tiny:v1")
    assert code == 0, err
    assert "smoke check passed" in err and "generated" in err
    assert tagged(ollama_models, "tiny:v1") is not None
    # The same model again: the check is remembered for this manifest and runtime.
    code, _, err = run("build", "-f", modelfile, "-t", "tiny:v1")
    assert code == 0 and "passed before for this exact model" in err
    # A changed PARAMETER is a new model: checked again.
    (project / "Modelfile").write_text(
        (project / "Modelfile").read_text() + "PARAMETER temperature 0.3\n"
    )
    code, _, err = run("build", "-f", modelfile, "-t", "tiny:v1")
    assert code == 0 and "smoke check passed" in err


def test_no_check_skips_it(
    project: Path, ollama_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run("build", "--no-check", "-f", str(project / "Modelfile"), "-t", "tiny:v1")
    assert code == 0 and "smoke check" not in err
    assert tagged(ollama_models, "tiny:v1") is not None
    monkeypatch.setenv("MODELKIT_NO_CHECK", "1")  # for machines that cannot load the model
    code, _, err = run("build", "-f", str(project / "Modelfile"), "-t", "tiny:v2")
    assert code == 0 and "smoke check" not in err


def test_weights_llama_cpp_cannot_load_fail_the_build(
    project: Path, tiny_gguf: Path, ollama_models: Path
) -> None:
    data = tiny_gguf.read_bytes()
    broken = project / "broken.gguf"
    broken.write_bytes(data[: len(data) - 50_000])  # header intact, tensor data cut short
    (project / "Modelfile").write_text("FROM ./broken.gguf\n", encoding="utf-8")
    code, _, err = run("build", "-f", str(project / "Modelfile"), "-t", "broken")
    assert code == 1
    assert "smoke check failed, so broken:latest was not tagged" in err
    assert "failed to load model" in err and "Traceback" not in err
    assert tagged(ollama_models, "broken") is None
    # --no-check builds it anyway (the user's call).
    code, _, _ = run("build", "--no-check", "-f", str(project / "Modelfile"), "-t", "broken")
    assert code == 0 and tagged(ollama_models, "broken") is not None


def test_a_model_whose_runner_crashes_fails_the_build(
    project: Path, ollama_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real segfault in the model's runner (the build itself survives it): exit 1 with
    the runner's end, no tag. The safe-kernels retry crashes too (it is not the kernels)."""
    monkeypatch.setenv(CRASH_AFTER, "1")
    code, _, err = run("build", "-f", str(project / "Modelfile"), "-t", "crashy")
    assert code == 1, err
    assert "smoke check failed, so crashy:latest was not tagged" in err
    assert "stopped: signal 11 (SIGSEGV)" in err and "Traceback" not in err
    assert tagged(ollama_models, "crashy") is None


def test_template_that_fails_to_render_fails_the_build(
    project: Path, tiny_gguf: Path, ollama_models: Path
) -> None:
    (project / "Modelfile").write_text(
        f'FROM {tiny_gguf}\nTEMPLATE "{{{{ index .Messages 5 }}}}"\n', encoding="utf-8"
    )
    code, _, err = run("build", "-f", str(project / "Modelfile"), "-t", "bad")
    assert code == 1
    assert "smoke check failed" in err and "index out of range" in err
    assert tagged(ollama_models, "bad") is None


def test_failing_build_keeps_the_previous_tag(project: Path, ollama_models: Path) -> None:
    modelfile = str(project / "Modelfile")
    assert run("build", "--quiet", "-f", modelfile, "-t", "tiny:v1")[0] == 0
    before = tagged(ollama_models, "tiny:v1")
    (project / "failing.yaml").write_text(FAILING_SPEC, encoding="utf-8")
    (project / "Modelfile").write_text(
        (project / "Modelfile").read_text() + "SYSTEM Be brief.\n", encoding="utf-8"
    )
    code, _, err = run(
        "build", "-f", modelfile, "-t", "tiny:v1", "--test", str(project / "failing.yaml")
    )
    assert code == 1
    assert "FAIL  impossible" in err and "PASS  short" in err
    assert "1 of 2 test cases" in err and "tiny:v1 was not tagged" in err
    assert tagged(ollama_models, "tiny:v1") == before


def test_build_with_a_passing_spec_tags_the_model(project: Path, ollama_models: Path) -> None:
    (project / "spec.yaml").write_text("model: other\n" + PASSING_SPEC, encoding="utf-8")
    code, out, err = run(
        "build",
        "-f",
        str(project / "Modelfile"),
        "-t",
        "tiny:v2",
        "--test",
        str(project / "spec.yaml"),
        "--jobs",
        "2",
    )
    assert code == 0, err
    assert "PASS  short" in err and "tiny:v2: 1 passed, 0 failed" in err
    assert "its model: is not used" in err
    assert out.startswith("tiny:v2 ")
    assert tagged(ollama_models, "tiny:v2") is not None


def test_invalid_spec_fails_before_building(project: Path, ollama_models: Path) -> None:
    (project / "bad.yaml").write_text("cases: []\n", encoding="utf-8")
    code, _, err = run(
        "build", "-f", str(project / "Modelfile"), "-t", "x", "--test", str(project / "bad.yaml")
    )
    assert code == 1
    assert f"{project / 'bad.yaml'}:1: cases: [] should be non-empty" in err
    assert not (ollama_models / "blobs").exists() or not list((ollama_models / "blobs").iterdir())


def test_embedding_model_is_checked_by_embedding(
    project: Path, tiny_gguf_factory: Callable[..., Path], ollama_models: Path
) -> None:
    # A pooling type in the GGUF makes it an embedding model (Ollama's rule): no chat.
    weights = tiny_gguf_factory(
        "embed.gguf", extra_metadata={"llama.pooling_type": (1, gguf.GGUFValueType.UINT32)}
    )
    (project / "Modelfile").write_text(f"FROM {weights}\nPARAMETER num_ctx 128\n", encoding="utf-8")
    code, _, err = run("build", "-f", str(project / "Modelfile"), "-t", "embedder")
    assert code == 0, err
    assert "smoke check passed: loaded and embedded a text" in err and "(64 dimensions)" in err
    assert tagged(ollama_models, "embedder") is not None
