"""The gate's verdict: failures, the result record and the HTML page a person opens."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from components.core.kinds.gate import GateInput


def appear(n: int, what: str) -> str:
    """How many rows a fault names, in words: "1 text appears", "25 texts appear"."""
    plural = what.replace("set of", "sets of") if what.startswith("set of") else f"{what}s"
    return f"1 {what} appears" if n == 1 else f"{n} {plural} appear"


def conflict_message(groups: int, rows: int, shown: str, labels: list[str], text: bool) -> str:
    """The same features under two labels, said with one example and the setting to declare."""
    what, setting = ("text", "data.text") if text else ("set of features", "data.tabular")
    return (
        f"{appear(groups, what)} under two or more labels ({rows} rows), e.g. {shown} as"
        f" {' and '.join(labels)}; declare {setting}.conflicts: drop or majority"
    )


@dataclass(frozen=True)
class Failure:
    table: str
    expectation: str
    column: str | None
    unexpected_count: int | None
    observed: object
    examples: list = field(default_factory=list)
    hint: str | None = None  # the failure in the data's own terms, where GX's are not

    def describe(self) -> str:
        if self.hint:
            return self.hint
        where = f"{self.table}.{self.column}" if self.column else self.table
        details = []
        if self.unexpected_count is not None:
            details.append(f"{self.unexpected_count} unexpected")
        if self.observed is not None:
            details.append(f"observed {self.observed}")
        if self.expectation == "expect_column_values_to_not_be_null" and self.table == "labels":
            details.append("labels that are no finite number (a regression's label is one)")
        elif self.expectation == "expect_column_values_to_not_be_null" and self.column != "_label":
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
class Check:
    """One expectation's outcome, passed or failed, as the report shows it."""

    table: str
    expectation: str
    column: str | None
    success: bool
    rule: str  # what it asks (its arguments)
    observed: str  # what the data showed


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
    checks: list[Check] = field(default_factory=list)  # every expectation, passed ones too
    # ingest.row_policy reject_rows: the rows (from 0) the batch passed without, held in
    # ``quarantine`` with their reasons
    rejected_rows: tuple[int, ...] = ()
    # A run's gate that failed on data with batches: the batches it read and the command
    # that sets one aside (never a file to delete by hand)
    way_out: str | None = None

    def in_brief(self, limit: int = 5) -> str:
        """The first ``limit`` failures in one line, and how many more there are."""
        said = "; ".join(f.describe() for f in self.failures[:limit])
        more = len(self.failures) - limit
        return said + (f"; and {more} more" if more > 0 else "")

    def summary(self) -> str:
        if self.passed and self.rejected_rows:
            return (
                f"all {self.expectations} expectations passed on {self.rows} rows, less"
                f" {len(self.rejected_rows)} faulty rows held in {self.quarantine}"
            )
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
        if result.way_out:
            lines.append(f"  {result.way_out}")
        super().__init__("\n".join(lines))


def write_html(result: ValidationResult, gate: GateInput, reference: dict | None = None) -> Path:
    """A self-contained page a person can open: the verdict, every expectation with what the
    data showed, the failed ones' examples, and each column's distribution beside the
    reference profile's. Everything from the data is escaped; the charts are images."""
    from components.validate.profile import distributions

    verdict = "PASSED" if result.passed else "FAILED"
    color = "#1a7f37" if result.passed else "#cf222e"

    def cell(value) -> str:
        return f"<td>{html.escape(str(value))}</td>"

    failed = "".join(
        "<tr>" + "".join(cell(v) for v in (
            f.table, f.expectation, f.column or "", f.unexpected_count
            if f.unexpected_count is not None else "", f.observed if f.observed is not None else "",
            ", ".join(map(str, f.examples[:5])),
        )) + "</tr>"
        for f in result.failures
    )  # fmt: skip
    every = "".join(
        f'<tr class="{"ok" if c.success else "bad"}">'
        + "".join(cell(v) for v in ("passed" if c.success else "FAILED", c.table,
                                    c.expectation, c.column or "", c.rule, c.observed))
        + "</tr>"
        for c in result.checks
    )  # fmt: skip
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings)
    held = result.quarantine
    current = distributions(gate, reference) if len(gate.table) else {}
    chart = _distribution_chart(current, (reference or {}).get("distributions", {}))
    against = "the reference profile (grey) and this data (blue)" if reference else (
        "this data (it becomes the reference profile if it passes)")  # fmt: skip
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mloop validation</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px 8px}}
table{{border-collapse:collapse}}tr.bad td{{background:#ffebe9}}
tr.ok td:first-child{{color:#1a7f37}}</style></head><body>
<h1>Data validation: <span style="color:{color}">{verdict}</span></h1>
<p>{html.escape(str(gate.origin or gate.name))}: {result.rows} rows ({gate.kind}),
{result.expectations} expectations, {len(result.failures)} failed, {result.seconds:.1f} s.</p>
{f"<p>Rejected rows and files: {html.escape(str(held))}</p>" if held else ""}
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
<h2>Failed expectations</h2>
<table><tr><th>table</th><th>expectation</th><th>column</th><th>unexpected</th>
<th>observed</th><th>examples</th></tr>{failed or '<tr><td colspan="6">none</td></tr>'}</table>
<h2>Every expectation</h2>
<table><tr><th>verdict</th><th>table</th><th>expectation</th><th>column</th><th>rule</th>
<th>observed</th></tr>{every}</table>
<h2>Distributions</h2><p>Share of rows per bin or category: {against}.
{gate.of.report_note}</p>
{f'<img alt="distributions" src="data:image/png;base64,{chart}">' if chart else "<p>none</p>"}
</body></html>"""
    result.html_report.parent.mkdir(parents=True, exist_ok=True)
    result.html_report.write_text(page)
    return result.html_report


def _distribution_chart(current: dict, reference: dict) -> str:
    """Small multiples, one per column: reference and current shares side by side (PNG,
    base64). Column names and categories are drawn as text in the image, never as HTML."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not current:
        return ""
    cols = 3
    rows = -(-len(current) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, now) in zip(axes.flat, current.items(), strict=False):
        ref = reference.get(name)
        if now["kind"] == "numeric":
            edges = np.asarray(now["edges"])
            width = np.diff(edges)
            if ref is not None and ref.get("edges") == now["edges"]:
                ax.bar(edges[:-1], ref["shares"], width=width, align="edge", color="0.6",
                       alpha=0.7, label="reference")  # fmt: skip
            ax.bar(edges[:-1], now["shares"], width=width, align="edge", color="tab:blue",
                   alpha=0.5, label="this data")  # fmt: skip
        else:
            labels = [_drawn(v, 14) for v in now["values"]]
            x = np.arange(len(labels))
            if ref is not None and ref.get("values") == now["values"]:
                ax.bar(x - 0.2, ref["shares"], width=0.4, color="0.6", label="reference")
            ax.bar(x + 0.2, now["shares"], width=0.4, color="tab:blue", label="this data")
            ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=6)
        ax.set_title(_drawn(name, 40), fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(current) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(out.getvalue()).decode()


def _drawn(text: str, limit: int) -> str:
    """Data text as matplotlib draws it literally: cut, and ``$`` kept from starting maths."""
    text = str(text) if len(str(text)) <= limit else str(text)[: limit - 3] + "..."
    return text.replace("$", r"\$")
