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

import hashlib
import html
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.config import Params, ValidateConfig
from components.data import SPLITS, load_meta, load_rows, load_split
from components.paths import Workspace
from components.records import write_json
from components.sources import IMAGE_SUFFIXES, DataError, RawData

IMAGE_COLUMNS = [
    "split", "label", "height", "width", "channels",
    "mean", "std", "min", "max", "finite", "digest",
]  # fmt: skip
NUMERIC_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64"]  # fmt: skip
RANGE_MARGIN = 0.1  # profile ranges are widened by this share of their span on each side


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
        if self.examples:
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


@dataclass
class GateInput:
    """What the gate checks: one table, plus what is known about it."""

    kind: str  # "image" or "tabular"
    table: object  # pandas.DataFrame
    label_column: str | None = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    pixel_max: float = 255.0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # files refused at read
    files: list[str] = field(default_factory=list)
    origin: Path | None = None
    name: str = "data"


# ---------------------------------------------------------------- the tables


def _digests(rows: np.ndarray) -> list[str]:
    return [hashlib.blake2b(r.tobytes(), digest_size=8).hexdigest() for r in rows]


def image_table(images: np.ndarray, labels, splits=None):
    """One row per image: the statistics the suite checks."""
    import pandas as pd

    rows = images.reshape(len(images), int(np.prod(images.shape[1:])))  # 0 images too
    flat = rows.astype(np.float64)
    channels = images.shape[1] if images.ndim == 4 else 1
    with np.errstate(invalid="ignore"):
        return pd.DataFrame(
            {
                "split": splits if splits is not None else "all",
                "label": np.asarray(labels).astype(str),
                "height": images.shape[-2],
                "width": images.shape[-1],
                "channels": channels,
                "mean": flat.mean(axis=1),
                "std": flat.std(axis=1),
                "min": flat.min(axis=1),
                "max": flat.max(axis=1),
                "finite": np.isfinite(flat).all(axis=1),
                "digest": _digests(np.ascontiguousarray(rows)),
            }
        )[IMAGE_COLUMNS]


def _looks_numeric(column) -> bool:
    """An object column whose values are nearly all numbers: a numeric column with faults."""
    import pandas as pd

    values = column.dropna()
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().mean() >= 0.9


def row_table(frame, label: str, numeric: list[str], splits=None):
    """A table's rows plus ``_split``, ``_label`` (as text), ``_finite`` and ``_digest``."""
    import pandas as pd

    table = frame.copy()
    table["_split"] = splits if splits is not None else "all"
    table["_label"] = frame[label].astype(str).where(frame[label].notna(), None)
    present = [c for c in numeric if c in frame.columns]
    values = np.column_stack(
        [pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in present]
    ) if present else np.zeros((len(frame), 0))  # fmt: skip
    table["_finite"] = ~np.isinf(values).any(axis=1)
    encoded = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    table["_digest"] = encoded.astype(str)
    return table


def class_table(table, label_column: str, split_column: str, classes: list[str]):
    """Count and share of each class in each split; a class absent from a split counts 0."""
    import pandas as pd

    labels = sorted(set(classes) | set(table[label_column].dropna().unique().tolist()))
    grid = pd.MultiIndex.from_product([sorted(table[split_column].unique()), labels])
    counts = table.groupby([split_column, label_column]).size().reindex(grid, fill_value=0)
    counts = counts.rename("count").rename_axis(["split", "label"]).reset_index()
    counts["share"] = counts["count"] / counts.groupby("split")["count"].transform("sum")
    return counts


# ---------------------------------------------------------------- reference profile


def profile(gate: GateInput) -> dict:
    """What the next batch is held to: columns and types, ranges, categories, labels."""
    t = gate.table
    label = "label" if gate.kind == "image" else "_label"
    prof = {"kind": gate.kind, "name": gate.name, "labels": sorted(t[label].dropna().unique())}
    if gate.kind == "image":
        prof["image"] = {
            "height": int(t["height"].iloc[0]),
            "width": int(t["width"].iloc[0]),
            "channels": int(t["channels"].iloc[0]),
        }
        return prof
    prof["columns"] = [c for c in t.columns if not c.startswith("_")]
    prof["label_column"] = gate.label_column
    finite = {c: t[c][np.isfinite(t[c])] for c in gate.numeric}
    prof["numeric"] = {c: [float(v.min()), float(v.max())] for c, v in finite.items()}
    prof["categorical"] = gate.categorical
    return prof


def load_profile(path: Path, gate: GateInput) -> dict | None:
    if not path.is_file():
        return None
    prof = json.loads(path.read_text())
    same = prof.get("kind") == gate.kind and (
        gate.kind == "image" or prof.get("label_column") == gate.label_column
    )
    return prof if same else None


# ---------------------------------------------------------------- the suites


def _widen(low: float, high: float) -> tuple[float, float]:
    margin = RANGE_MARGIN * max(high - low, abs(high), 1e-9)
    return low - margin, high + margin


def _numeric_columns(gate: GateInput, reference: dict | None) -> set[str]:
    """Columns held to numbers: the reference's (or the read's), plus near-numeric text ones."""
    t = gate.table
    numeric = set(reference["numeric"]) if reference else set(gate.numeric)
    return numeric | {c for c in gate.categorical if c in t.columns and _looks_numeric(t[c])}


def _bounds(col: str, cfg: ValidateConfig, reference: dict | None) -> tuple[float, float] | None:
    """A numeric column's allowed range: explicit in params, else the widened profile range."""
    if col in cfg.ranges:
        return cfg.ranges[col]
    if reference and col in reference["numeric"]:
        return _widen(*reference["numeric"][col])
    return None


def _pixel_max(gate: GateInput, cfg: ValidateConfig) -> float:
    return cfg.pixel_max if cfg.pixel_max is not None else gate.pixel_max


def _expected_labels(cfg: ValidateConfig, reference: dict | None) -> list[str] | None:
    if cfg.allowed_labels:
        return [str(v) for v in cfg.allowed_labels]
    return [str(v) for v in reference["labels"]] if reference else None


def image_expectations(gate: GateInput, cfg: ValidateConfig, reference: dict | None):
    import great_expectations as gx

    E = gx.expectations
    exps = [
        E.ExpectTableColumnsToMatchSet(column_set=IMAGE_COLUMNS, exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
        E.ExpectColumnUniqueValueCountToBeBetween(column="label", min_value=2),
        E.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
        E.ExpectColumnValuesToBeBetween(column="min", min_value=cfg.pixel_min),
        E.ExpectColumnValuesToBeBetween(column="max", max_value=_pixel_max(gate, cfg)),
        E.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="digest", min_value=1.0 - cfg.max_duplicate_share
        ),
        *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("mean", "std", "min", "max")),
    ]
    if reference:
        shape = reference["image"]
        exps += [
            E.ExpectColumnValuesToBeInSet(column=c, value_set=[shape[c]])
            for c in ("height", "width", "channels")
        ]
    labels = _expected_labels(cfg, reference)
    if labels:
        exps.append(E.ExpectColumnValuesToBeInSet(column="label", value_set=labels))
    return exps


def table_expectations(gate: GateInput, cfg: ValidateConfig, reference: dict | None):
    import great_expectations as gx

    E = gx.expectations
    t = gate.table
    features = [c for c in t.columns if not c.startswith("_") and c != gate.label_column]
    expected = reference["columns"] if reference else [*features, gate.label_column]
    numeric = _numeric_columns(gate, reference)
    exps = [
        E.ExpectTableRowCountToBeBetween(min_value=cfg.min_rows),
        E.ExpectColumnValuesToNotBeNull(column="_label"),
        E.ExpectColumnUniqueValueCountToBeBetween(column="_label", min_value=2),
        E.ExpectColumnValuesToBeInSet(column="_finite", value_set=[True]),
        E.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="_digest", min_value=1.0 - cfg.max_duplicate_share
        ),
    ]
    helpers = ["_split", "_label", "_finite", "_digest"]
    exact = cfg.extra_columns == "fail"
    exps.append(E.ExpectTableColumnsToMatchSet(column_set=expected + helpers, exact_match=exact))
    for col in (c for c in expected if c in t.columns and c != gate.label_column):
        exps.append(E.ExpectColumnValuesToNotBeNull(column=col))
        if col not in numeric:
            continue
        exps.append(E.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
        bounds = _bounds(col, cfg, reference)
        if bounds:
            low, high = bounds
            exps.append(E.ExpectColumnValuesToBeBetween(column=col, min_value=low, max_value=high))
    labels = _expected_labels(cfg, reference)
    if labels:
        exps.append(E.ExpectColumnValuesToBeInSet(column="_label", value_set=labels))
    return exps


def class_expectations(cfg: ValidateConfig):
    import great_expectations as gx

    share = gx.expectations.ExpectColumnValuesToBeBetween
    return [share(column="share", min_value=cfg.min_class_share)]


# ---------------------------------------------------------------- running the gate


def _run_suites(tables: dict, suites: dict) -> tuple[int, list[Failure]]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from components.logs import quiet_libraries

    quiet_libraries()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("mloop")
    total, failures = 0, []
    for name, expectations in suites.items():
        suite = gx.ExpectationSuite(name=name)
        for exp in expectations:
            suite.add_expectation(exp)
        batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        outcome = batch_def.get_batch(batch_parameters={"dataframe": tables[name]}).validate(suite)
        total += len(outcome.results)
        for r in outcome.results:
            if r.success:
                continue
            res = r.result or {}
            failures.append(
                Failure(
                    table=name,
                    expectation=r.expectation_config.type,
                    column=r.expectation_config.kwargs.get("column"),
                    unexpected_count=res.get("unexpected_count"),
                    observed=_plain(res.get("observed_value")),
                    examples=[_plain(v) for v in res.get("partial_unexpected_list") or []][:10],
                )
            )
    return total, failures


def _plain(value):
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def run_gate(
    gate: GateInput, cfg: ValidateConfig, reference: dict | None, reports: Path, quarantine: Path
) -> ValidationResult:
    """Validate ``gate``; write the JSON and HTML reports; quarantine what was rejected."""
    start = time.perf_counter()
    t = gate.table
    warnings = []
    if gate.kind == "image":
        suites = {"samples": image_expectations(gate, cfg, reference)}
        label, split = "label", "split"
    else:
        suites = {"samples": table_expectations(gate, cfg, reference)}
        label, split = "_label", "_split"
        if reference and cfg.extra_columns == "warn":
            known = {*reference["columns"], label, split, "_finite", "_digest"}
            extra = sorted(set(t.columns) - known)
            warnings += [
                f"unexpected extra column {c!r} (validate.extra_columns: warn)" for c in extra
            ]
    if reference is None:
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
    if len(t):
        tables["classes"] = class_table(t, label, split, _expected_labels(cfg, reference) or [])
        suites["classes"] = class_expectations(cfg)
    total, failures = _run_suites(tables, suites)
    for file, reason in gate.rejected:
        total += 1
        failures.append(Failure("files", "readable_image", file, 1, reason))
    for w in warnings:
        print(f"  warning: {w}")

    held = None
    if failures:
        held = quarantine_batch(gate, failures, cfg, reference, quarantine)
    result = ValidationResult(
        passed=not failures,
        expectations=total,
        failures=failures,
        warnings=warnings,
        rows=len(t),
        seconds=time.perf_counter() - start,
        report=reports / "validation.json",
        html_report=reports / "validation.html",
        quarantine=held,
    )
    write_json(result.report, result)
    write_html(result, gate)
    return result


# ---------------------------------------------------------------- quarantine and reports


def rejected_rows(gate: GateInput, cfg: ValidateConfig, reference: dict | None):
    """Rows that break a row-level rule, with the reasons, as a DataFrame."""
    import pandas as pd

    t = gate.table
    reasons = pd.Series([""] * len(t), index=t.index, dtype=object)

    def flag(mask, why):
        mask = np.asarray(mask, dtype=bool)
        reasons[mask] = reasons[mask] + why + "; "

    if gate.kind == "image":
        out_of_range = (t["min"] < cfg.pixel_min) | (t["max"] > _pixel_max(gate, cfg))
        flag(~t["finite"], "NaN or infinite pixel")
        flag(out_of_range, "pixel value out of range")
        flag(t["digest"].duplicated(), "duplicate image")
        label = "label"
    else:
        flag(~t["_finite"], "infinite value")
        flag(t["_digest"].duplicated(), "duplicate row")
        numeric = _numeric_columns(gate, reference)
        for col in [c for c in t.columns if not c.startswith("_")]:
            flag(t[col].isna(), f"{col} missing")
            if col in numeric:
                parsed = pd.to_numeric(t[col], errors="coerce")
                flag(t[col].notna() & parsed.isna(), f"{col} not numeric")
                bounds = _bounds(col, cfg, reference)
                if bounds:
                    flag((parsed < bounds[0]) | (parsed > bounds[1]), f"{col} out of range")
        label = "_label"
    labels = _expected_labels(cfg, reference)
    if labels:
        flag(~t[label].isin(labels), "label not allowed")
    mask = reasons != ""
    return mask.to_numpy(), reasons[mask].str.rstrip("; ")


def quarantine_batch(gate, failures, cfg, reference, root: Path) -> Path:
    """Copy what the gate rejected, with a reason file, into a new quarantine folder."""
    folder = _new_folder(root, gate.name)
    lines = [f"source: {gate.origin or gate.name}", "failed expectations:"]
    lines += [f"  - {f.describe()}" for f in failures]
    mask, reasons = rejected_rows(gate, cfg, reference) if len(gate.table) else ([], [])
    whole_file = not any(mask) and gate.origin is not None and gate.origin.is_file()
    if gate.kind == "tabular" and any(mask):
        rows = gate.table[mask].drop(columns=["_split", "_finite", "_digest"], errors="ignore")
        rows = rows.drop(columns=["_label"]).assign(_reason=reasons.to_numpy())
        rows.to_csv(folder / "rejected_rows.csv", index=False)
        lines.append(f"rejected rows: {int(np.sum(mask))} (rejected_rows.csv, reason per row)")
    elif gate.kind == "image" and gate.files and any(mask):
        for file, why in zip(np.asarray(gate.files)[mask], reasons, strict=True):
            _copy_into(gate.origin / file, folder / "files" / file)
            lines.append(f"  {file}: {why}")
    if gate.rejected:
        for file, why in gate.rejected:
            _copy_into(gate.origin / file, folder / "files" / file)
            lines.append(f"  {file}: {why}")
    if whole_file:  # a table-level fault (too few rows, one class): hold the whole file
        _copy_into(gate.origin, folder / gate.origin.name)
    (folder / "reason.txt").write_text("\n".join(lines) + "\n")
    return folder


def quarantine_unreadable(err: DataError, root: Path) -> Path | None:
    """Hold what could not be read at all, with the reason.

    Copied: a regular file given to validate, or a folder's loose image files (the
    images it holds, not in class folders). Nothing else of a folder was asked for:
    no other file, no link, no device is ever copied.
    """
    path = err.path
    if path is None or not path.exists():
        return None
    folder = _new_folder(root, path.stem or "data")
    if path.is_dir():
        for file in path.iterdir():
            if file.suffix.lower() in IMAGE_SUFFIXES:
                _copy_into(file, folder / "files" / file.name)
    else:
        _copy_into(path, folder / path.name)
    (folder / "reason.txt").write_text(f"source: {path}\nrejected: {err}\n")
    return folder


def _new_folder(root: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    folder, n = root / f"{stamp}-{name}", 1
    while folder.exists():
        folder, n = root / f"{stamp}-{name}-{n}", n + 1
    folder.mkdir(parents=True)
    return folder


def _copy_into(src: Path, dst: Path) -> None:
    if not src.is_file() or src.is_symlink():  # only regular files, never what a link names
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)  # a copy: the raw file stays as it was


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


# ---------------------------------------------------------------- entry points


def gate_input(raw: RawData, name: str, splits=None) -> GateInput:
    if raw.kind == "image":
        table = image_table(raw.images, raw.labels, splits)
    else:
        table = row_table(raw.frame, raw.label_column, raw.numeric, splits)
    return GateInput(
        kind=raw.kind, table=table, label_column=raw.label_column, numeric=raw.numeric,
        categorical=raw.categorical, pixel_max=raw.pixel_max, rejected=raw.rejected,
        files=raw.files, origin=raw.origin, name=name,
    )  # fmt: skip


def prepared_gate_input(ws: Workspace) -> GateInput:
    """The prepared splits, as the gate sees them."""
    import pandas as pd

    meta = load_meta(ws.prepared)
    classes = meta["classes"]
    if meta["kind"] == "image":
        parts = [load_split(ws.prepared, s) for s in SPLITS]
        raw = RawData(
            kind="image",
            labels=np.asarray([classes[i] for p in parts for i in p.y.tolist()]),
            images=np.concatenate([p.x for p in parts]),
            pixel_max=meta["pixel_max"],
            rejected=[(r["file"], r["reason"]) for r in meta["rejected"]],
            origin=Path(meta["origin"]) if meta["origin"] else None,
        )
        splits = np.concatenate([[s] * len(p) for s, p in zip(SPLITS, parts, strict=True)])
    else:
        frames = [load_rows(ws.prepared, s) for s in SPLITS]
        schema = meta["schema"]
        raw = RawData(
            kind="tabular",
            labels=np.asarray([]),
            frame=pd.concat(frames, ignore_index=True),
            label_column=schema["label"],
            numeric=schema["numeric"],
            categorical=list(schema["categorical"]),
            origin=Path(meta["origin"]) if meta["origin"] else None,
        )
        splits = np.concatenate([[s] * len(f) for s, f in zip(SPLITS, frames, strict=True)])
    return gate_input(raw, meta["name"], splits)


def profile_path(ws: Workspace, params: Params) -> Path:
    """The reference profile of the configured data set: the first of its data to pass."""
    return ws.report(f"profile-{params.data.name}.json")


def validate_stage(params: Params, ws: Workspace) -> ValidationResult:
    """Gate the prepared splits; raises ``DataValidationError`` when any check fails."""
    gate = prepared_gate_input(ws)
    reference = load_profile(profile_path(ws, params), gate)
    result = run_gate(gate, params.validate_, reference, ws.reports, ws.quarantine)
    if not result.passed:
        from components import tracking

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


def validate_path(path: Path, params: Params, ws: Workspace, label: str | None = None):
    """Gate any file or folder (``mloop validate --data``) against the data set's profile."""
    from components.sources import read_path

    try:
        raw = read_path(Path(path), params.data, label)
    except DataError as err:
        err.quarantine = quarantine_unreadable(err, ws.quarantine)
        raise
    gate = gate_input(raw, Path(path).stem or "data")
    reference = load_profile(profile_path(ws, params), gate)
    return run_gate(gate, params.validate_, reference, ws.reports, ws.quarantine)
