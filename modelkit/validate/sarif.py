"""SARIF 2.1.0 output of a lint report, for GitHub code scanning (``lint --format sarif``)."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any, Final

import modelkit
from modelkit.validate.lint import LintReport, hint_of, rule_id
from modelkit.validate.rules import RULES

__all__ = ["SARIF_SCHEMA", "SARIF_VERSION", "artifact_uri", "to_sarif"]

SARIF_VERSION: Final = "2.1.0"
SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"

_LEVELS: Final[dict[str, str]] = {"error": "error", "warning": "warning", "info": "note"}


def artifact_uri(path: str) -> str:
    """A relative path as a forward-slash URI reference; an absolute one as a file URI."""
    pure = Path(path)
    if pure.is_absolute():
        return pure.as_uri()
    return PurePath(path).as_posix()


def _rule_json(rule_id_: str) -> dict[str, Any]:
    rule = RULES[rule_id_]
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.short},
        "fullDescription": {"text": rule.help},
        "help": {"text": rule.help},
        "defaultConfiguration": {"level": _LEVELS[rule.severity]},
    }


def to_sarif(report: LintReport, path: str) -> dict[str, Any]:
    """One run: the driver ``modelkit`` with every rule, and one result per diagnostic."""
    ids = list(RULES)
    results = []
    for diag in report.diagnostics:
        rid = rule_id(diag)
        hint = hint_of(diag)
        text = f"{diag.message} ({hint})" if hint else diag.message
        results.append(
            {
                "ruleId": rid,
                "ruleIndex": ids.index(rid),
                "level": _LEVELS.get(diag.severity, "note"),
                "message": {"text": text},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": artifact_uri(path)},
                            "region": {
                                "startLine": max(diag.line, 1),
                                "startColumn": max(diag.col, 1),
                            },
                        }
                    }
                ],
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "modelkit",
                        "version": modelkit.__version__,
                        "informationUri": "https://github.com/ollama/ollama/blob/main/docs/modelfile.md",
                        "rules": [_rule_json(r) for r in ids],
                    }
                },
                "results": results,
            }
        ],
    }
