"""Tables as they come: missing values under a declared rule, numbers as text, identifier
columns, a held-out test file; UCI Adult (../shared/data/adult) with its gaps as given."""

import math

import numpy as np
import pandas as pd
import pytest
from bentoml.exceptions import InvalidArgument

from components.core.kinds.encoding import TableEncoding
from components.core.rawdata import DataError
from components.core.splits import DROPPED, load_meta, load_rows, load_split
from components.package.inputs import encode_rows
from components.prepare.stage import prepare_stage
from components.validate.report import DataValidationError
from components.validate.stage import validate_stage
from tests.helpers import ADULT, small_params
from tests.helpers.data import checksums, make_table


def _params(path, **tabular):
    return small_params(data={"source": "tabular", "tabular": {"path": str(path), "label": "y",
                                                               **tabular}})  # fmt: skip


def _gappy(tmp_path, n=300):
    """make_table with 10% of age and 5% of plan empty; returns the file."""
    table = make_table(n).astype({"age": float, "plan": object})
    table.loc[table.index % 10 == 3, "age"] = np.nan
    table.loc[table.index % 20 == 7, "plan"] = None
    path = tmp_path / "gappy.csv"
    table.to_csv(path, index=False)
    return path


def test_gaps_fail_by_default_and_the_error_says_what_to_declare(tmp_path, workspace):
    path = _gappy(tmp_path)
    params = _params(path)
    prepare_stage(params, workspace)
    with pytest.raises(DataValidationError) as err:
        validate_stage(params, workspace)
    text = str(err.value)
    assert "expect_column_values_to_not_be_null on samples.age" in text
    assert "expect_column_values_to_not_be_null on samples.plan" in text
    assert "data.tabular.missing" in text


def test_impute_keeps_numeric_gaps_for_the_model_and_fills_categories(tmp_path, workspace):
    path = _gappy(tmp_path)
    before = checksums(path)
    params = _params(path, missing={"default": "impute"})
    prepare_stage(params, workspace)
    assert validate_stage(params, workspace).passed
    assert checksums(path) == before  # raw input is only read
    schema = load_meta(workspace.prepared)["schema"]
    rows = load_rows(workspace.prepared, "train")
    train = load_split(workspace.prepared, "train")
    # The numeric gap stays NaN in the arrays; the fill is the training rows' median.
    age = schema["numeric"].index("age")
    assert np.isnan(train.x[:, age]).sum() == rows["age"].isna().sum() > 0
    assert schema["fill"]["age"] == pytest.approx(rows["age"].median())
    assert schema["feature_fill"][age] == pytest.approx(rows["age"].median())
    # The categorical gap takes the most frequent plan of the training rows.
    most = rows["plan"].value_counts().idxmax()
    assert schema["fill"]["plan"] == most
    onehot = [schema["encoded"].index(f"plan={c}") for c in schema["categorical"]["plan"]]
    gap = rows["plan"].isna().to_numpy()
    assert (train.x[gap][:, onehot].argmax(1) == schema["categorical"]["plan"].index(most)).all()
    assert "nan" not in schema["categorical"]["plan"]


def test_a_column_missing_more_than_its_max_share_fails(tmp_path, workspace):
    path = _gappy(tmp_path)  # age: 10% missing
    params = _params(path, missing={"default": "impute", "columns": {
        "age": {"policy": "impute", "max_share": 0.05}}})  # fmt: skip
    prepare_stage(params, workspace)
    with pytest.raises(DataValidationError, match="not_be_null on samples.age") as err:
        validate_stage(params, workspace)
    assert "samples.plan" not in str(err.value)  # 5% missing, under the default 10%


def test_drop_leaves_rows_out_and_says_so(tmp_path, workspace):
    path = _gappy(tmp_path)
    params = _params(path, missing={"default": "drop"})
    prepared = prepare_stage(params, workspace)
    table = pd.read_csv(path)
    gaps = table["age"].isna() | table["plan"].isna()
    assert prepared.dropped == gaps.sum() and sum(prepared.counts.values()) == (~gaps).sum()
    assert f"{gaps.sum()} rows left out" in prepared.summary()
    dropped = load_rows(workspace.prepared, DROPPED)
    assert len(dropped) == gaps.sum()
    assert set(dropped["_reason"]) >= {"age missing (drop)", "plan missing (drop)"}
    assert validate_stage(params, workspace).passed  # the gate still counts the gaps: 15%
    strict = _params(path, missing={"default": {"policy": "drop", "max_share": 0.02}})
    prepare_stage(strict, workspace)
    with pytest.raises(DataValidationError, match="samples.age"):
        validate_stage(strict, workspace)


def test_numbers_as_text_parse_under_declared_rules_or_fail_naming_the_column(tmp_path, workspace):
    table = make_table().astype({"income": object})
    table["income"] = [f"{1000 * v:,.0f}" for v in make_table()["income"]]  # "51,234"
    table.loc[[4, 8], "income"] = "?"
    path = tmp_path / "text.csv"
    table.to_csv(path, index=False)
    loose = _params(path, missing={"columns": {"income": "impute"}})
    prepare_stage(loose, workspace)  # no thousands rule: "51,234" is text
    with pytest.raises(DataValidationError, match="type_list on samples.income"):
        validate_stage(loose, workspace)
    declared = _params(path, thousands=",", numeric=["age", "income"], categorical=["plan"],
                       missing={"columns": {"income": "impute"}})  # fmt: skip
    prepare_stage(declared, workspace)
    assert validate_stage(declared, workspace).passed
    rows = pd.concat([load_rows(workspace.prepared, s) for s in ("train", "val", "test")])
    assert rows["income"].isna().sum() == 2  # "?" is missing (na_values' default)
    assert rows["income"].max() > 1000  # "51,234" read as 51234


def test_identifier_columns_are_refused_unless_kept_or_dropped(tmp_path, workspace):
    path = tmp_path / "ids.csv"
    make_table().assign(customer=[f"c{i:05d}" for i in range(300)]).to_csv(path, index=False)
    with pytest.raises(DataError, match="'customer' holds a distinct value in every row"):
        prepare_stage(_params(path), workspace)
    assert "customer" not in load_meta_after(_params(path, drop=["customer"]), workspace)
    assert "customer" in load_meta_after(_params(path, keep_ids=["customer"]), workspace)
    with pytest.raises(DataError, match="drop names no column of the file: \\['zip'\\]"):
        prepare_stage(_params(path, drop=["zip"]), workspace)


def load_meta_after(params, ws) -> list[str]:
    prepare_stage(params, ws)
    schema = load_meta(ws.prepared)["schema"]
    return [*schema["numeric"], *schema["categorical"]]


def test_the_service_encodes_null_as_training_did(tmp_path, workspace):
    path = _gappy(tmp_path)
    params = _params(path, missing={"default": "impute", "columns": {"income": "fail"}})
    prepare_stage(params, workspace)
    schema = TableEncoding.from_schema(load_meta(workspace.prepared)["schema"])
    rows = load_rows(workspace.prepared, "train")
    sent = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows.drop(columns="y").to_dict("records")]  # fmt: skip
    # The service's encoding of the rows as sent is the prepared arrays, NaN where missing.
    np.testing.assert_array_equal(encode_rows(sent, schema), load_split(workspace.prepared,
                                                                        "train").x)  # fmt: skip
    with pytest.raises(InvalidArgument, match="income is required"):
        encode_rows([{**sent[0], "income": None}], schema)


def test_the_network_imputes_inside_itself(tmp_path, workspace):
    import torch

    from components.train.models import build_net
    from components.train.trainer import net_spec

    path = _gappy(tmp_path)
    params = _params(path, missing={"default": "impute"})
    prepare_stage(params, workspace)
    meta = load_meta(workspace.prepared)
    train = load_split(workspace.prepared, "train")
    net = build_net(net_spec(params, meta, train)).eval()
    x = torch.from_numpy(train.x[:50])
    filled = torch.where(torch.isnan(x), torch.tensor(meta["schema"]["feature_fill"]), x)
    assert torch.isnan(x).any()
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(filled))
        assert torch.isfinite(net(x)).all()


@pytest.mark.skipif(not ADULT.is_dir(), reason=f"{ADULT} is absent (../shared/data/adult)")
def test_adult_with_its_gaps_as_given_and_the_official_test_file(workspace):
    before = checksums(ADULT / "adult_train.csv")
    params = small_params(data={"source": "tabular", "tabular": {
        "path": str(ADULT / "adult_train.csv"), "test_path": str(ADULT / "adult_test.csv"),
        "label": "income", "missing": {"columns": {
            c: "impute" for c in ("workclass", "occupation", "native_country")}}}})  # fmt: skip
    prepared = prepare_stage(params, workspace)
    assert prepared.counts["test"] == 16281  # the official test file, whole
    assert prepared.counts["train"] + prepared.counts["val"] == 32561
    assert validate_stage(params, workspace).passed
    assert checksums(ADULT / "adult_train.csv") == before
