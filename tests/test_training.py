"""Model tests: shapes, seeding, accuracy floor, and what the train stage tracks."""

import numpy as np
import pytest
import torch

from components.core.families import DataSpec, NetSpec
from components.core.splits import load_split
from components.core.tracking import dvc_hash
from components.train.models import Probabilities, build_net, load_net
from components.train.stage import read_train_record
from components.train.trainer import train_classifier
from tests.helpers import small_params

DIGITS = DataSpec("image", (8, 8), 10, pixel_max=16.0)
SPEC = NetSpec.of("cnn", DIGITS, dropout=0.0, width=8, hidden=16)


def test_cnn_takes_both_image_layouts():
    net = build_net(SPEC).eval()
    x = torch.rand(5, 8, 8) * 16
    assert net(x).shape == (5, 10)
    assert torch.allclose(net(x), net(x.unsqueeze(1)))
    proba = Probabilities(net)(x)
    assert torch.allclose(proba.sum(dim=1), torch.ones(5))


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="train.model"):
        build_net(NetSpec("lstm", DIGITS, None))


def test_mlp_standardises_table_rows():
    data = DataSpec("tabular", (3,), 2, feature_mean=(10.0, 0.0, 5.0), feature_std=(2.0, 1.0, 0.5))
    spec = NetSpec.of("mlp", data, dropout=0.0, layers=(4,))
    net = build_net(spec).eval()
    first = net.layers[1]
    x = torch.tensor([[12.0, 1.0, 5.5]])
    expected = first(torch.tensor([[1.0, 1.0, 1.0]]))  # (x - mean) / std
    assert torch.allclose(net.layers[2](first((x - net.mean) * net.inv_std)), expected.relu())
    assert net(x).shape == (1, 2)


def test_fit_is_seeded(trained_ws):
    ws, _ = trained_ws
    params = small_params(train={"epochs": 2, "cnn": {"width": 8, "hidden": 16}})
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    weights = []
    for _ in range(2):
        torch.manual_seed(params.seed)
        result = train_classifier(build_net(SPEC), params.train, params.seed, train, val)
        weights.append(result.net.state_dict()["classifier.5.weight"].clone())
        assert len(result.history) == 2 and "val/acc" in result.history[-1]
    assert torch.equal(weights[0], weights[1])


def test_trained_model_beats_the_floor_and_resists_noise(trained_ws):
    ws, _ = trained_ws
    net, spec = load_net(read_train_record(ws).model_file)
    test = load_split(ws.prepared, "test")
    with torch.no_grad():
        pred = net(torch.from_numpy(test.x)).argmax(1).numpy()
        noisy = np.clip(test.x + np.random.default_rng(0).normal(0, 0.5, test.x.shape), 0, 16)
        pred_noisy = net(torch.from_numpy(noisy.astype(np.float32))).argmax(1).numpy()
    assert (pred == test.y).mean() > 0.9  # 6 epochs of the default net
    assert (pred == pred_noisy).mean() > 0.95  # invariance to faint noise
    assert spec.data.num_classes == 10 and spec.family == "cnn"


def test_train_stage_tracks_params_metrics_model_and_lineage(trained_ws, use_store):
    import mlflow

    ws, params = trained_ws
    use_store(ws)
    record = read_train_record(ws)
    run = mlflow.get_run(record.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == str(params.train.epochs)
    history = mlflow.MlflowClient().get_metric_history(record.run_id, "val/acc")
    assert [m.step for m in history] == list(range(1, params.train.epochs + 1))
    assert run.data.metrics["test_accuracy"] > 0.9  # logged by the evaluate stage
    assert run.data.tags["mloop.params_hash"] == params.digest()
    assert run.data.tags["mloop.data_version"] == dvc_hash(ws.prepared)  # what dvc.lock records
    assert run.data.tags["mloop.data_version"].endswith(".dir")
    assert run.data.tags["mloop.git_commit"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(record.run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/classification_report.txt"} <= artifacts
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics)
    root = {a.path for a in mlflow.MlflowClient().list_artifacts(record.run_id)}
    assert "learning_curves.png" in root
    model = mlflow.pyfunc.load_model(record.model_uri)
    assert model.metadata.signature is not None
    assert model.metadata.saved_input_example_info is not None
    test = load_split(ws.prepared, "test")
    proba = np.asarray(model.predict(test.x[:3]))
    assert proba.shape == (3, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-4)


def test_balanced_class_weights_weigh_a_rare_class_up_as_scikit_learn_does():
    from sklearn.utils.class_weight import compute_class_weight

    from components.train.objectives import classify

    y = np.array([0] * 90 + [2] * 10)  # class 1 is missing from the training labels
    balanced = small_params(train={"class_weights": "balanced"}).train
    module = classify(torch.nn.Identity(), balanced, y)
    logits = torch.zeros(4, 3)
    weight = module._class_weight(logits).numpy()
    expected = compute_class_weight("balanced", classes=np.array([0, 2]), y=y)
    assert weight[[0, 2]] == pytest.approx(expected) and weight[1] == 1.0
    assert classify(torch.nn.Identity(), small_params().train, y)._class_weight(logits) is None


def test_fit_with_balanced_weights_finds_more_of_a_rare_class():
    """A rare class that overlaps a common one: balanced weights trade accuracy for its recall."""
    from components.core.splits import Split

    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.1).astype(np.int64)
    x = (rng.normal(size=(n, 4)) + y[:, None] * 1.0).astype(np.float32)
    train, val = Split(x[:1500], y[:1500]), Split(x[1500:], y[1500:])
    recall = {}
    for weights in ("none", "balanced"):
        params = small_params(train={"model": "mlp", "epochs": 5, "class_weights": weights})
        net = build_net(NetSpec.of("mlp", DataSpec("tabular", (4,), 2), layers=(16,)))
        train_classifier(net, params.train, 0, train, val)
        with torch.no_grad():
            predicted = net(torch.from_numpy(val.x)).argmax(1).numpy()
        recall[weights] = (predicted[val.y == 1] == 1).mean()
    assert recall["balanced"] > recall["none"] + 0.2, recall


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_a_regression_net_learns_on_the_declared_scale_and_answers_in_the_labels_units(loss):
    """A value 1,000 times a linear function of the inputs, plus an outlier: either loss
    brings the validation RMSE (in the label's units) far below the label's spread, and
    the served form answers the value itself (no softmax of one output)."""
    from components.core.splits import Split

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = 1000.0 * (x[:, 0] - 0.5 * x[:, 1]) + 5000.0
    y[7] = 1e6  # one outlier in the training rows
    train, val = Split(x[:500], y[:500]), Split(x[500:], y[500:])
    data = DataSpec("tabular", (4,), 1, feature_mean=(0.0,) * 4, feature_std=(1.0,) * 4,
                    target_shift=float(np.median(y)), target_scale=1000.0)  # fmt: skip
    torch.manual_seed(0)
    net = build_net(NetSpec.of("mlp", data, dropout=0.0, layers=[32]))
    cfg = small_params(train={"loss": loss, "epochs": 15, "learning_rate": 0.01}).train
    result = train_classifier(net, cfg, 0, train, val, "regress")
    assert result.history[-1]["val/rmse"] < 0.25 * float(np.std(val.y)), result.history[-1]
    with torch.no_grad():
        served = Probabilities(result.net.cpu().eval())(torch.as_tensor(val.x[:5]))
    np.testing.assert_allclose(served[:, 0].numpy(), result.net(torch.as_tensor(val.x[:5]))[:, 0]
                               .detach().numpy(), rtol=1e-6)  # fmt: skip
    assert served.shape == (5, 1) and abs(float(served[0, 0]) - val.y[0]) < 500
