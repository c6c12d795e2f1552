"""Reports of a ``modelkit test`` run: a readable summary, JSON and JUnit XML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from modelkit.validate.runner import CaseResult

# Characters XML 1.0 cannot hold (a random model emits control characters).
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _timings(result: CaseResult) -> str:
    parts = [f"{result.duration:.2f}s"]
    out = result.measured
    if out is not None and out.ttft is not None:
        parts.append(f"first token {out.ttft * 1000:.0f} ms")
    if out is not None and out.tokens_per_second is not None:
        parts.append(f"{out.tokens_per_second:.1f} tok/s")
    return ", ".join(parts)


def _metrics(result: CaseResult) -> dict[str, Any] | None:
    out = result.measured
    if out is None:
        return None
    rate = out.tokens_per_second
    return {
        "done_reason": out.done_reason,
        "eval_count": out.eval_count,
        "ttft_ms": round(out.ttft * 1000, 3) if out.ttft is not None else None,
        "total_ms": round(out.total * 1000, 3) if out.total is not None else None,
        "tokens_per_s": round(rate, 3) if rate is not None else None,
        "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in out.tool_calls],
    }


def case_lines(result: CaseResult) -> str:
    """One case's verdict with its timings, then each failure (assertion and output)."""
    label = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}[result.status]
    lines = [f"{label}  {result.name} ({_timings(result)})"]
    for failure in result.failures:
        lines.append(f"      {failure.assertion}: {failure.message}")
    if result.error:
        lines.append(f"      error: {result.error}")
    return "\n".join(lines)


def tally(results: list[CaseResult], model: str, seconds: float | None = None) -> str:
    """``MODEL: N passed, M failed[, K errors] in Xs`` (``seconds``: the run's wall time;
    by default the cases' times added up)."""
    passed = sum(r.status == "pass" for r in results)
    failed = sum(r.status == "fail" for r in results)
    errors = sum(r.status == "error" for r in results)
    total = seconds if seconds is not None else sum(r.duration for r in results)
    text = f"{passed} passed, {failed} failed"
    if errors:
        text += f", {errors} errors"
    return f"{model}: {text} in {total:.2f}s"


def summary(results: list[CaseResult], model: str, seconds: float | None = None) -> str:
    return "\n".join([*(case_lines(r) for r in results), tally(results, model, seconds)])


def to_json(results: list[CaseResult], model: str) -> dict[str, Any]:
    return {
        "model": model,
        "passed": sum(r.status == "pass" for r in results),
        "failed": sum(r.status != "pass" for r in results),
        "cases": [
            {
                "name": r.name,
                "status": r.status,
                "duration": round(r.duration, 6),
                "failures": [{"assertion": f.assertion, "message": f.message} for f in r.failures],
                "error": r.error or None,
                "output": r.output,
                "metrics": _metrics(r),
            }
            for r in results
        ],
    }


def to_junit(results: list[CaseResult], model: str, suite: str) -> ET.ElementTree:
    root = ET.Element(
        "testsuite",
        {
            "name": suite,
            "tests": str(len(results)),
            "failures": str(sum(r.status == "fail" for r in results)),
            "errors": str(sum(r.status == "error" for r in results)),
            "skipped": "0",
            "time": f"{sum(r.duration for r in results):.3f}",
        },
    )
    ET.SubElement(
        ET.SubElement(root, "properties"), "property", {"name": "model", "value": _xml(model)}
    )
    for r in results:
        case = ET.SubElement(
            root,
            "testcase",
            {"name": _xml(r.name), "classname": _xml(suite), "time": f"{r.duration:.3f}"},
        )
        for failure in r.failures:
            element = ET.SubElement(
                case, "failure", {"message": _xml(f"{failure.assertion}: {failure.message}")}
            )
            element.text = _xml(failure.message)
        if r.error:
            ET.SubElement(case, "error", {"message": _xml(r.error)}).text = _xml(r.error)
        if r.output:
            ET.SubElement(case, "system-out").text = _xml(r.output)
    ET.indent(root)
    return ET.ElementTree(root)


def write_json(path: Path, results: list[CaseResult], model: str) -> None:
    path.write_text(json.dumps(to_json(results, model), indent=2) + "\n", encoding="utf-8")


def write_junit(path: Path, results: list[CaseResult], model: str, suite: str) -> None:
    to_junit(results, model, suite).write(path, encoding="utf-8", xml_declaration=True)
