"""Request checking of the Bento service (the served HTTP path is in test_loop.py)."""

import numpy as np
import pytest
from bentoml.exceptions import InvalidArgument

from components.service import EXAMPLE_INPUT, MAX_BATCH, to_batch


def test_one_image_and_a_batch():
    assert to_batch(EXAMPLE_INPUT, 8, 8, 16.0).shape == (1, 8, 8)
    assert to_batch([EXAMPLE_INPUT] * 3, 8, 8, 16.0).dtype == np.float32


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
        ([[float("nan")] * 8] * 8, "NaN"),
        ([[17] * 8] * 8, r"\[0, 16\]"),
        ([[-1] * 8] * 8, r"\[0, 16\]"),
    ],
)
def test_malformed_requests_are_rejected_with_the_reason(images, message):
    with pytest.raises(InvalidArgument, match=message):
        to_batch(images, 8, 8, 16.0)
