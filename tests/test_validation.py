"""Data tests: the gate passes good data of every kind and names each fault of bad data.

Every bad input is checked through ``validate_path`` (what ``mloop validate --data``
runs), its raw file's checksum is compared before and after, and the quarantine
is read back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components.core.rawdata import DataError, RawData
from components.prepare.stage import prepare_stage
from components.validate.report import DataValidationError
from components.validate.stage import run_gate, validate_path, validate_stage
from components.validate.tables import gate_input
from tests.helpers import small_params
from tests.helpers.data import checksums, make_images, make_table


@pytest.fixture
def table_ws(workspace):
    """A workspace whose data set is a good CSV that has passed the gate (its profile exists)."""
    raw = workspace.root / "raw"
    raw.mkdir()
    make_table().to_csv(raw / "good.csv", index=False)
    params = small_params(
        data={"source": "tabular", "tabular": {"path": str(raw / "good.csv"), "label": "y"}}
    )
    prepare_stage(params, workspace)
    validate_stage(params, workspace)
    return workspace, params, raw


def _fails_on(path, params, ws, *expected, label="y"):
    """Validate ``path``; assert it fails naming each expected fragment; return the result."""
    before = checksums(path)
    result = validate_path(path, params, ws, label=label)
    assert not result.passed
    text = str(DataValidationError(result))
    for fragment in expected:
        assert fragment in text, text
    assert checksums(path) == before  # raw input untouched
    assert result.quarantine and (result.quarantine / "reason.txt").is_file()
    assert result.html_report.read_text().count("<tr>") >= 2
    return result


def _rejected(path, params, ws, fragment, label="y"):
    before = checksums(path)
    with pytest.raises(DataError, match=fragment) as err:
        validate_path(path, params, ws, label=label)
    assert checksums(path) == before
    assert (
        err.value.quarantine
        and fragment.split(":")[0] in (err.value.quarantine / "reason.txt").read_text()
    )
    return err.value


# ------------------------------------------------------------------ good data passes


def test_good_table_csv_and_parquet_pass(table_ws):
    ws, params, raw = table_ws
    assert validate_path(raw / "good.csv", params, ws).passed
    make_table(seed=1).to_parquet(raw / "batch.parquet")
    result = validate_path(raw / "batch.parquet", params, ws)
    assert result.passed, str(DataValidationError(result))
    assert result.quarantine is None


def test_good_image_folder_and_builtin_and_synthetic_pass(workspace, tmp_path):
    params = small_params()
    folder = make_images(tmp_path / "shapes")
    assert validate_path(folder, params, workspace).passed
    digits = small_params()
    prepare_stage(digits, workspace)
    assert validate_stage(digits, workspace).passed
    for kind in ("tabular", "images"):
        synth = small_params(
            data={"source": "synthetic", "synthetic": {"kind": kind, "samples": 600}}
        )
        prepare_stage(synth, workspace)
        assert validate_stage(synth, workspace).passed


# ------------------------------------------------------------------ whole-file faults


def test_empty_file(table_ws):
    ws, params, raw = table_ws
    (raw / "empty.csv").write_bytes(b"")
    _rejected(raw / "empty.csv", params, ws, "empty file")


def test_header_only(table_ws):
    ws, params, raw = table_ws
    (raw / "header.csv").write_text("age,income,plan,y\n")
    _rejected(raw / "header.csv", params, ws, "header only")


def test_truncated_csv(table_ws):
    ws, params, raw = table_ws
    text = (raw / "good.csv").read_text()
    (raw / "cut.csv").write_text(text[: text.rindex(",")])  # the last line loses its label
    _rejected(raw / "cut.csv", params, ws, "truncated")


def test_non_utf8_bytes(table_ws):
    ws, params, raw = table_ws
    data = (raw / "good.csv").read_bytes().replace(b"basic", b"b\xe4sic", 1)
    (raw / "latin1.csv").write_bytes(data)
    _rejected(raw / "latin1.csv", params, ws, "not valid UTF-8")


def test_missing_label_column(table_ws):
    ws, params, raw = table_ws
    make_table().drop(columns=["y"]).to_csv(raw / "nolabel.csv", index=False)
    _rejected(raw / "nolabel.csv", params, ws, "label column 'y' missing")


def test_folder_without_class_folders(tmp_path, workspace):
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(loose / "a.png")
    err = _rejected(loose, small_params(), workspace, "no class sub-folders")
    assert (err.quarantine / "files" / "a.png").is_file()


# ------------------------------------------------------------------ faults the suite finds


def test_unknown_extra_column_fails_or_warns(table_ws):
    ws, params, raw = table_ws
    make_table().assign(zip=1).to_csv(raw / "extra.csv", index=False)
    _fails_on(raw / "extra.csv", params, ws, "expect_table_columns_to_match_set")
    lenient = small_params(data=params.data.model_dump(), validate={"extra_columns": "warn"})
    result = validate_path(raw / "extra.csv", lenient, ws, label="y")
    assert result.passed and any("'zip'" in w for w in result.warnings)


def test_wrong_dtype_in_numeric_column(table_ws):
    ws, params, raw = table_ws
    bad = make_table().astype({"income": object})
    bad.loc[[3, 9], "income"] = "twelve"
    bad.to_csv(raw / "dtype.csv", index=False)
    result = _fails_on(
        raw / "dtype.csv", params, ws, "expect_column_values_to_be_in_type_list on samples.income"
    )
    held = pd.read_csv(result.quarantine / "rejected_rows.csv")
    assert len(held) == 2 and held["_reason"].str.contains("income not numeric").all()


def test_nan_and_inf(table_ws):
    ws, params, raw = table_ws
    bad = make_table().astype({"age": float})
    bad.loc[5, "age"] = np.nan
    bad.loc[7, "income"] = np.inf
    bad.to_csv(raw / "nan.csv", index=False)
    result = _fails_on(
        raw / "nan.csv", params, ws,
        "expect_column_values_to_not_be_null on samples.age",
        "expect_column_values_to_be_in_set on samples._finite",
    )  # fmt: skip
    held = pd.read_csv(result.quarantine / "rejected_rows.csv")
    assert sorted(held["_reason"]) == ["age missing", "infinite value; income out of range"]


def test_out_of_range_values(table_ws):
    ws, params, raw = table_ws
    bad = make_table()
    bad.loc[:4, "age"] = 400
    bad.to_csv(raw / "range.csv", index=False)
    result = _fails_on(
        raw / "range.csv", params, ws, "expect_column_values_to_be_between on samples.age"
    )
    assert len(pd.read_csv(result.quarantine / "rejected_rows.csv")) == 5


def test_out_of_range_pixel_values(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 16, size=(200, 8, 8)).astype(np.float32)
    images[:7] = 40.0
    raw = RawData(kind="image", labels=rng.integers(0, 4, 200), images=images, pixel_max=16.0)
    result = run_gate(gate_input(raw, "px"), small_params().gate, None, tmp_path, tmp_path / "q")
    failure = next(f for f in result.failures if f.column == "max")
    assert failure.unexpected_count == 7
    assert "expect_column_values_to_be_between on samples.max" in failure.describe()


def test_label_outside_the_allowed_set(table_ws):
    ws, params, raw = table_ws
    bad = make_table()
    bad.loc[:2, "y"] = "zebra"
    bad.to_csv(raw / "label.csv", index=False)
    result = _fails_on(
        raw / "label.csv",
        params,
        ws,
        "expect_column_values_to_be_in_set on samples._label",
        "zebra",
    )
    held = pd.read_csv(result.quarantine / "rejected_rows.csv")
    assert (held["y"] == "zebra").all() and len(held) == 3


def test_single_class(table_ws):
    ws, params, raw = table_ws
    make_table().assign(y="a").to_csv(raw / "one.csv", index=False)
    result = _fails_on(
        raw / "one.csv",
        params,
        ws,
        "expect_column_unique_value_count_to_be_between on samples._label",
    )
    assert (result.quarantine / "one.csv").is_file()  # a table-level fault holds the whole file


def test_half_the_rows_duplicated(table_ws):
    ws, params, raw = table_ws
    good = make_table()
    pd.concat([good.iloc[:150], good.iloc[:150]]).to_csv(raw / "dup.csv", index=False)
    result = _fails_on(
        raw / "dup.csv",
        params,
        ws,
        "expect_column_proportion_of_unique_values_to_be_between on samples._digest",
    )
    held = pd.read_csv(result.quarantine / "rejected_rows.csv")
    assert len(held) == 150 and (held["_reason"] == "duplicate row").all()


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [("corrupt", "corrupt or unreadable image"), ("empty", "zero-byte image file"),
     ("rgb", "3 channel(s) (RGB); expected 1 (grayscale)")],
)  # fmt: skip
def test_bad_image_files(tmp_path, workspace, fault, fragment):
    folder = make_images(tmp_path / "shapes")
    bad = folder / "square" / "bad.png"
    if fault == "corrupt":
        bad.write_bytes((folder / "square" / "000.png").read_bytes()[:40])
    elif fault == "empty":
        bad.write_bytes(b"")
    else:
        Image.fromarray(np.zeros((12, 12, 3), np.uint8), mode="RGB").save(bad)
    result = _fails_on(folder, small_params(), workspace, "square/bad.png", fragment, label=None)
    assert (result.quarantine / "files" / "square" / "bad.png").is_file()
    assert fragment in (result.quarantine / "reason.txt").read_text()


def test_a_16_bit_image_file_is_refused_and_held(tmp_path, workspace):
    folder = make_images(tmp_path / "shapes")
    Image.fromarray(np.full((12, 12), 4000, np.uint16)).save(folder / "square" / "hot.png")
    result = _fails_on(folder, small_params(), workspace, "square/hot.png", label=None)
    assert (result.quarantine / "files" / "square" / "hot.png").is_file()
    assert "beyond 8 bits" in (result.quarantine / "reason.txt").read_text()


def test_the_pipeline_gate_holds_files_refused_at_read(tmp_path, workspace):
    folder = make_images(workspace.root / "shapes")
    (folder / "circle" / "broken.png").write_bytes(b"\x89PNG not really")
    params = small_params(data={"source": "images", "images": {"path": "shapes", "size": [12, 12]}})
    assert prepare_stage(params, workspace).rejected == 1
    with pytest.raises(DataValidationError, match="circle/broken.png") as err:
        validate_stage(params, workspace)
    held = err.value.result.quarantine
    assert (held / "files" / "circle" / "broken.png").read_bytes() == b"\x89PNG not really"
    assert len(list(workspace.quarantine.iterdir())) == 1  # held once, by the gate


def test_the_validation_report_runs_no_script_from_column_names_or_labels(workspace, tmp_path):
    from tests.helpers import HOSTILE, assert_no_script_ran

    table = make_table()
    table = table.rename(columns={"plan": HOSTILE, "y": f"label{HOSTILE}"})
    table[f"label{HOSTILE}"] = table[f"label{HOSTILE}"].map({"a": HOSTILE, "b": "b", "c": "c"})
    table.loc[:5, HOSTILE] = HOSTILE  # values too, and failing rows show examples
    source = tmp_path / "hostile.csv"
    table.to_csv(source, index=False)
    params = small_params(validate={"allowed_labels": ["b", "c"]})  # the hostile label fails
    result = validate_path(source, params, workspace, label=f"label{HOSTILE}")
    assert not result.passed
    dom = assert_no_script_ran(result.html_report, tmp_path / "profile")
    assert "pw'+'ned" in dom  # the names are shown, as text


def test_before_a_reference_exists_the_report_says_so_and_allowed_labels_apply(workspace, tmp_path):
    table = make_table()
    table.loc[: len(table) // 6, "y"] = "unseen"  # ~17% of rows carry a label never declared
    source = tmp_path / "batch.csv"
    table.to_csv(source, index=False)
    result = validate_path(source, small_params(), workspace, label="y")
    assert any("no reference profile exists yet" in w for w in result.warnings)
    assert any("set validate.allowed_labels" in w for w in result.warnings)
    strict = small_params(validate={"allowed_labels": ["a", "b", "c"]})
    result = validate_path(source, strict, workspace, label="y")
    assert not result.passed
    assert any("allowed_labels ['a', 'b', 'c']" in w for w in result.warnings)


def test_validate_refuses_special_files_and_copies_nothing_it_was_not_given(workspace, tmp_path):
    with pytest.raises(DataError, match="not a regular file") as caught:
        validate_path(Path("/dev/zero"), small_params(), workspace)
    assert [p.name for p in caught.value.quarantine.iterdir()] == ["reason.txt"]
    # A folder with no class folders: its loose files were never asked for.
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "secret.txt").write_text("private")
    with pytest.raises(DataError, match="no class sub-folders") as caught:
        validate_path(loose, small_params(), workspace)
    assert [p.name for p in caught.value.quarantine.iterdir()] == ["reason.txt"]
    # A link among the images is rejected, and what it names is never copied.
    folder = make_images(tmp_path / "images", per_class=5)
    (tmp_path / "outside.png").write_bytes(b"not for the quarantine")
    (folder / "circle" / "link.png").symlink_to(tmp_path / "outside.png")
    result = validate_path(folder, small_params(), workspace)
    assert not result.passed
    assert any("symbolic link" in str(f.observed) or "symbolic link" in str(f.examples)
               or "link.png" in str(f.column) for f in result.failures)  # fmt: skip
    copied = [p for p in result.quarantine.rglob("*") if p.is_file() or p.is_symlink()]
    assert not any(p.name == "link.png" for p in copied), copied


def test_the_report_shows_every_expectation_and_the_data_beside_the_reference(table_ws):
    import base64
    import html
    import io
    import json

    ws, params, raw = table_ws  # the good table passed: it is the reference profile
    profile = json.loads((ws.reports / f"profile-{params.data.name}.json").read_text())
    assert set(profile["distributions"]) == {"age", "income", "plan", "y"}
    assert len(profile["distributions"]["age"]["shares"]) == 20
    shifted = make_table(seed=1)
    shifted["age"] = shifted["age"] + 25  # older customers: a few out of range
    shifted.to_csv(raw / "older.csv", index=False)
    result = validate_path(raw / "older.csv", params, ws, label="y")
    assert not result.passed and len(result.checks) == result.expectations
    passed = [c for c in result.checks if c.success]
    assert passed and all(c.observed or c.rule for c in passed)  # passing ones show values
    between = next(c for c in result.checks
                   if c.column == "age" and c.expectation.endswith("be_between"))  # fmt: skip
    assert not between.success and "unexpected" in between.observed and "max_value" in between.rule
    page = result.html_report.read_text()
    assert page.count("<tr class=") == result.expectations  # every one, passed or failed
    assert "this data (blue)" in page and "reference profile (grey)" in page
    chart = page.split("data:image/png;base64,")[1].split('"')[0]
    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(chart))).size[0] > 600
    record = json.loads(result.report.read_text())
    assert len(record["checks"]) == result.expectations
    assert html.escape("expect_column_values_to_be_between") in page
