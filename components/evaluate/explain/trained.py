"""The evaluate stage's explanations: the trained network's and each baseline's, over the
validation split, written to ``reports/explanations.json`` and, per model, its part and
its picture in ``reports/explanations/`` (``network.json``, ``network.png``, ``trees.*``),
logged to the model's MLflow run (``explanations/``); the register stage tags each
registered version with its headline (``summary.headline``)."""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import numpy as np

from components.core.kinds import kind as data_kind
from components.core.records import read_json, write_json
from components.core.splits import load_split
from components.evaluate.explain.explainer import for_baseline, for_network
from components.evaluate.explain.summary import global_explanation, headline
from components.evaluate.explain.views import view_of

log = logging.getLogger(__name__)
FILE = "explanations.json"
ARTIFACT_FOLDER = "explanations"


def data_view(prepared: Path, meta: dict, tokenizer=None, spec=None):
    """The view of the prepared data set in ``prepared`` (its ``meta.json``: ``meta``) for
    a network of ``spec`` (its baseline row: the mean it learnt from) or a baseline (None)."""
    from components.core.kinds.tokenizer import load as load_tokenizer

    kind = data_kind(meta["kind"])
    if kind.tokenized and tokenizer is None:
        tokenizer = load_tokenizer(Path(prepared) / meta["text"]["tokenizer"])
    return view_of(kind, meta, spec.data.feature_mean if spec else None, tokenizer)


def sklearn_model(model_uri: str):
    """A registered baseline as the scikit-learn object it was fitted as."""
    import mlflow  # heavy (~10 s): only where a baseline is explained

    return mlflow.sklearn.load_model(model_uri)


def explain_models(params, ws, net, spec, meta: dict, baselines: list) -> dict:
    """The global explanation of the network (``net``, ``spec``) and of each of ``baselines``
    (the train stage's records), each under its name; a model that cannot be explained
    says why (``skipped``) and stops nothing."""
    from components.core.predict import torch_predictor

    cfg = params.explain
    view, plain = data_view(ws.prepared, meta, spec=spec), data_view(ws.prepared, meta)
    val = load_split(ws.prepared, "val")
    examples = None
    if data_kind(meta["kind"]).pixels and cfg.examples:
        examples = np.asarray(load_split(ws.prepared, "test").x[: cfg.examples])
    models = [("network", lambda: for_network(net, view, cfg.steps, cfg.max_steps),
               lambda: torch_predictor(net))]  # fmt: skip
    for baseline in baselines:
        model = sklearn_model(baseline.model_uri)
        models.append((baseline.kind, partial(for_baseline, baseline.kind, model, plain),
                       partial(probabilities_of, model)))  # fmt: skip
    out = {"kind": meta["kind"], "split": "val", "models": {}}
    for stale in ws.report(ARTIFACT_FOLDER).glob("*.*"):  # a model of an earlier run
        stale.unlink()
    for name, make, predictor in models:
        png = model_file(ws, name, "png")
        try:
            explainer = make()
        except ValueError as err:  # a network of yours with nothing to attribute through
            log.warning(f"[explain] {name}: not explained: {err}")
            out["models"][name] = {"skipped": str(err)}
            continue
        log.info(f"[explain] {name}: {explainer.method} on up to {cfg.sample} validation"
                 " samples ...")  # fmt: skip
        start = time.perf_counter()
        found = global_explanation(explainer, val.x, val.y, predictor(), meta["classes"],
                                   cfg.sample, params.seed, png, examples)  # fmt: skip
        found["seconds"] = round(time.perf_counter() - start, 2)
        log.info(f"[explain] {name}: {headline(found)} ({found['seconds']:.1f} s)")
        out["models"][name] = found
    write_json(ws.report(FILE), out)
    return out


def probabilities_of(model):
    """A scikit-learn model as a predictor (float32 inputs, as the service sends): a
    classifier's probabilities, a regressor's values (one column)."""
    if not hasattr(model, "predict_proba"):
        return lambda x: np.asarray(model.predict(np.asarray(x, np.float32)), np.float64).reshape(
            -1, 1)  # fmt: skip
    return lambda x: np.asarray(model.predict_proba(np.asarray(x, np.float32)), np.float64)


def model_file(ws, name: str, suffix: str) -> Path:
    """One model's explanation (json) or picture (png): ``reports/explanations/<name>.*``."""
    folder = ws.report(ARTIFACT_FOLDER)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.{suffix}"


def read_explanations(ws) -> dict:
    path = ws.report(FILE)
    return read_json(path, "evaluate") if path.is_file() else {"models": {}}
