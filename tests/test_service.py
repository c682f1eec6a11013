"""Request checking of the Bento service (the served HTTP path is in test_loop.py)."""

import numpy as np
import pytest
from bentoml.exceptions import InvalidArgument

from components.core.kinds.base import MAX_BATCH
from components.core.kinds.encoding import TableEncoding
from components.package.inputs import EXAMPLE_INPUT, encode_rows, to_batch


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


SCHEMA = TableEncoding.from_schema({
    "label": "y",
    "numeric": ["age", "income"],
    "categorical": {"plan": ["basic", "pro"]},
    "encoded": ["age", "income", "plan=basic", "plan=pro"],
})  # fmt: skip


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


def test_beyond_max_in_flight_posts_are_shed_with_503_and_retry_after_but_probes_pass():
    import asyncio
    import json

    from components.package.http_gate import RETRY_AFTER_S, RequestGate

    release = asyncio.Event()

    async def app(scope, receive, send):  # a service busy until released
        if scope["method"] == "POST":
            await receive()
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    gate = RequestGate(app, max_in_flight=2)

    async def call(method: str, path: str):
        scope = {"type": "http", "method": method, "path": path,
                 "headers": [(b"content-type", b"application/json")]}  # fmt: skip
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message):
            sent.append(message)

        await gate(scope, receive, send)
        start = sent[0]
        return start["status"], dict(start["headers"]), json.loads(sent[1]["body"])

    async def scenario():
        busy = [asyncio.create_task(call("POST", "/predict")) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert gate.in_flight == 2
        status, headers, body = await call("POST", "/predict")
        assert status == 503 and headers[b"retry-after"] == str(RETRY_AFTER_S).encode()
        assert "at capacity" in body["error"] and "MLOOP_MAX_IN_FLIGHT" in body["error"]
        assert (await call("GET", "/readyz"))[0] == 200  # probes are never shed
        release.set()
        assert [(await t)[0] for t in busy] == [200, 200]
        assert gate.in_flight == 0 and (await call("POST", "/predict"))[0] == 200

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("texts", "status", "message"),
    [
        ([], 400, "non-empty list"),
        ({"text": "hi"}, 400, "non-empty list"),
        (["fine", 42], 400, "texts[1] is not a text: 42"),
        (["   \n\t"], 400, "empty or only whitespace"),
        (["x" * 501], 413, "501 characters; at most 500"),
        (["ok"] * (MAX_BATCH + 1), 413, f"at most {MAX_BATCH} texts"),
    ],
)
def test_texts_beyond_the_limits_or_not_texts_are_refused(texts, status, message):
    from components.package.inputs import to_texts

    assert to_texts("one message", max_chars=500) == ["one message"]
    assert to_texts(["a", "b c"], max_chars=500) == ["a", "b c"]
    with pytest.raises(Exception) as refused:
        to_texts(texts, max_chars=500)
    assert int(refused.value.error_code) == status and message in str(refused.value)
