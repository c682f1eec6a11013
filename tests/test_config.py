"""Params: the real file loads; a wrong key or value stops with the key's name."""

import pytest

from components.core.config import ParamsError, load_params, parse_params
from tests.helpers import REPO


def test_repo_params_load_with_every_section():
    params = load_params(REPO / "params.yaml")
    assert params.train.epochs >= 1
    assert params.registry.model_name == "digits-classifier"
    assert set(params.flat()) >= {"seed", "train.learning_rate", "monitor.drift_threshold"}


def test_unknown_key_is_named():
    with pytest.raises(ParamsError, match=r"train\.epoch: unknown key"):
        parse_params({"train": {"epoch": 3}})


def test_unknown_section_is_named():
    with pytest.raises(ParamsError, match=r"trian: unknown key"):
        parse_params({"trian": {"epochs": 3}})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"learning_rate": "fast"}}, "train.learning_rate"),
        ({"data": {"test_fraction": 0.9}}, "data.test_fraction"),
        ({"compress": {"variants": ["int3"]}}, "compress.variants"),
        ({"validate": {"pixel_min": 5, "pixel_max": 1}}, "validate"),
    ],
)
def test_wrong_value_is_named(raw, key):
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert f"  {key}" in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="no such parameters file"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_digest_follows_values():
    a, b = parse_params({}), parse_params({"train": {"epochs": 3}})
    assert a.digest() == parse_params({}).digest()
    assert a.digest() != b.digest()


def test_sweep_space_names_only_train_parameters():
    with pytest.raises(ParamsError, match="sweep.space: 'train.epoc' is not a train"):
        parse_params({"sweep": {"space": {"train.epoc": {"low": 1, "high": 3}}}})
    with pytest.raises(ParamsError, match="give choices, or low < high"):
        parse_params({"sweep": {"space": {"train.dropout": {"low": 0.5, "high": 0.1}}}})


def test_with_values_sets_nested_keys_and_validates_them():
    from components.train.sweep import with_values

    params = load_params(REPO / "params.yaml")
    changed = with_values(params, {"train.epochs": 3, "compress.distill.width": 16})
    assert (changed.train.epochs, changed.compress.distill.width) == (3, 16)
    assert changed.compress.distill.hidden == params.compress.distill.hidden
    with pytest.raises(ParamsError, match="compress.distill.widht: unknown key"):
        with_values(params, {"compress.distill.widht": 16})
    with pytest.raises(ParamsError, match="compress.distill.width"):
        with_values(params, {"compress.distill.width": 0})
