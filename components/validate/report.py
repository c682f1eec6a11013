"""The gate's verdict: failures, the result record and the HTML page a person opens."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from components.validate.tables import GateInput


@dataclass(frozen=True)
class Failure:
    table: str
    expectation: str
    column: str | None
    unexpected_count: int | None
    observed: object
    examples: list = field(default_factory=list)

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        details = []
        if self.unexpected_count is not None:
            details.append(f"{self.unexpected_count} unexpected")
        if self.observed is not None:
            details.append(f"observed {self.observed}")
        if self.expectation == "expect_column_values_to_not_be_null" and self.column != "_label":
            details.append(
                "missing values; a rule in data.tabular.missing may drop or impute them"
                " (max_share: the share it accepts)"
            )
        elif self.expectation == "expect_column_values_to_be_in_type_list":
            details.append(
                f"e.g. {self.examples[:5]}; text in a numeric column: data.tabular.na_values"
                " (cells that mean missing) or thousands may parse it, or list it as categorical"
            )
        elif self.examples:
            details.append(f"e.g. {self.examples[:5]}")
        return f"{self.expectation} on {where}" + (f": {', '.join(details)}" if details else "")


@dataclass(frozen=True)
class ValidationResult:
    passed: bool
    expectations: int
    failures: list[Failure]
    warnings: list[str]
    rows: int
    seconds: float
    report: Path
    html_report: Path
    quarantine: Path | None = None

    def summary(self) -> str:
        if self.passed:
            return f"all {self.expectations} expectations passed on {self.rows} rows"
        return f"{len(self.failures)} of {self.expectations} expectations failed"


class DataValidationError(RuntimeError):
    """The data failed the gate; training must not start."""

    def __init__(self, result: ValidationResult) -> None:
        self.result = result
        failed = f"{len(result.failures)} of {result.expectations} expectations failed"
        lines = [f"data validation failed: {failed}"]
        lines += [f"  - {f.describe()}" for f in result.failures]
        lines.append(f"  report: {result.html_report}")
        if result.quarantine:
            lines.append(f"  rejected rows/files copied to: {result.quarantine}")
        super().__init__("\n".join(lines))


def write_html(result: ValidationResult, gate: GateInput) -> Path:
    """A self-contained page a person can open: verdict, failed checks, examples."""
    verdict = "PASSED" if result.passed else "FAILED"
    color = "#1a7f37" if result.passed else "#cf222e"
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            f.table, f.expectation, f.column or "", f.unexpected_count
            if f.unexpected_count is not None else "", f.observed if f.observed is not None else "",
            ", ".join(map(str, f.examples[:5])),
        )) + "</tr>"
        for f in result.failures
    )  # fmt: skip
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings)
    held = result.quarantine
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mloop validation</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px 8px}}
table{{border-collapse:collapse}}</style></head><body>
<h1>Data validation: <span style="color:{color}">{verdict}</span></h1>
<p>{html.escape(str(gate.origin or gate.name))}: {result.rows} rows ({gate.kind}),
{result.expectations} expectations, {len(result.failures)} failed, {result.seconds:.1f} s.</p>
{f"<p>Rejected rows and files: {html.escape(str(held))}</p>" if held else ""}
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
<h2>Failed expectations</h2>
<table><tr><th>table</th><th>expectation</th><th>column</th><th>unexpected</th>
<th>observed</th><th>examples</th></tr>{rows or '<tr><td colspan="6">none</td></tr>'}</table>
</body></html>"""
    result.html_report.parent.mkdir(parents=True, exist_ok=True)
    result.html_report.write_text(page)
    return result.html_report
