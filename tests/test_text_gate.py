"""The data gate on texts (issue 20, part 1), on the real SMS Spam Collection: each kind of bad
text is rejected by name and quarantined with the raw file untouched; a fresh sample of the
same source passes against the reference profile, texts of another source do not."""

import subprocess
import sys

import pandas as pd
import pytest

from components.core.config import parse_params
from components.core.kinds.texts import read_text_table
from components.validate.profile import profile
from components.validate.stage import run_gate
from components.validate.tables import gate_input
from tests.helpers import ADULT, HOSTILE, REPO, SHARED_DATA, assert_no_script_ran
from tests.helpers.data import checksums

SMS = SHARED_DATA / "sms_spam" / "sms_spam.csv"
pytestmark = pytest.mark.skipif(not SMS.is_file(), reason=f"{SMS} is absent (shared data)")
CFG = parse_params({}).gate


@pytest.fixture(scope="module")
def sms() -> pd.DataFrame:
    """The messages with exact duplicates dropped, shuffled once (seed 42)."""
    frame = pd.read_csv(SMS, dtype=str, keep_default_na=False).drop_duplicates("text")
    return frame.sample(frac=1.0, random_state=42).reset_index(drop=True)


def _gate(frame: pd.DataFrame, path, tmp_path, reference=None):
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    before = checksums(path)
    gate = gate_input(read_text_table(path, "text", "label"), path.stem)
    result = run_gate(gate, CFG, reference, tmp_path / "reports", tmp_path / "quarantine")
    assert checksums(path) == before  # raw input is only read
    return gate, result


def test_a_fresh_sample_of_the_same_source_passes_and_another_source_does_not(sms, tmp_path):
    gate, first = _gate(sms.iloc[:2500], tmp_path / "reference.csv", tmp_path)
    assert first.passed, [f.describe() for f in first.failures]
    reference = profile(gate)
    assert set(reference["labels"]) == {"ham", "spam"}
    assert 60 < reference["text_stats"]["chars"]["mean"] < 100
    _, fresh = _gate(sms.iloc[2500:3000], tmp_path / "fresh.csv", tmp_path, reference)
    assert fresh.passed, [f.describe() for f in fresh.failures]

    # texts of another source: census rows written out as text, labelled like messages
    if not (ADULT / "adult_train.csv").is_file():
        pytest.skip("the Adult census file is absent (shared data)")
    census = pd.read_csv(ADULT / "adult_train.csv", nrows=500).astype(str)
    other = pd.DataFrame({"text": census.drop(columns="income").agg(", ".join, axis=1),
                          "label": ["ham", "spam"] * 250})  # fmt: skip
    _, foreign = _gate(other, tmp_path / "census.csv", tmp_path, reference)
    assert not foreign.passed
    flagged = {f.column for f in foreign.failures if f.expectation.endswith("mean_to_be_between")}
    assert flagged == {"chars", "non_letter"}, [f.describe() for f in foreign.failures]
    assert (foreign.quarantine / "census.csv").is_file()  # no single bad row: the whole file


BAD = {
    "empty": ("", "ham", "empty or whitespace-only text"),
    "whitespace": ("   \t ", "ham", "empty or whitespace-only text"),
    "too long": ("win " * 1500, "spam", "longer than 5000 characters"),
    "broken encoding": ("Call now \ufffd\ufffd for your prize", "spam",
                        "characters of a broken encoding"),
    "control character": ("see you at 8\x00pm", "ham", "characters of a broken encoding"),
    "unknown label": ("Are we still on for tonight?", "eggs", "label not allowed"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_bad_text_is_rejected_by_name_and_quarantined(sms, tmp_path, kind):
    text, label, why = BAD[kind]
    reference = profile(gate_input(_frame_raw(sms.iloc[:2500], tmp_path), "reference"))
    rows = pd.concat([sms.iloc[2500:2700], pd.DataFrame({"text": [text], "label": [label]})])
    _, result = _gate(rows, tmp_path / "batch.parquet", tmp_path, reference)
    assert not result.passed
    rejected = pd.read_csv(result.quarantine / "rejected_rows.csv", keep_default_na=False)
    assert list(rejected.columns) == ["text", "label", "_reason"]
    assert len(rejected) == 1 and why in rejected["_reason"].iloc[0]


def _frame_raw(frame: pd.DataFrame, tmp_path):
    path = tmp_path / "reference.parquet"
    frame.to_parquet(path, index=False)
    return read_text_table(path, "text", "label")


def test_duplicates_and_duplicates_with_other_labels_are_told_apart(sms, tmp_path):
    rows = sms.iloc[:300].copy()
    copies = rows.iloc[:20].copy()  # 20 exact copies (6.5%, over the 5% allowed)
    clash = rows.iloc[20:21].assign(label=lambda f: f["label"].map({"ham": "spam", "spam": "ham"}))
    _, result = _gate(pd.concat([rows, copies, clash]), tmp_path / "dupes.csv", tmp_path)
    failed = {(f.expectation, f.column) for f in result.failures}
    assert ("expect_column_values_to_be_in_set", "_conflict") in failed
    assert ("expect_column_proportion_of_unique_values_to_be_between", "_digest") in failed
    reasons = pd.read_csv(result.quarantine / "rejected_rows.csv")["_reason"]
    assert (reasons == "duplicate text").sum() == 20
    assert (reasons == "the same text with another label elsewhere").sum() == 2


def test_a_file_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nCaf\xe9 tonight?,ham\n".encode("latin-1"))
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--workspace", str(tmp_path), "validate",
         "--data", str(path), "--text", "text"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "not valid UTF-8: byte 0xe9" in done.stderr and "line 2" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 2  # the refusal, and where it was held


def test_script_in_a_text_does_not_run_in_the_report(sms, tmp_path):
    rows = pd.concat([sms.iloc[:200], pd.DataFrame({"text": [HOSTILE] * 2, "label": ["ham"] * 2}),
                      pd.DataFrame({"text": [""], "label": [HOSTILE]})])  # fmt: skip
    _, result = _gate(rows, tmp_path / "hostile.csv", tmp_path)
    assert not result.passed
    assert_no_script_ran(result.html_report, tmp_path / "chromium")
