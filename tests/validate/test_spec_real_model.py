"""``modelkit test`` and ``build --test`` on the real Qwen2.5-Coder-0.5B-Instruct: tool calls
through the GGUF's own chat template, structured output, similarity, latency budgets — and
the same assertions failing where the answer is wrong."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from modelkit.cli.main import cli

SPEC = """\
modelfile: Modelfile
cases:
  - name: weather
    messages:
      - {role: user, content: "What is the weather in {city} right now?"}
    tools:
      - type: function
        function:
          name: get_weather
          description: Get the current weather for a city
          parameters:
            type: object
            required: [city]
            properties:
              city: {type: string, description: The city name}
    parametrize:
      vars: [{id: paris, city: Paris}, {id: tokyo, city: Tokyo}]
    assert:
      - tool_call:
          name: get_weather
          arguments: {type: object, required: [city], properties: {city: {const: "{city}"}}}
  - name: wrong-city
    messages:
      - {role: user, content: "What is the weather in Paris right now?"}
    tools:
      - type: function
        function:
          name: get_weather
          parameters: {type: object, properties: {city: {type: string}}}
    assert:
      - tool_call: {name: get_weather, arguments: {properties: {city: {const: Berlin}}}}
  - name: capital
    prompt: What is the capital of France? Answer with one word.
    assert:
      - contains: Paris
      - similar: {to: "Paris", min: 0.9}
      - max_ttft_ms: 60000
      - min_tokens_per_s: 0.5
  - name: not-similar
    prompt: What is the capital of France? Answer with one word.
    assert:
      - similar: {to: "Berlin is the capital of Germany", min: 0.5, method: token_f1}
  - name: person
    prompt: Give a JSON object with name and age for a person called Ann aged 31.
    format:
      type: object
      required: [name, age]
      properties: {name: {type: string}, age: {type: integer}}
    assert:
      - json_schema:
          type: object
          required: [name, age]
          properties: {name: {const: Ann}, age: {const: 31}}
"""


def test_real_model_spec(tmp_path: Path, qwen_gguf: Path, ollama_models: Path) -> None:
    # No TEMPLATE: the GGUF's own chat template, which renders tools.
    (tmp_path / "Modelfile").write_text(
        f"FROM {qwen_gguf}\nPARAMETER num_ctx 2048\n", encoding="utf-8"
    )
    spec = tmp_path / "modeltest.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["test", str(spec), "--json", str(report)])
    assert result.exit_code == 1, result.output
    cases = {c["name"]: c for c in json.loads(report.read_text(encoding="utf-8"))["cases"]}
    status = {name: case["status"] for name, case in cases.items()}
    assert status == {
        "weather[paris]": "pass",
        "weather[tokyo]": "pass",
        "wrong-city": "fail",
        "capital": "pass",
        "not-similar": "fail",
        "person": "pass",
    }, result.output
    calls = cases["weather[tokyo]"]["metrics"]["tool_calls"]
    assert calls == [{"name": "get_weather", "arguments": {"city": "Tokyo"}}]
    (wrong,) = cases["wrong-city"]["failures"]
    assert "'Berlin' was expected" in wrong["message"]
    assert 'tool calls: get_weather({"city": "Paris"})' in wrong["message"]
    (unlike,) = cases["not-similar"]["failures"]
    assert "(token_f1) is below 0.50" in unlike["message"]
    assert cases["capital"]["metrics"]["tokens_per_s"] > 0.5


def test_build_test_gates_the_real_model(
    tmp_path: Path, qwen_gguf: Path, ollama_models: Path
) -> None:
    (tmp_path / "Modelfile").write_text(
        f"FROM {qwen_gguf}\nPARAMETER num_ctx 1024\n", encoding="utf-8"
    )
    spec = tmp_path / "gate.yaml"
    spec.write_text(
        "cases:\n  - name: capital\n    prompt: What is the capital of France?"
        " Answer with one word.\n    assert: [{contains: Paris}]\n",
        encoding="utf-8",
    )
    args = ["build", "-f", str(tmp_path / "Modelfile"), "-t", "qwen:gate", "--test", str(spec)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "smoke check passed" in result.stderr and "PASS  capital" in result.stderr
    spec.write_text(spec.read_text().replace("Paris", "Berlin"), encoding="utf-8")
    result = CliRunner().invoke(cli, [*args[:4], "qwen:bad", *args[5:]])
    assert result.exit_code == 1
    assert "FAIL  capital" in result.stderr and "qwen:bad was not tagged" in result.stderr
    assert not list((ollama_models / "manifests").rglob("bad"))
