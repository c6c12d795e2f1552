"""``modelkit template render``: the exact prompt, from a model or a template file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fixtures.cli import run_cli as run

CHATML = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)


def test_render_from_model_includes_system_and_messages(
    ollama_models: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    shutil.copy(tiny_gguf, tmp_path / "tiny.gguf")
    (tmp_path / "Modelfile").write_text(
        f'FROM ./tiny.gguf\nTEMPLATE """{CHATML}"""\nSYSTEM Be brief.\nMESSAGE user a\n'
        "MESSAGE assistant b\n"
    )
    assert run("build", "--quiet", "-f", str(tmp_path / "Modelfile"), "-t", "chat")[0] == 0
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "Hi!"}]))
    code, out, err = run("template", "render", "-m", "chat", "--messages", str(messages))
    assert code == 0, err
    assert out == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\na<|im_end|>\n"
        "<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    code, out, _ = run(
        "template", "render", "-m", "chat", "--messages", str(messages), "--system", "Other."
    )
    assert out.startswith("<|im_start|>system\nOther.<|im_end|>")


def test_render_model_without_template_uses_the_gguf_chat_template(
    ollama_models: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    shutil.copy(tiny_gguf, tmp_path / "tiny.gguf")
    (tmp_path / "Modelfile").write_text("FROM ./tiny.gguf\n")
    run("build", "--quiet", "-f", str(tmp_path / "Modelfile"), "-t", "bare")
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "Hi!"}]))
    code, out, _ = run("template", "render", "-m", "bare", "--messages", str(messages))
    assert code == 0
    assert "<|im_start|>user\nHi!<|im_end|>" in out  # the tiny GGUF's Jinja ChatML template


def test_render_from_template_files(tmp_path: Path) -> None:
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "Q"}]))
    go = tmp_path / "t.gotmpl"
    go.write_text("{{ .System }}|{{ .Prompt }}")
    code, out, _ = run(
        "template", "render", "--template", str(go), "--messages", str(messages), "--system", "S"
    )
    assert code == 0 and out == "S|Q"
    jinja = tmp_path / "t.jinja"
    jinja.write_text("{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}")
    code, out, _ = run("template", "render", "--template", str(jinja), "--messages", str(messages))
    assert out == "[user:Q]"


def test_render_errors(tmp_path: Path) -> None:
    messages = tmp_path / "m.json"
    messages.write_text("{not json")
    go = tmp_path / "t.gotmpl"
    go.write_text("{{ .Prompt }}")
    code, _, err = run("template", "render", "--template", str(go), "--messages", str(messages))
    assert code == 1 and "not valid JSON" in err
    code, _, err = run("template", "render", "--messages", str(messages))
    assert code == 2 and "exactly one of" in err
    messages.write_text("[]")
    go.write_text("{{ .Nope.Deeper }}")
    code, _, err = run("template", "render", "--template", str(go), "--messages", str(messages))
    assert code == 1 and "template" in err and "Traceback" not in err
