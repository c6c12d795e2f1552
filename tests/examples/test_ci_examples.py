"""examples/ci: the GitHub Actions workflow and the GitLab CI job run end to end on this machine
by examples/ci/run_local.py against the real Qwen2.5-Coder-0.5B-Instruct model, and
run_local's own rules checked on small model-free definitions."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from filelock import FileLock

from modelkit.validate.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
RUN_LOCAL = ROOT / "examples" / "ci" / "run_local.py"
SPEC = ROOT / "examples" / "modeltest.yaml"

FAILING_SPEC = """\
modelfile: Modelfile
cases:
  - name: arithmetic
    prompt: "What is 12 + 30? Reply with only the number."
    assert:
      - equals: "42"
  - name: wrong-capital
    prompt: "What is the capital of France? Answer with one word."
    options: {num_predict: 4}
    assert:
      - contains: Lyon
"""


def run_local(
    out: Path, *args: str, python: str | Path = sys.executable
) -> tuple[int, str, dict[str, Any]]:
    """Run run_local.py into ``out``; (exit status, its output, its result.json or {})."""
    proc = subprocess.run(
        [str(python), str(RUN_LOCAL), *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    result_file = out / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, result


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in result["steps"]}


def junit_cases(junit: Path) -> dict[str, list[str]]:
    """testcase name -> the tags of its failure/error children."""
    root = ET.parse(junit).getroot()
    return {
        str(c.get("name")): [e.tag for e in c if e.tag in ("failure", "error")]
        for c in root.iter("testcase")
    }


@pytest.fixture
def model_env(qwen_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """run_local arguments for the real model: fetch_models.py finds it in its cache.

    One real-model job at a time across xdist workers: each llama.cpp process uses every
    core, and two at once on a small machine each run several times slower than in turn."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    lock = FileLock(tmp_path_factory.getbasetemp().parent / "modelkit-ci-examples.lock")
    with lock:
        yield ["--env", f"MODELKIT_TEST_MODELS_DIR={qwen_gguf.parent}"]


@pytest.fixture
def out(tmp_path: Path) -> Iterator[Path]:
    """The run's folder; its model store (a 491 MB copy of the model) goes afterwards."""
    folder = tmp_path / "run"
    yield folder
    for store in folder.glob("workspace/.ollama-models"):
        shutil.rmtree(store, ignore_errors=True)


# ------------------------------------------------------------------ end to end, real model


def test_github_workflow_passes(model_env: list[str], out: Path) -> None:
    # --wheel: installed as a user's CI installs it, so a packaging mistake fails here.
    code, output, result = run_local(out, "github", "--wheel", *model_env)
    assert code == 0, output
    assert result["ok"] is True
    assert set(statuses(result).values()) == {"success"}, result["steps"]
    junit = out / "artifacts" / "modelkit-reports" / "junit.xml"
    assert result["junit"] == [str(junit)]
    assert f"JUnit report: {junit}" in output
    cases = junit_cases(junit)
    assert list(cases) == [c.name for c in load_spec(SPEC).cases]
    assert all(not problems for problems in cases.values()), cases
    report = json.loads((out / "artifacts" / "modelkit-reports" / "modeltest.json").read_text())
    assert report["model"] == "example:ci" and report["failed"] == 0
    sarif = json.loads((out / "artifacts" / "code-scanning" / "modelkit-lint.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["tool"]["driver"]["name"] == "modelkit"
    summary = (out / "runner" / "step-summary.md").read_text()
    assert "example:ci: every modeltest case passed" in summary


@pytest.mark.slow  # a third end-to-end run; the GitLab mechanics are also tested below
def test_gitlab_job_passes(model_env: list[str], out: Path) -> None:
    code, output, result = run_local(out, "gitlab", *model_env)
    assert code == 0, output
    assert set(statuses(result).values()) == {"success"}, result["steps"]
    junit = out / "artifacts" / "model" / "reports" / "junit.xml"
    assert result["junit"] == [str(junit)]
    assert list(junit_cases(junit)) == [c.name for c in load_spec(SPEC).cases]
    sarif = json.loads((out / "artifacts" / "model" / "modelkit-lint.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    assert "$ modelkit build" in output  # each script line is echoed, as GitLab does


# ------------------------------------------------------------------ run_local's rules, no model

WORKFLOW = """\
env: {GREETING: hello, WHO: workflow}
jobs:
  only:
    env: {WHO: job}
    steps:
      - uses: actions/checkout@v4
      - name: greet
        env: {PUNCT: "!"}
        run: echo "$GREETING ${{ env.WHO }}$PUNCT $OVERRIDDEN" > greeting.txt
      - name: breaks
        run: |
          false
          echo "not reached" > after-false.txt
      - name: never
        run: touch never.txt
      - name: on failure
        if: ${{ failure() }}
        run: touch failed.txt
      - name: upload
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: files
          path: |
            greeting.txt
            *.missing
"""


def test_github_steps_env_and_always(out: Path, tmp_path: Path) -> None:
    workflow = tmp_path / "workflow.yml"
    workflow.write_text(WORKFLOW, encoding="utf-8")
    code, output, result = run_local(
        out, "github", "--file", str(workflow), "--env", "OVERRIDDEN=yes", "--env", "WHO=cli"
    )
    assert code == 1, output
    assert statuses(result) == {
        "[1] actions/checkout@v4": "success",
        "[2] greet": "success",
        "[3] breaks": "failure",
        "[4] never": "skipped",
        "[5] on failure": "success",
        "[6] upload": "success",
    }
    assert (out / "artifacts" / "files" / "greeting.txt").read_text() == "hello cli! yes\n"
    assert (out / "workspace" / "README.md").is_file()  # checkout copied the repo
    assert not (out / "workspace" / "after-false.txt").exists()  # bash -e
    assert not (out / "workspace" / "never.txt").exists()
    assert (out / "workspace" / "failed.txt").exists()


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("uses: some/action@v1", "unsupported action 'some/action@v1'"),
        ("run: echo ${{ secrets.TOKEN }}", "unsupported expression ${{ secrets.TOKEN }}"),
        ("{if: github.ref == 'main', run: 'true'}", "unsupported if"),
    ],
)
def test_github_unsupported_definitions_are_errors(
    out: Path, tmp_path: Path, step: str, message: str
) -> None:
    workflow = tmp_path / "workflow.yml"
    workflow.write_text(f"jobs:\n  only:\n    steps:\n      - {step}\n", encoding="utf-8")
    code, output, _ = run_local(out, "github", "--file", str(workflow))
    assert code == 2 and message in output, output


def test_github_upload_sarif_rejects_a_non_sarif_file(out: Path, tmp_path: Path) -> None:
    workflow = tmp_path / "workflow.yml"
    workflow.write_text(
        """\
jobs:
  only:
    steps:
      - run: |
          echo '{"version": "2.0.0", "runs": []}' > lint.sarif
      - uses: github/codeql-action/upload-sarif@v3
        with: {sarif_file: lint.sarif}
""",
        encoding="utf-8",
    )
    code, output, result = run_local(out, "github", "--file", str(workflow))
    assert code == 1 and "is not SARIF 2.1.0" in output, output
    assert list(statuses(result).values()) == ["success", "failure"]


def test_gitlab_variables_script_and_artifacts_on_failure(out: Path, tmp_path: Path) -> None:
    definition = tmp_path / ".gitlab-ci.yml"
    definition.write_text(
        """\
variables: {REPORT_DIR: "$CI_PROJECT_DIR/reports"}
job:
  image: python:3.12
  variables: {NAME: "${CI_JOB_NAME}-x"}
  before_script: [mkdir -p "$REPORT_DIR"]
  script:
    - python -c "import sys; print(sys.prefix)" > "$REPORT_DIR/prefix.txt"
    - echo "$NAME" > "$REPORT_DIR/name.txt"
    - exit 4
    - touch "$REPORT_DIR/never.txt"
  artifacts:
    when: always
    paths: [reports/]
""",
        encoding="utf-8",
    )
    code, output, result = run_local(out, "gitlab", "--file", str(definition))
    assert code == 1, output
    assert list(statuses(result).values()) == ["success", "success", "failure", "success"]
    reports = out / "artifacts" / "job" / "reports"
    assert (reports / "name.txt").read_text() == "job-x\n"
    assert (reports / "prefix.txt").read_text().strip() == str(out / "runner" / "venv")
    assert not (reports / "never.txt").exists()
    assert "$ exit 4" in output


# ------------------------------------------------------------------ a failing case, real model


def test_failing_case_fails_the_job_and_keeps_the_report(
    model_env: list[str], out: Path, tmp_path: Path
) -> None:
    spec = tmp_path / "failing.yaml"
    spec.write_text(FAILING_SPEC, encoding="utf-8")
    code, output, result = run_local(
        out, "github", *model_env, "--replace", f"examples/modeltest.yaml={spec}"
    )
    assert code == 1, output
    assert result["ok"] is False
    steps = statuses(result)
    assert steps["[10] Test"] == "failure"
    assert steps["[11] Summary"] == "skipped"  # a plain step after the failure
    assert steps["[12] Upload reports"] == "success"  # if: always()
    assert list(steps.values())[:9] == ["success"] * 9
    junit = out / "artifacts" / "modelkit-reports" / "junit.xml"
    assert result["junit"] == [str(junit)]
    assert junit_cases(junit) == {"arithmetic": [], "wrong-capital": ["failure"]}
    assert ET.parse(junit).getroot().get("failures") == "1"
    assert "job FAILED" in output


# ------------------------------------------------------------------ run from a virtualenv

WHERE = """\
python -c "import sys, modelkit, rich; print(sys.prefix); print(modelkit.__file__)" > where.txt
command -v modelkit >> where.txt
python -m pip --version >> where.txt
"""


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new virtualenv, made here, that has this environment's packages but
    not its base interpreter's site-packages: they come through a .pth file (its lines
    ``site.addsitedir``, so editable installs work). Where the tests run from a virtualenv
    (as in the development setup), its packages are not in the base interpreter, as in the
    user report: ``venv --system-site-packages`` from such a venv sees none of them."""
    path = tmp_path_factory.mktemp("fresh-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = subprocess.run(
        [python, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    dirs = dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib")])
    lines = [f"import site; site.addsitedir({d!r})\n" for d in dirs if os.path.isdir(d)]
    (Path(purelib) / "test-env.pth").write_text("".join(lines), encoding="utf-8")
    return python


def test_github_workflow_runs_from_a_fresh_virtualenv(
    qwen_gguf: Path, fresh_venv: Path, out: Path, tmp_path: Path
) -> None:
    """The example workflow up to its lint steps (no Build or Test: no llama.cpp needed), run
    from a virtualenv: the job installs into its own venv, which sees the virtualenv's
    packages, so modelkit runs and the SARIF file is complete."""
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github" / "modelkit.yml").read_text())
    steps = workflow["jobs"]["model"]["steps"]
    names = [s.get("name") for s in steps]
    workflow["jobs"]["model"]["steps"] = [
        *steps[: names.index("Build")],
        {"name": "Where", "run": WHERE},
    ]
    definition = tmp_path / "modelkit.yml"
    definition.write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    code, output, result = run_local(
        out,
        "github",
        "--file",
        str(definition),
        "--env",
        f"MODELKIT_TEST_MODELS_DIR={qwen_gguf.parent}",
        python=fresh_venv,
    )
    assert code == 0, output
    assert set(statuses(result).values()) == {"success"}, result["steps"]
    assert "Upload lint findings" in " ".join(statuses(result))
    sarif = json.loads((out / "artifacts" / "code-scanning" / "modelkit-lint.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["tool"]["driver"]["name"] == "modelkit"
    venv = out / "runner" / "venv"
    prefix, module, script, pip = (out / "workspace" / "where.txt").read_text().splitlines()
    assert Path(prefix) == venv  # the job's python is the job's venv...
    assert Path(module) == out / "workspace" / "modelkit" / "__init__.py"  # ...sees its install
    assert Path(script) == venv / "bin" / "modelkit"  # pip installed into the job's venv
    assert pip.startswith("pip ")
