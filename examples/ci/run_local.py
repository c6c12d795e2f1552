#!/usr/bin/env python3
"""Run examples/ci's GitHub Actions workflow or GitLab CI job on this machine.

No GitHub, GitLab, ``act`` or docker: the job's shell steps run with bash in a scratch
workspace, and the few actions the workflow uses are mapped to local equivalents::

    actions/checkout             copy the repo's files (git ls-files: tracked + untracked,
                                 not ignored) into the workspace
    actions/setup-python         a fresh venv on PATH that sees this interpreter's packages
    actions/cache                nothing
    github/codeql-action/upload-sarif   check the file is SARIF 2.1.0 JSON, keep a copy
    actions/upload-artifact      copy the paths into OUT/artifacts/NAME/

Any other action, or a ``${{ }}`` expression outside ``env.*``, ``github.workspace``,
``runner.os``, ``runner.temp`` (and ``always()``, ``success()``, ``failure()``,
``cancelled()`` in ``if:``), is an error. For GitLab the job's ``image`` becomes the venv;
``variables``, ``before_script`` + ``script`` and ``artifacts`` (``when``, ``paths``,
``reports: junit``) are honoured, ``cache`` is a no-op.

By default ``MODELKIT_PACKAGE`` installs the workspace copy of this checkout, editable (as
README's development setup does; ``--wheel``: as a built wheel, as a user's CI gets it), with
``PIP_NO_DEPS=1``: llama-cpp-python and the other dependencies come from the environment that
runs this script (a virtualenv or not), so nothing is compiled or downloaded but pip's build
backend. ``--as-is`` keeps the definition's own values. ``--env K=V`` overrides any variable;
``--replace DEST=SRC`` puts SRC at DEST in the workspace after checkout.

    python examples/ci/run_local.py github|gitlab [--out DIR] [--env K=V] [--replace DEST=SRC]

Exit status: 0 the job passed, 1 it failed, 2 the definition or the arguments are not
supported. OUT/result.json records each step's status and where the JUnit reports are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
DEFINITIONS = {
    "github": HERE / "github" / "modelkit.yml",
    "gitlab": HERE / "gitlab" / ".gitlab-ci.yml",
}
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
# Top-level keys of a .gitlab-ci.yml that are not jobs.
_GITLAB_KEYWORDS = {"default", "include", "stages", "variables", "workflow", "image"}
_GITLAB_KEYWORDS |= {"services", "cache", "before_script", "after_script"}


class DefinitionError(Exception):
    """The CI definition uses something this runner does not support."""


class StepFailed(Exception):
    """A step failed (the job goes on with ``if: always()`` steps only)."""


@dataclass
class StepResult:
    name: str
    status: str  # "success" | "failure" | "skipped"
    seconds: float = 0.0


@dataclass
class Run:
    """One local job run: its folders, environment and step results."""

    repo: Path
    out: Path
    overrides: dict[str, str]
    replacements: dict[str, Path]
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    steps: list[StepResult] = field(default_factory=list)

    @property
    def workspace(self) -> Path:
        return self.out / "workspace"

    @property
    def runner(self) -> Path:
        return self.out / "runner"

    @property
    def artifacts(self) -> Path:
        return self.out / "artifacts"

    def step(self, name: str, action: Callable[..., object], *args: Any) -> bool:
        """Run ``action(*args)`` as a step; False when it raised StepFailed."""
        print(f"\n==> {name}", flush=True)
        start = time.monotonic()
        try:
            action(*args)
            status = "success"
        except StepFailed as err:
            print(f"step failed: {err}", flush=True)
            status = "failure"
        self.steps.append(StepResult(name, status, round(time.monotonic() - start, 2)))
        return status == "success"

    def skip(self, name: str) -> None:
        print(f"\n==> {name}: skipped (an earlier step failed)", flush=True)
        self.steps.append(StepResult(name, "skipped"))

    def bash(self, script: str, env: Mapping[str, str], cwd: Path) -> None:
        command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script]
        code = subprocess.run(command, cwd=cwd, env=dict(env), check=False).returncode
        if code != 0:
            raise StepFailed(f"exit status {code}")

    def checkout(self) -> None:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=self.repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for name in filter(None, listed.split("\0")):
            source, target = self.repo / name, self.workspace / name
            if not source.is_symlink() and not source.exists():
                continue  # deleted in the working tree
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                target.symlink_to(os.readlink(source))
            else:
                shutil.copy2(source, target)
        for dest, source in self.replacements.items():
            target = self.workspace / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        print(f"copied {self.repo} into {self.workspace}")

    def venv(self, python_version: str | None) -> dict[str, str]:
        """A fresh venv seeing this interpreter's packages; returns the env entries to use it.

        Not ``venv --system-site-packages``: run from a virtualenv, that sees the base
        interpreter's site-packages, not the virtualenv's where the dependencies are. A
        ``.pth`` file adds :func:`parent_site_dirs` instead (their own ``.pth`` files, e.g.
        editable installs, included); named to sort last, so what the job installs into the
        venv comes first. ``--without-pip`` when pip is there: ``python -m pip`` is then
        this interpreter's pip, installing into the venv."""
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        if python_version and str(python_version) != here:
            print(f"note: the definition asks for Python {python_version}; using {here}")
        path = self.runner / "venv"
        without_pip = ["--without-pip"] if importlib.util.find_spec("pip") else []
        subprocess.run([sys.executable, "-m", "venv", *without_pip, str(path)], check=True)
        code = "import sysconfig; print(sysconfig.get_path('purelib'))"
        purelib = subprocess.run(
            [path / "bin" / "python", "-c", code], check=True, capture_output=True, text=True
        ).stdout.strip()
        lines = [f"import site; site.addsitedir({d!r})" for d in parent_site_dirs()]
        (Path(purelib) / "zz-run-local-parent.pth").write_text("\n".join(lines) + "\n")
        print(f"created {path}")
        return {"VIRTUAL_ENV": str(path), "PATH": f"{path / 'bin'}{os.pathsep}{os.environ['PATH']}"}

    def collect(self, name: str, patterns: list[str], keep_paths: bool) -> list[Path]:
        """Copy workspace paths (files, folders, globs) into OUT/artifacts/NAME/: under their
        workspace paths (GitLab) or, for a folder, its contents at the top (GitHub)."""
        root = self.artifacts / name
        copied: list[Path] = []
        for pattern in filter(None, (p.strip().rstrip("/") for p in patterns)):
            for match in sorted(self.workspace.glob(pattern)):
                relative = match.relative_to(self.workspace)
                if keep_paths:
                    dest = root / relative
                else:
                    dest = root if match.is_dir() else root / match.name
                if match.is_dir():
                    shutil.copytree(match, dest, dirs_exist_ok=True)
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(match, dest)
                copied.append(dest)
        print(f"artifact {name}: {len(copied)} path(s) -> {root}")
        return copied

    def junit_reports(self) -> list[str]:
        found = []
        for path in sorted(self.artifacts.rglob("*.xml")):
            head = path.read_text(encoding="utf-8", errors="replace")[:500]
            if "<testsuite" in head:
                found.append(str(path))
        return found

    def finish(self, kind: str) -> int:
        ok = all(s.status != "failure" for s in self.steps)
        junit = self.junit_reports()
        result = {
            "ci": kind,
            "ok": ok,
            "out": str(self.out),
            "junit": junit,
            "steps": [asdict(s) for s in self.steps],
        }
        (self.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        print("\n" + "\n".join(f"{s.status:>8}  {s.name} ({s.seconds:.1f}s)" for s in self.steps))
        print(f"job {'passed' if ok else 'FAILED'}; results in {self.out / 'result.json'}")
        print(f"JUnit report: {', '.join(junit) if junit else 'none'}")
        return 0 if ok else 1


def parent_site_dirs() -> list[str]:
    """The site-packages folders of the interpreter running this script: its virtualenv's
    (and the base's, when that venv includes them) or, outside one, the base's and the user's."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    dirs += [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


# ---------------------------------------------------------------------------------- GitHub


def expand(text: str, env: Mapping[str, str], run: Run) -> str:
    """Replace the ``${{ ... }}`` expressions that this runner supports."""

    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        contexts = {
            "github.workspace": str(run.workspace),
            "runner.os": "Linux",
            "runner.temp": str(run.runner / "temp"),
        }
        if expr in contexts:
            return contexts[expr]
        if m := re.fullmatch(r"env\.(\w+)", expr):
            return env.get(m.group(1), "")
        raise DefinitionError(f"unsupported expression ${{{{ {expr} }}}}")

    return _EXPRESSION.sub(value, text)


def should_run(condition: Any, failed: bool) -> bool:
    if condition is None:
        return not failed
    expr = str(condition).strip()
    if m := _EXPRESSION.fullmatch(expr):
        expr = m.group(1)
    functions = {
        "always()": True,
        "success()": not failed,
        "failure()": failed,
        "cancelled()": False,
    }
    if expr not in functions:
        raise DefinitionError(f"unsupported if: {condition!r}")
    return functions[expr]


def with_values(step: dict[str, Any], env: Mapping[str, str], run: Run) -> dict[str, str]:
    return {k: expand(str(v), env, run) for k, v in (step.get("with") or {}).items()}


def check_sarif(path: Path, run: Run) -> None:
    """upload-sarif, locally: each file must be SARIF 2.1.0 JSON; keep a copy."""
    files = sorted(path.glob("*.sarif")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise StepFailed(f"no SARIF file at {path}")
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except ValueError as err:
            raise StepFailed(f"{file} is not JSON: {err}") from err
        if data.get("version") != "2.1.0" or not isinstance(data.get("runs"), list):
            raise StepFailed(f"{file} is not SARIF 2.1.0 (version and runs)")
        print(
            f"{file.name}: SARIF 2.1.0, {sum(len(r.get('results', [])) for r in data['runs'])}"
            " result(s)"
        )
        (run.artifacts / "code-scanning").mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, run.artifacts / "code-scanning" / file.name)


def run_github(definition: Path, run: Run, job_name: str | None) -> int:
    workflow = yaml.safe_load(definition.read_text(encoding="utf-8"))
    jobs: dict[str, Any] = workflow.get("jobs") or {}
    if job_name is None and len(jobs) != 1:
        raise DefinitionError(f"pick one job with --job: {', '.join(jobs)}")
    name = job_name or next(iter(jobs))
    if name not in jobs:
        raise DefinitionError(f"no job {name!r} in {definition}")
    job = jobs[name]
    run.workspace.mkdir(parents=True)
    (run.runner / "temp").mkdir(parents=True)
    summary = run.runner / "step-summary.md"
    process_env = {
        **run.base_env,
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(run.workspace),
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_OS": "Linux",
        "RUNNER_TEMP": str(run.runner / "temp"),
    }
    env: dict[str, str] = dict(run.overrides)
    for level in (workflow.get("env") or {}, job.get("env") or {}):
        env = {**env, **{k: expand(str(v), env, run) for k, v in level.items()}, **run.overrides}

    def upload(values: dict[str, str]) -> None:
        patterns = values.get("path", "").splitlines()
        if not run.collect(values.get("name", "artifact"), patterns, keep_paths=False):
            if values.get("if-no-files-found", "warn") == "error":
                raise StepFailed(f"no files found at {patterns}")
            print(f"warning: no files found at {patterns}")

    actions: dict[str, Callable[[dict[str, str]], None]] = {
        "actions/checkout": lambda _: run.checkout(),
        "actions/setup-python": lambda w: process_env.update(run.venv(w.get("python-version"))),
        "actions/cache": lambda _: print("cache: nothing to do locally"),
        "github/codeql-action/upload-sarif": lambda w: check_sarif(
            run.workspace / w.get("sarif_file", ""), run
        ),
        "actions/upload-artifact": upload,
    }

    failed = False
    for index, step in enumerate(job.get("steps") or [], start=1):
        label = step.get("name") or step.get("uses") or str(step.get("run", "")).split("\n")[0]
        label = f"[{index}] {label}"
        if not should_run(step.get("if"), failed):
            run.skip(label)
            continue
        step_env = {
            **env,
            **{k: expand(str(v), env, run) for k, v in (step.get("env") or {}).items()},
            **run.overrides,
        }
        if "run" in step:
            if step.get("shell", "bash") != "bash":
                raise DefinitionError(f"{label}: only bash steps are supported")
            script = expand(str(step["run"]), step_env, run)
            cwd = run.workspace / step.get("working-directory", ".")
            ok = run.step(label, run.bash, script, {**process_env, **step_env}, cwd)
        else:
            uses = str(step.get("uses", ""))
            action = actions.get(uses.split("@")[0])
            if action is None:
                raise DefinitionError(f"{label}: unsupported action {uses!r}")
            # actions/cache's key may use hashFiles(), which nothing here evaluates.
            cache = uses.startswith("actions/cache@")
            values = {} if cache else with_values(step, step_env, run)
            ok = run.step(label, action, values)
        failed = failed or not ok
    return run.finish("github")


# ---------------------------------------------------------------------------------- GitLab


def gitlab_expand(text: str, env: Mapping[str, str]) -> str:
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)


def run_gitlab(definition: Path, run: Run, job_name: str | None) -> int:
    config: dict[str, Any] = yaml.safe_load(definition.read_text(encoding="utf-8"))
    jobs = {
        k: v
        for k, v in config.items()
        if k not in _GITLAB_KEYWORDS and not k.startswith(".") and isinstance(v, dict)
    }
    if job_name is None and len(jobs) != 1:
        raise DefinitionError(f"pick one job with --job: {', '.join(jobs)}")
    name = job_name or next(iter(jobs))
    if name not in jobs:
        raise DefinitionError(f"no job {name!r} in {definition}")
    job: dict[str, Any] = jobs[name]
    run.workspace.mkdir(parents=True)
    run.runner.mkdir(parents=True)
    env = {
        **run.base_env,
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_JOB_NAME": name,
        "CI_PROJECT_DIR": str(run.workspace),
        "CI_BUILDS_DIR": str(run.out),
    }
    run.step("checkout", run.checkout)
    image = job.get("image", config.get("image"))
    ok = run.step(f"image {image} -> venv", lambda: env.update(run.venv(None)))
    for level in (config.get("variables") or {}, job.get("variables") or {}):
        for key, value in level.items():
            value = value.get("value", "") if isinstance(value, dict) else value
            env[key] = gitlab_expand(str(value), env)
    env.update(run.overrides)
    lines = [*(job.get("before_script", config.get("before_script")) or []), *job["script"]]
    script = "\n".join(f"printf '$ %s\\n' {shlex.quote(str(line))}\n{line}" for line in lines)
    if ok:
        ok = run.step("before_script + script", run.bash, script, env, run.workspace)
    else:
        run.skip("before_script + script")
    artifacts: dict[str, Any] = job.get("artifacts") or {}
    when = str(artifacts.get("when", "on_success"))
    if when not in ("always", "on_success", "on_failure"):
        raise DefinitionError(f"unsupported artifacts: when: {when}")
    if artifacts and {"always": True, "on_success": ok, "on_failure": not ok}[when]:
        junit = (artifacts.get("reports") or {}).get("junit") or []
        patterns = [*artifacts.get("paths", []), *([junit] if isinstance(junit, str) else junit)]
        run.step("artifacts", run.collect, name, patterns, True)
    elif artifacts:
        run.skip("artifacts")
    return run.finish("gitlab")


# ------------------------------------------------------------------------------------ main


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DefinitionError(f"{what} wants KEY=VALUE, not {item!r}")
        pairs[key] = value
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("ci", choices=sorted(DEFINITIONS), help="which definition to run")
    parser.add_argument("--file", type=Path, help="another definition of that kind")
    parser.add_argument("--job", help="the job to run when the definition has several")
    parser.add_argument("--repo", type=Path, help="the git checkout to copy (default: this one)")
    parser.add_argument("--out", type=Path, help="an empty folder for the run (default: temp)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="override a variable (over the definition's)",
    )
    parser.add_argument(
        "--replace",
        action="append",
        default=[],
        metavar="DEST=SRC",
        help="after checkout, copy file SRC to DEST in the workspace",
    )
    parser.add_argument(
        "--wheel", action="store_true", help="install the workspace as a wheel, not editable"
    )
    parser.add_argument(
        "--as-is", action="store_true", help="install MODELKIT_PACKAGE as the definition says"
    )
    args = parser.parse_args(argv)
    try:
        repo = (args.repo or HERE).resolve()
        repo = Path(
            subprocess.run(
                ["git", "rev-parse", "--show-toplevel"],
                cwd=repo,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        out = (args.out or Path(tempfile.mkdtemp(prefix=f"modelkit-ci-{args.ci}-"))).resolve()
        if out.exists() and any(out.iterdir()):
            raise DefinitionError(f"--out {out} is not empty")
        overrides = {}
        if not args.as_is:
            editable = "" if args.wheel else "-e"  # pip reads "-e/path" as "-e /path"
            overrides = {"PIP_NO_DEPS": "1", "MODELKIT_PACKAGE": f"{editable}{out / 'workspace'}"}
        overrides.update(_pairs(args.env, "--env"))
        replacements = {k: Path(v).resolve() for k, v in _pairs(args.replace, "--replace").items()}
        run = Run(repo, out, overrides, replacements)
        definition = (args.file or DEFINITIONS[args.ci]).resolve()
        print(f"running {definition} ({args.ci}) in {out}")
        runner = run_github if args.ci == "github" else run_gitlab
        return runner(definition, run, args.job)
    except (DefinitionError, yaml.YAMLError, subprocess.CalledProcessError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
