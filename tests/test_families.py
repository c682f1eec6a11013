"""Model families as plug-ins: the registry, each family's own section of params.yaml, and a
family defined in the test folder (``tests/families/tiny.py``) taken through the whole loop
without a line of ``components/`` knowing it."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from components.core import families
from components.core.config import ParamsError, load_params, parse_params
from components.core.families import DataSpec, NetSpec
from components.package.inputs import EXAMPLE_INPUT
from components.train.models import build_net, load_net, save_net
from tests.helpers import REPO, looped, mloop_serve, post, repo_params, served

TINY = "tests.families.tiny"
DIGITS = DataSpec("image", (8, 8), 10, pixel_max=16.0)


def test_the_built_in_families_are_known_and_an_unknown_one_is_named_with_them():
    assert {"cnn", "hf", "mlp", "python", "resnet", "transformer"} <= set(families.names())
    with pytest.raises(ValueError, match="unknown model family 'lstm'; known: cnn, hf, mlp"):
        families.get("lstm")


@pytest.mark.parametrize(
    ("train", "said"),
    [
        ({"families": [TINY], "tiny": {"hidden": 0}}, "train.tiny: hidden 0: each from 1 to 512"),
        ({"families": [TINY], "tiny": {"hiden": 3}}, "train.tiny.hiden: unknown key"),
        ({"families": [TINY], "tiny": {"hidden": "many"}}, "train.tiny.hidden: Input should be"),
        ({"model": "tiny"}, "train.model: unknown model family 'tiny'"),
        ({"families": ["no.such.module"]}, "train.families: cannot import 'no.such.module'"),
        ({"families": ["json"]}, "train.families: json declares no FAMILY"),
        ({"width": 32}, "train.width: moved to train.cnn.width"),
        ({"transformer": {"width": 30}}, "train.transformer: width 30 is not a multiple of heads"),
    ],
)
def test_a_wrong_family_section_fails_at_load_naming_its_key(train, said):
    with pytest.raises(ParamsError) as err:
        parse_params({"train": train})
    assert said in str(err.value)


def test_a_family_section_is_typed_dumped_and_searchable():
    params = parse_params({"train": {"families": [TINY], "model": "tiny", "tiny": {"hidden": 24},
                                     "mlp": {"layers": [8, 4]}}})  # fmt: skip
    assert params.train.net("tiny").hidden == 24
    assert params.train.net("mlp").layers == (8, 4)  # tuples: frozen, as JSON gives them back
    assert params.train.net("cnn").width == 32  # a section not written: the family's defaults
    assert params.flat()["train.tiny.hidden"] == 24  # MLflow's params, one per key
    dumped = params.model_dump(by_alias=True)
    assert dumped["train"]["mlp"] == {"layers": [8, 4]}
    assert parse_params(dumped) == params and parse_params(dumped).digest() == params.digest()
    other = parse_params({**dumped, "train": {**dumped["train"], "tiny": {"hidden": 25}}})
    assert other.digest() != params.digest()  # a family's size is part of the run's identity


def test_a_family_module_in_the_workspace_folder_is_found_from_its_params_file(tmp_path):
    source = (REPO / "tests" / "families" / "tiny.py").read_text()
    (tmp_path / "my_family.py").write_text(source.replace('name="tiny"', 'name="mine"'))
    (tmp_path / "params.yaml").write_text(
        "train:\n  families: [my_family]\n  model: mine\n  mine: {hidden: 5}\n"
    )
    params = load_params(tmp_path / "params.yaml")
    assert params.train.model == "mine" and params.train.net("mine").hidden == 5
    assert families.get("mine").module == "my_family"


def test_an_outside_family_builds_saves_and_loads_back_by_its_module(tmp_path):
    families.load([TINY])
    spec = NetSpec.of("tiny", DIGITS, dropout=0.0, hidden=12)
    net = build_net(spec).eval()
    save_net(net, spec, tmp_path / "model.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    assert blob["spec"]["module"] == TINY and blob["spec"]["options"] == {"hidden": 12}
    again, loaded = load_net(tmp_path / "model.pt")
    assert loaded == spec
    x = torch.rand(3, 8, 8) * 16
    with torch.no_grad():
        assert torch.equal(again(x), net(x))


def test_a_weights_file_from_before_families_still_loads(tmp_path):
    old = {"kind": "cnn", "input_shape": [8, 8], "num_classes": 10, "conv_width": 8,
           "hidden": 16, "mlp_layers": [256, 128], "resnet_blocks": [2, 2, 2], "dropout": 0.0,
           "pixel_max": 16.0, "feature_mean": [], "feature_std": [], "feature_fill": [],
           "vocab_size": 0, "depth": 2, "heads": 4, "pooling": "cls"}  # fmt: skip
    spec = NetSpec.from_dict(old)
    assert spec == NetSpec.of("cnn", DIGITS, dropout=0.0, width=8, hidden=16)


def test_a_family_that_does_not_read_the_data_kind_is_refused_naming_the_right_one(tmp_path):
    from components.core.paths import Workspace
    from components.prepare.stage import prepare_stage
    from components.train.trainer import net_spec
    from tests.helpers import small_params

    ws = Workspace(tmp_path)
    params = small_params(train={"model": "transformer"})
    prepare_stage(params, ws)
    meta = json.loads((ws.prepared / "meta.json").read_text())
    with pytest.raises(ValueError, match="'transformer' reads text data, not image; use 'cnn'"):
        net_spec(params, meta, None)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_family_from_the_test_folder_goes_through_the_whole_loop(tmp_path):
    """train, register, compress (ONNX, from the family's own export declaration), package
    and serve: the served answers are the registered model's."""
    from components.core.predict import load_registered
    from components.core.splits import load_split

    raw = repo_params()
    raw["train"].update(families=[TINY], model="tiny", tiny={"hidden": 32}, epochs=15)
    raw["compress"].update(variants=["dynamic-int8", "onnx", "onnx-int8"], latency_repeats=20,
                           choose="fastest")  # fmt: skip
    raw["register"]["model_name"] = "tiny-digits"
    with looped(tmp_path / "ws", raw) as (ws, state):
        assert state.is_completed(), state.message
        summary = state.result()
        trained = json.loads(ws.train_record.read_text())
        assert trained["val_accuracy"] > 0.9  # a real model of the digits, not noise
        assert summary.registration.family == "tiny" and summary.registration.decision.promote
        report = (ws.reports / "compression.md").read_text()
        assert "| onnx | onnx |" in report and "| onnx-int8 | onnx |" in report
        assert "distilled" not in report  # the family makes no student: none is built
        run = load_net(ws.model_file)[1]
        assert run.family == "tiny" and run.options.hidden == 32

        test = load_split(ws.prepared, "test")
        bento = summary.bento
        registered = load_registered(f"models:/{bento.model_name}/{bento.model_version}")
        with served(bento.bento_tag, tmp_path / "log.sqlite") as (port, _):
            status, answer = post(port, json.dumps({"images": test.x[:16].tolist()}).encode())
        assert status == 200, answer
        served_proba = np.asarray([p["probabilities"] for p in answer["predictions"]])
        np.testing.assert_allclose(served_proba, registered(test.x[:16]), atol=1e-5)


# Your own module, as a user writes it beside params.yaml (docs/training.md shows the same)
USER_MODULE = """
import torch
from torch import nn


class Digits(nn.Module):
    def __init__(self, data):
        super().__init__()
        self.scale = 1.0 / data.pixel_max  # pixels arrive on their own scale
        pixels = 1
        for size in data.input_shape:
            pixels *= size
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(pixels, 64), nn.ReLU(),
                                    nn.Linear(64, data.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x * self.scale)


def build(data):
    return Digits(data)
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_a_module_of_your_own_from_the_workspace_goes_through_the_loop_and_is_served(tmp_path):
    """train.model: python with a factory in the workspace folder: trained, registered,
    exported to ONNX and quantized, packaged and served; nothing in the repository names it.
    The Bento carries the module, so the served /explain (which rebuilds the network) works
    with ``mloop serve`` started outside the workspace (issue 39, row 7: it answered 409
    ``cannot import``)."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "my_digits.py").write_text(USER_MODULE)
    raw = repo_params()
    raw["train"].update(model="python", python={"factory": "my_digits:build"}, epochs=10)
    raw["compress"].update(variants=["onnx", "onnx-int8"], latency_repeats=20)
    raw["register"]["model_name"] = "own-digits"
    with looped(root, raw) as (ws, state):
        assert state.is_completed(), state.message
        summary = state.result()
        assert json.loads(ws.train_record.read_text())["val_accuracy"] > 0.9
        assert summary.registration.family == "python" and summary.registration.decision.promote
        report = (ws.reports / "compression.md").read_text()
        assert "| onnx | onnx |" in report and "| onnx-int8 | onnx |" in report
        stores = {ws.bentoml_home, Path(os.environ["BENTOML_HOME"])}
        carried = [p for store in stores if store.is_dir() for p in store.rglob("my_digits.py")]
        assert carried, "the Bento carries the factory's module"
        with mloop_serve(ws.root) as port:  # started in the repository, not the workspace
            status, answer = post(port, json.dumps({"images": EXAMPLE_INPUT}).encode())
            explained = post(port, json.dumps({"images": [EXAMPLE_INPUT]}).encode(), "explain")
        assert status == 200 and answer["predictions"][0]["class"] == 0, answer
        assert explained[0] == 200 and explained[1]["method"] == "integrated-gradients", explained


def test_a_lightning_module_of_your_own_trains_with_its_own_step_and_optimizer():
    """train.model: python returning a LightningModule with its own training_step and
    configure_optimizers: the loop trains it so (its SGD at its learning rate, what it
    logs) and validates it as every family (val/acc)."""
    import lightning as L

    from components.core.splits import Split
    from components.train.trainer import train_classifier

    class Mine(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(),
                                              torch.nn.Linear(16, 2))  # fmt: skip

        def forward(self, x):
            return self.layers(x)

        def training_step(self, batch, batch_idx):
            x, y = batch[0], batch[1]
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("mine/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.25)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    cfg = parse_params(repo_params()).train.model_copy(update={"epochs": 5, "batch_size": 32})
    result = train_classifier(Mine(), cfg, 0, Split(x[:500], y[:500]), Split(x[500:], y[500:]))
    last = result.history[-1]
    assert last["mine/lr"] == pytest.approx(0.25)  # its optimizer, not the loop's schedule
    assert last["val/acc"] > 0.9 and "train/loss" in last
