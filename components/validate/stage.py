"""The ``validate`` stage: a Great Expectations gate in front of training.

Tables are validated as read (column types, nulls, ranges, labels), plus
two helper columns per row: ``_finite`` and ``_digest`` (for duplicates).
Images are not validated one column per pixel (slow, and meaningless across
image sizes) but through a per-sample statistics table: shape, channels, mean,
std, min, max, finiteness and a digest per image. A per-class table checks
class balance in each split.

Rules come from ``params.yaml`` (``validate``) and from the reference profile:
the profile of the first data of the set that passed (``reports/profile-<name>.json``). A failed
gate writes a JSON summary and an HTML report, copies the rejected rows or
files to ``quarantine/`` with a reason file, and raises ``DataValidationError``.
Raw input is only ever read.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from components.core.config import IngestConfig, Params, ValidateConfig
from components.core.kinds.gate import GateInput, expected_labels
from components.core.paths import Workspace
from components.core.rawdata import DataError
from components.core.records import write_json
from components.core.splits import DROPPED
from components.validate.profile import load_profile, profile, profile_path
from components.validate.quarantine import (
    quarantine_batch,
    quarantine_rows,
    quarantine_unreadable,
    rejected_rows,
)
from components.validate.report import (
    Check,
    DataValidationError,
    Failure,
    ValidationResult,
    conflict_message,
    write_html,
)
from components.validate.suites import class_expectations, label_expectations
from components.validate.tables import (
    class_table,
    conflict_policy,
    gate_input,
    label_table,
    prepared_gate_input,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- running the gate


def _run_suites(tables: dict, suites: dict) -> tuple[list[Check], list[Failure]]:
    """Every expectation's outcome (``Check``), and the failed ones with examples."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from components.core.logs import quiet_libraries

    quiet_libraries()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("mloop")
    checks, failures = [], []
    for name, expectations in suites.items():
        suite = gx.ExpectationSuite(name=name)
        for exp in expectations:
            suite.add_expectation(exp)
        batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        outcome = batch_def.get_batch(batch_parameters={"dataframe": tables[name]}).validate(suite)
        for r in outcome.results:
            res, config = r.result or {}, r.expectation_config
            checks.append(Check(
                table=name, expectation=config.type, column=config.kwargs.get("column"),
                success=bool(r.success), rule=_rule(config.kwargs), observed=_observed(res),
            ))  # fmt: skip
            if r.success:
                continue
            failures.append(
                Failure(
                    table=name,
                    expectation=config.type,
                    column=config.kwargs.get("column"),
                    unexpected_count=res.get("unexpected_count"),
                    observed=_plain(res.get("observed_value")),
                    examples=[_plain(v) for v in res.get("partial_unexpected_list") or []][:10],
                )
            )
    return checks, failures


def _rule(kwargs: dict) -> str:
    """What an expectation asks, in short: its arguments but the column and the batch."""
    shown = []
    for key, value in kwargs.items():
        if key in ("column", "batch_id") or value is None:
            continue
        text = repr(_plain(value))
        shown.append(f"{key}={text if len(text) <= 60 else text[:50] + '...'}")
    return ", ".join(shown)


def _observed(res: dict) -> str:
    """What the data showed: the observed value, or the count of unexpected values."""
    if res.get("observed_value") is not None:
        text = repr(_plain(res["observed_value"]))
        return text if len(text) <= 80 else text[:70] + "..."
    if res.get("element_count") is not None:
        bad, total = res.get("unexpected_count") or 0, res["element_count"]
        missing = res.get("missing_count") or 0
        gaps = f"; {missing:,} missing" if missing else ""
        return f"{bad:,} of {total:,} unexpected ({100 * bad / max(total, 1):.2f}%){gaps}"
    return ""


def _plain(value):
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def _judge(gate: GateInput, cfg: ValidateConfig, reference: dict | None):
    """Every check's outcome on ``gate``: (checks, failures, warnings)."""
    t = gate.table
    samples = gate.of.expectations(gate, cfg, reference)  # the kind's own suite
    regression = gate.regression(reference)  # a number to predict: no classes to check
    labels = None if regression else expected_labels(cfg, reference)
    if labels:  # every kind's: the labels the params or the reference allow
        import great_expectations as gx

        samples.append(gx.expectations.ExpectColumnValuesToBeInSet(column=gate.of.gate_label,
                                                                  value_set=labels))  # fmt: skip
    suites = {"samples": samples}
    label, split = gate.of.gate_label, gate.of.gate_split
    warnings = [*gate.of.gate_warnings(gate, cfg, reference), *gate.leakage]
    if reference is None and not regression:
        labels = (
            f"labels are checked against validate.allowed_labels {list(cfg.allowed_labels)}"
            if cfg.allowed_labels
            else "any label passes: set validate.allowed_labels to check them"
        )
        warnings.append(
            f"no reference profile exists yet (this data becomes it if it passes): {labels};"
            " ranges and shapes come from params alone"
        )
    tables = {"samples": t}
    if len(t) and regression:  # a number to predict: each label one, as the label ever was
        tables["labels"] = label_table(t, label)
        suites["labels"] = label_expectations(cfg, reference, gate.label_column)
    elif len(t):
        kept = t[t[split] != DROPPED]  # rows a `drop` rule left out are in no split
        tables["classes"] = class_table(kept, label, split, expected_labels(cfg, reference) or [])
        suites["classes"] = class_expectations(cfg)
    checks, failures = _run_suites(tables, suites)
    for file, reason in gate.rejected:
        checks.append(Check("files", "readable_image", file, False, "", reason))
        failures.append(Failure("files", "readable_image", file, 1, reason))
    if gate.known is not None:  # a batch: rows already in the data would only repeat them
        known = int(gate.known.reindex(t.index, fill_value=False).sum())
        said = (f"{known:,} of {len(t):,} rows are already in the data (the prepared splits),"
                " past validate.max_duplicate_share once joined: a batch brings new rows;"
                " under ingest.row_policy: reject_rows they are left out when they are at most"
                " ingest.max_rejected_share of it")  # fmt: skip
        checks.append(Check("samples", "rows_not_in_the_data", None, not known, "0", str(known)))
        if known:
            failures.append(Failure("samples", "rows_not_in_the_data", None, known, known,
                                    hint=said))  # fmt: skip
    return checks, [_in_human_terms(f, gate) for f in failures], warnings


def _in_human_terms(failure: Failure, gate: GateInput) -> Failure:
    """A failure named by the rows behind it where its check's own words do not say."""
    if failure.column != "_conflict":
        return failure
    t = gate.table
    clash = t[t["_conflict"]]
    texts = clash.groupby("_digest", sort=False)
    first = next(iter(texts))[1]
    shown = first["_text"].iloc[0]
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    labels = sorted(first["_label"].dropna().astype(str).unique())
    hint = conflict_message(texts.ngroups, len(clash), repr(shown), labels, text=True)
    return dataclasses.replace(failure, hint=hint)


def run_gate(
    gate: GateInput,
    cfg: ValidateConfig,
    reference: dict | None,
    reports: Path,
    quarantine: Path,
    rows: IngestConfig | None = None,
) -> ValidationResult:
    """Validate ``gate``; write the JSON and HTML reports; quarantine what was rejected.

    ``rows`` (a batch's ``ingest`` settings): under ``row_policy: reject_rows`` a table or
    text batch with at most ``max_rejected_share`` faulty rows is judged without them,
    and passes with them held in quarantine; its distribution checks still decide.
    """
    start = time.perf_counter()
    faulty = None
    if rows is not None and rows.row_policy == "reject_rows" and reference is not None \
            and gate.of.row_table and len(gate.table):  # fmt: skip
        faulty, reasons = rejected_rows(gate, cfg, reference, faults_only=True)
        if not faulty.any() or faulty.mean() > rows.max_rejected_share:
            faulty = None
    judged = gate if faulty is None else dataclasses.replace(gate, table=gate.table[~faulty])
    checks, failures, warnings = _judge(judged, cfg, reference)
    for w in warnings:
        log.warning(f"  warning: {w}")

    held, left_out = None, ()
    if failures:
        held = quarantine_batch(gate, failures, cfg, reference, quarantine)
    elif faulty is not None:
        held, left_out = quarantine_rows(gate, faulty, reasons, quarantine), tuple(
            int(i) for i in np.flatnonzero(faulty))  # fmt: skip
        log.warning(
            f"  {len(left_out)} of {len(gate.table)} rows rejected (ingest.row_policy:"
            f" reject_rows), the rest accepted; the rows and reasons: {held}"
        )
    result = ValidationResult(
        passed=not failures,
        expectations=len(checks),
        failures=failures,
        warnings=warnings,
        rows=len(gate.table),
        seconds=time.perf_counter() - start,
        report=reports / "validation.json",
        html_report=reports / "validation.html",
        quarantine=held,
        checks=checks,
        rejected_rows=left_out,
    )
    write_json(result.report, result)
    write_html(result, gate, reference)
    return result


def validate_stage(params: Params, ws: Workspace) -> ValidationResult:
    """Gate the prepared splits; raises ``DataValidationError`` when any check fails."""
    gate = prepared_gate_input(ws)
    reference = load_profile(profile_path(ws, params), gate)
    result = run_gate(gate, params.gate, reference, ws.reports, ws.quarantine)
    if not result.passed:
        from components.core import tracking

        result = dataclasses.replace(result, way_out=_way_out(ws))

        tracking.record_failed_run(
            ws,
            params.data.name,
            "validate",
            [result.report, result.html_report],
            {"mloop.stage": "validate", "mloop.failed_expectations": str(len(result.failures))},
        )
        raise DataValidationError(result)
    if reference is None:  # the first data to pass becomes the reference
        write_json(profile_path(ws, params), profile(gate))
    return result


def _way_out(ws: Workspace) -> str | None:
    """The batches the failed data holds (newest first) and how to set one aside."""
    from components.core.splits import load_meta

    batches = load_meta(ws.prepared).get("batches") or []
    if not batches:
        return None
    read = ", ".join(f"{b['id']} ({b['source']}, {b['rows']:,} rows, {b['arrived']})"
                     for b in reversed(batches))  # fmt: skip
    newest = batches[-1]["id"]
    return (f"this data joined the reference data and batches {read}: where a batch brought"
            f" what fails, set it aside with `mloop data batches --exclude {newest}` (its"
            " files stay; --include takes it back) and run again")  # fmt: skip


def validate_path(
    path: Path, params: Params, ws: Workspace, label: str | None = None, text: str | None = None
):
    """Gate any file or folder (``mloop validate --data``) against the data set's profile;
    with ``text`` (its text column), a file of texts."""
    from components.core.kinds.sources import read_path
    from components.core.kinds.texts import read_text_table

    try:
        if text:
            raw = read_text_table(Path(path), text, label or "label")
        else:
            raw = read_path(Path(path), params.data, label)
    except DataError as err:
        err.quarantine = quarantine_unreadable(err, ws.quarantine)
        raise
    # the workspace's declared policies, as ingest and the run apply them
    gate = gate_input(raw, Path(path).stem or "data", conflicts=conflict_policy(params))
    reference = load_profile(profile_path(ws, params), gate)
    return run_gate(gate, params.gate, reference, ws.reports, ws.quarantine)
