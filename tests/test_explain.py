"""Explanations, judged by the checks of the literature rather than by eye: Integrated
Gradients' completeness, the model-randomisation test of Adebayo et al. (2018), and a table
with a planted informative column and a planted noise column; and each explainer's answer
in the user's terms (source columns, words, an image grid)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from components.core.families import DataSpec, NetSpec
from components.core.kinds.encoding import TableEncoding
from components.evaluate.explain.attribution import DEFAULT_STEPS
from components.evaluate.explain.explainer import for_baseline, for_network
from components.evaluate.explain.views import ImageView, TableView, TextView
from components.train.models import build_net

pytestmark = pytest.mark.unit

COLUMNS = ["signal", "noise", "weak_a", "weak_b"]
COLOURS = ["blue", "green", "red"]


def planted_table(n: int, seed: int = 0):
    """Rows whose label is the sign of ``signal`` (plus some of ``weak_a``, ``weak_b`` and
    the colour), with a ``noise`` column that carries nothing; encoded as the loop encodes."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(n, 4)).astype(np.float32)
    colour = rng.integers(0, 3, n)
    logit = 3.0 * numbers[:, 0] + 0.8 * numbers[:, 2] + 0.8 * numbers[:, 3] + 0.8 * (colour == 2)
    y = (logit + rng.normal(scale=0.3, size=n) > 0).astype(np.int64)
    x = np.concatenate([numbers, np.eye(3, dtype=np.float32)[colour]], axis=1)
    return x, y


ENCODING = TableEncoding("label", COLUMNS, {"colour": COLOURS})


def trained(net, x, y, steps: int = 300, lr: float = 0.01, seed: int = 0):
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    inputs, labels = torch.as_tensor(x), torch.as_tensor(y)
    net.train()
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(inputs), labels).backward()
        optimiser.step()
    return net.eval()


def table_net(x, y, seed: int = 0):
    torch.manual_seed(seed)
    mean, std = tuple(x.mean(0).tolist()), tuple(x.std(0).tolist())
    fill = (0.0,) * x.shape[1]
    data = DataSpec(
        "tabular", (x.shape[1],), 2, feature_mean=mean, feature_std=std, feature_fill=fill
    )
    return trained(build_net(NetSpec.of("mlp", data, dropout=0.0)), x, y)


@pytest.fixture(scope="module")
def table():
    x, y = planted_table(2000)
    net = table_net(x[:1500], y[:1500])
    view = TableView(ENCODING, x[:1500].mean(0))
    return net, view, x[1500:], y[1500:]


def ranking(scores: np.ndarray) -> list[int]:
    return list(np.argsort(-np.abs(scores).mean(0)))


def test_integrated_gradients_are_complete_within_5_percent_on_95_percent_of_inputs(table):
    net, view, x, _ = table
    explainer = for_network(net, view, steps=DEFAULT_STEPS)
    targets = net(torch.as_tensor(x)).argmax(1).numpy()
    found, _ = explainer.attribute(x, targets)
    assert found.error.shape == (len(x),)
    assert np.mean(found.error <= 0.05) >= 0.95, np.quantile(found.error, [0.5, 0.95])
    assert set(found.steps) <= {32, 64, 128, 256} and np.median(found.steps) <= 64
    # the check can fail: two steps of the path do not add up
    coarse, _ = for_network(net, view, steps=2, max_steps=2).attribute(x, targets)
    assert np.mean(coarse.error <= 0.05) < 0.95


def test_the_planted_informative_column_ranks_first_and_the_noise_column_near_the_bottom(table):
    net, view, x, y = table
    targets = net(torch.as_tensor(x)).argmax(1).numpy()
    scores = view.by_column(for_network(net, view).attribute(x, targets)[0].scores)
    order = ranking(scores)
    assert view.columns[order[0]] == "signal"
    assert view.columns[order[-1]] == "noise", order
    from sklearn.ensemble import HistGradientBoostingClassifier

    trees = HistGradientBoostingClassifier(random_state=0).fit(*planted_table(1500, seed=1))
    shap_scores = view.by_column(for_baseline("trees", trees, view).attribute(x, y)[0].scores)
    shap_order = ranking(shap_scores)
    assert view.columns[shap_order[0]] == "signal"
    assert view.columns[shap_order[-1]] == "noise", shap_order


def test_a_randomised_model_explains_otherwise_adebayo_model_randomisation(table):
    """Adebayo et al. (2018): attributions that survive randomising the weights explain the
    input, not the model. The trained and the re-initialised net must disagree."""
    net, view, x, _ = table
    targets = net(torch.as_tensor(x)).argmax(1).numpy()
    mine = for_network(net, view).attribute(x, targets)[0].scores
    randomised = for_network(randomised_copy(net), view).attribute(x, targets)[0].scores
    rho = [spearmanr(a, b).statistic for a, b in zip(mine, randomised, strict=True)]
    assert np.nanmedian(rho) < 0.5, np.nanmedian(rho)
    # the measure can fail: the trained net's attributions agree with themselves at another
    # step count (what a method blind to the weights would show against the random net)
    again = for_network(net, view, steps=64).attribute(x, targets)[0].scores
    rho = [spearmanr(a, b).statistic for a, b in zip(mine, again, strict=True)]
    assert np.nanmedian(rho) > 0.95


def randomised_copy(net):
    """``net`` with every layer's weights drawn afresh (Adebayo et al.'s full randomisation;
    its input statistics, which are not learnt, kept)."""
    import copy

    torch.manual_seed(7)
    fresh = copy.deepcopy(net)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh.eval()


def test_table_answers_sum_one_hot_columns_back_into_their_source_column(table):
    net, view, x, _ = table
    found, _ = for_network(net, view).attribute(x[:3], [1, 1, 1])
    answers = view.answer(found.scores, [{"signal": 1.0}] * 3)
    assert [a["column"] for a in answers[0]][:1] == ["signal"]
    assert sorted(a["column"] for a in answers[0]) == sorted([*COLUMNS, "colour"])
    colour = next(a for a in answers[0] if a["column"] == "colour")["attribution"]
    assert colour == pytest.approx(found.scores[0, 4:].sum(), abs=1e-5)
    assert answers[0][0]["value"] == 1.0


def test_a_gap_is_explained_as_the_net_fills_it(table):
    net, view, x, _ = table
    row = x[:1].copy()
    row[0, 1] = np.nan  # the noise column, filled with 0.0 as the net fills it
    explainer = for_network(net, view)
    found, _ = explainer.attribute(row, [1])
    assert np.isfinite(found.scores).all()


def test_image_maps_are_a_coarse_grid_and_pass_the_randomisation_test():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.images.astype(np.float32), digits.target
    data = DataSpec("image", (8, 8), 10, pixel_max=16.0)
    torch.manual_seed(0)
    net = trained(build_net(NetSpec.of("cnn", data, dropout=0.0)), x[:1200], y[:1200], steps=150)
    view = ImageView((8, 8))
    explainer = for_network(net, view)
    test = x[1200:1300]
    targets = net(torch.as_tensor(test)).argmax(1).numpy()
    found, _ = explainer.attribute(test, targets)
    assert np.mean(found.error <= 0.05) >= 0.95, np.quantile(found.error, [0.5, 0.95])
    answers, completeness = explainer.explain(test[:2], targets[:2])
    assert np.asarray(answers[0]["grid"]).shape == (8, 8) and answers[0]["cell"] == [1, 1]
    assert completeness[0]["error"] <= 0.05
    randomised = for_network(randomised_copy(net), view).attribute(test, targets)[0].scores
    rho = [spearmanr(a.ravel(), b.ravel()).statistic
           for a, b in zip(found.scores, randomised, strict=True)]  # fmt: skip
    assert np.nanmedian(rho) < 0.5, np.nanmedian(rho)
    assert ImageView((28, 28)).grid(np.ones((1, 28, 28))).shape == (1, 7, 7)  # 4x4-pixel cells


@pytest.fixture(scope="module")
def texts():
    from components.core.kinds.tokenizer import encode, train_tokenizer

    good = ["what a wonderful film", "wonderful acting and a lovely story", "lovely, truly"]
    bad = ["an awful boring film", "boring and awful acting", "truly awful"]
    samples = (good + bad) * 20
    labels = np.asarray(([1] * 3 + [0] * 3) * 20)
    tokenizer = train_tokenizer(samples, vocab_size=200, min_frequency=1)
    ids, _ = encode(tokenizer, samples, 12)
    return tokenizer, samples, ids.astype(np.int64), labels


def test_text_scores_run_through_the_embedding_and_merge_pieces_into_words(texts):
    tokenizer, samples, ids, labels = texts
    data = DataSpec("text", (12,), 2, vocab_size=tokenizer.get_vocab_size())
    torch.manual_seed(0)
    spec = NetSpec.of("transformer", data, dropout=0.0, width=16, depth=1, heads=2)
    net = trained(build_net(spec), ids, labels, steps=120)
    view = TextView(tokenizer, 12)
    explainer = for_network(net, view)
    answers, completeness = explainer.explain(["a wonderful, lovely film!"], [1])
    words = [w for w, _ in answers[0]]
    assert words == ["a", "wonderful", ",", "lovely", "film", "!"]
    scores = dict(answers[0])
    assert scores["wonderful"] > 0 and scores["wonderful"] > scores["film"]
    assert completeness[0]["error"] <= 0.05
    found, _ = explainer.attribute(["an awful film"] * 2, [0, 1])
    assert found.scores[0].sum() > 0 > found.scores[1].sum()  # toward "bad", away from "good"
    assert (found.error <= 0.05).all()


def test_a_word_cut_into_pieces_comes_back_whole(texts):
    tokenizer, *_ = texts
    view = TextView(tokenizer, 12)
    ids, found = view.encoded(["unwonderfully"])
    pieces = (ids[0] > 4).sum()
    assert pieces > 1  # the tokenizer cut it
    words = view.words("unwonderfully", found[0], np.ones(ids.shape[1]))
    assert words == [("unwonderfully", float(pieces))]


def test_tfidf_scores_add_up_to_its_decision_function(texts):
    from components.train.baselines.tfidf import id_words, text_pipeline

    tokenizer, samples, ids, labels = texts
    model = text_pipeline(0, id_words).fit(ids, labels)
    view = TextView(tokenizer, 12)
    explainer = for_baseline("tfidf", model, view)
    x, _ = view.encoded(samples[:6])
    found, _ = explainer.attribute(samples[:6], np.ones(6, np.int64))
    decision = model.decision_function(x) - model[-1].intercept_[0]
    assert found.scores.sum(1) == pytest.approx(decision, abs=1e-6)
    answers, completeness = explainer.explain(["a wonderful film"], [1])
    assert dict(answers[0])["wonderful"] > 0 and completeness == [None]


def test_the_linear_models_terms_add_up_to_its_decision_and_rank_the_planted_column_first(table):
    """Exact by construction: for logistic regression the terms toward class 1 sum to its
    decision function less the intercept (the mean row's); toward class 0, to minus that."""
    from components.core.tasks import CLASSIFICATION, REGRESSION
    from components.train.baselines import BASELINES

    _, view, x, y = table
    train_x, train_y = planted_table(1500, seed=1)
    model = BASELINES["linear"].make(0, CLASSIFICATION, {}).fit(train_x, train_y)
    explainer = for_baseline("linear", model, view)
    found = explainer.attribute(x, y)[0]
    decision = model.decision_function(x) - model[-1].intercept_[0]
    np.testing.assert_allclose(found.scores.sum(1), np.where(y == 1, decision, -decision),
                               atol=1e-8)  # fmt: skip
    order = ranking(view.by_column(found.scores))
    assert view.columns[order[0]] == "signal" and view.columns[order[-1]] == "noise", order
    # a regression's ridge, toward its value: the terms add up to the value less the mean's
    value = 2.0 * train_x[:, 0] + 0.5 * train_x[:, 2]
    ridge = BASELINES["linear"].make(0, REGRESSION, {}).fit(train_x, value)
    terms = for_baseline("linear", ridge, view).attribute(x, np.zeros(len(x)))[0].scores
    np.testing.assert_allclose(terms.sum(1), ridge.predict(x) - ridge[-1].intercept_, atol=1e-8)


def test_shap_of_regression_trees_adds_up_to_the_value_less_the_average(table):
    from sklearn.ensemble import HistGradientBoostingRegressor

    _, view, x, _ = table
    train_x, _ = planted_table(1500, seed=1)
    trees = HistGradientBoostingRegressor(random_state=0).fit(train_x, 3.0 * train_x[:, 0])
    explainer = for_baseline("trees", trees, view)
    scores = explainer.attribute(x, np.zeros(len(x)))[0].scores
    average = explainer.attributor.explainer.expected_value
    np.testing.assert_allclose(scores.sum(1) + average, trees.predict(x), atol=1e-4)
    assert view.columns[ranking(view.by_column(scores))[0]] == "signal"


def test_a_regression_networks_value_is_explained_completely_in_the_labels_units(table):
    """Integrated Gradients of the value itself (no log-softmax), through the last layer that
    turns the standardised target back into the label's units."""
    _, view, x, _ = table
    train_x, _ = planted_table(1500, seed=1)
    value = 40.0 * train_x[:, 0] + 10.0 * train_x[:, 2] ** 2 + 100.0
    mean, std = tuple(train_x.mean(0).tolist()), tuple(train_x.std(0).tolist())
    data = DataSpec("tabular", (train_x.shape[1],), 1, feature_mean=mean, feature_std=std,
                    target_shift=float(value.mean()), target_scale=float(value.std()))  # fmt: skip
    torch.manual_seed(0)
    net = build_net(NetSpec.of("mlp", data, dropout=0.0))
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    inputs, wanted = torch.as_tensor(train_x), torch.as_tensor(value, dtype=torch.float32)
    for _ in range(300):
        optimiser.zero_grad()
        scaled = net.target.scaled
        torch.nn.functional.mse_loss(scaled(net(inputs)[:, 0]), scaled(wanted)).backward()
        optimiser.step()
    net.eval()
    found = for_network(net, view).attribute(x, np.zeros(len(x)))[0]
    assert (found.error <= 0.05).mean() >= 0.95
    with torch.no_grad():
        answered = net(torch.as_tensor(x))[:, 0].numpy()
        at_mean = net(torch.as_tensor(view.baseline(x[:1])))[0, 0].item()
    np.testing.assert_allclose(found.change, answered - at_mean, rtol=1e-3, atol=0.05)
    assert view.columns[ranking(view.by_column(found.scores))[0]] == "signal"
