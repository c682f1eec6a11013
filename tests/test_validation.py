"""Data tests: the Great Expectations gate passes good data and names each fault."""

import numpy as np
import pytest

from components.config import ValidateConfig
from components.validation import run_suite, sample_table

CLASSES = list(range(10))


@pytest.fixture(scope="module")
def good():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.images.astype(np.float32), digits.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(y))
    parts = np.split(idx, [1200, 1500])
    return {n: (x[i], y[i]) for n, i in zip(("train", "val", "test"), parts, strict=True)}


def _validate(splits, tmp_path, cfg=None):
    table = sample_table({n: s[0] for n, s in splits.items()}, {n: s[1] for n, s in splits.items()})
    return run_suite(cfg or ValidateConfig(), table, CLASSES, (8, 8), tmp_path / "v.json")


def _failed(result):
    return {(f.expectation, f.column) for f in result.failures}


def test_good_data_passes(good, tmp_path):
    result = _validate(good, tmp_path)
    assert result.passed, [f.describe() for f in result.failures]
    assert result.expectations >= 15
    assert (tmp_path / "v.json").is_file()


def test_out_of_range_pixels_fail(good, tmp_path):
    x, y = good["train"]
    x = x.copy()
    x[:7] = 40.0
    result = _validate({**good, "train": (x, y)}, tmp_path)
    assert not result.passed
    failure = next(f for f in result.failures if f.column == "max")
    assert failure.unexpected_count == 7
    assert "expect_column_values_to_be_between on samples.max" in failure.describe()


def test_nan_and_inf_fail(good, tmp_path):
    x, y = good["val"]
    x = x.copy()
    x[0, 0, 0] = np.nan
    x[1, 2, 3] = np.inf
    result = _validate({**good, "val": (x, y)}, tmp_path)
    failed = _failed(result)
    assert ("expect_column_values_to_be_in_set", "finite") in failed
    assert ("expect_column_values_to_not_be_null", "mean") in failed


def test_unknown_label_fails(good, tmp_path):
    x, y = good["test"]
    y = y.copy()
    y[:3] = 11
    result = _validate({**good, "test": (x, y)}, tmp_path)
    assert ("expect_column_values_to_be_in_set", "label") in _failed(result)


def test_missing_class_and_duplicates_fail(good, tmp_path):
    x, y = good["train"]
    keep = y != 3
    x, y = x[keep], y[keep]
    x = np.concatenate([x, x[:200]])
    y = np.concatenate([y, y[:200]])
    result = _validate({**good, "train": (x, y)}, tmp_path)
    failed = _failed(result)
    assert ("expect_column_proportion_of_unique_values_to_be_between", "digest") in failed
    # Class 3 still exists in val and test, so the share check names the gap.
    assert ("expect_column_values_to_be_between", "share") in failed


def test_too_few_rows_fail(good, tmp_path):
    tiny = {n: (x[:10], y[:10]) for n, (x, y) in good.items()}
    result = _validate(tiny, tmp_path, ValidateConfig(min_rows=100, min_class_share=0.0))
    assert ("expect_table_row_count_to_be_between", None) in _failed(result)
