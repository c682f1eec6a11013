"""Request checking of the Bento service (the served HTTP path is in test_loop.py)."""

import numpy as np
import pytest
from bentoml.exceptions import InvalidArgument

from components.package.inputs import EXAMPLE_INPUT, MAX_BATCH, encode_rows, to_batch


def test_one_image_and_a_batch():
    assert to_batch(EXAMPLE_INPUT, (8, 8), 16.0).shape == (1, 8, 8)
    assert to_batch([EXAMPLE_INPUT] * 3, (8, 8), 16.0).dtype == np.float32


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([[1, 2, 3]], "shaped 8x8"),
        ([[[1] * 8] * 7], "shaped 8x8"),
        ("seven", "shaped 8x8"),
        ([[["a"] * 8] * 8], "numbers"),
        ([[1, [2]]], "numbers"),
        ([], "shaped 8x8"),
        ([EXAMPLE_INPUT] * (MAX_BATCH + 1), "between 1 and"),
        ([[[1] * 8] * 8] * 2 + [[[1] * 8] * 7], "numbers"),
        ([[float("nan")] * 8] * 8, "NaN"),
        ([[17] * 8] * 8, r"\[0, 16\]"),
        ([[-1] * 8] * 8, r"\[0, 16\]"),
    ],
)
def test_malformed_requests_are_rejected_with_the_reason(images, message):
    with pytest.raises(InvalidArgument, match=message):
        to_batch(images, (8, 8), 16.0)


SCHEMA = {
    "label": "y",
    "numeric": ["age", "income"],
    "categorical": {"plan": ["basic", "pro"]},
    "encoded": ["age", "income", "plan=basic", "plan=pro"],
}


def test_rows_are_encoded_like_the_training_table():
    x = encode_rows(
        [{"age": 30, "income": 2.5, "plan": "pro"}, {"age": 1, "income": 0, "plan": "basic"}],
        SCHEMA,
    )
    assert x.tolist() == [[30, 2.5, 0, 1], [1, 0, 1, 0]]
    assert encode_rows({"age": 3, "income": 1.0, "plan": "pro", "y": "ignored"}, SCHEMA).shape == (
        1,
        4,
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"age": 30, "plan": "pro"}], r"missing column\(s\) \['income'\]"),
        ([{"age": 30, "income": 1, "plan": "pro", "zip": 1}], "unknown column"),
        ([{"age": "old", "income": 1, "plan": "pro"}], "age must be a number"),
        ([{"age": float("inf"), "income": 1, "plan": "pro"}], "age must be finite"),
        ([{"age": 3, "income": 1, "plan": "gold"}], "plan='gold' is not one of"),
        ("nope", "rows must be"),
        ([], "between 1 and"),
    ],
)
def test_malformed_rows_are_rejected_with_the_reason(rows, message):
    with pytest.raises(InvalidArgument, match=message):
        encode_rows(rows, SCHEMA)


def test_bentofile_matches_what_the_package_stage_builds():
    import yaml

    from components.package.stage import SERVICE, SERVING_PACKAGES
    from tests.helpers import REPO

    spec = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    assert spec["service"] == SERVICE
    assert spec["python"]["packages"] == list(SERVING_PACKAGES)
    assert "components/**/*.py" in spec["include"]
