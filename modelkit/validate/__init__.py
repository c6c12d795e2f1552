"""Checking Modelfiles and models: lint reports (and, later, test specs and their reports)."""

from modelkit.validate.lint import LintReport, lint_file, lint_text

__all__ = ["LintReport", "lint_file", "lint_text"]
