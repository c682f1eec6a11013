"""The models a user would pick instead of the network, trained beside it in every run.

Each baseline is a plug-in (``components.train.baselines``: ``trees``, ``linear``,
``tfidf``), chosen by ``train.baseline`` (``auto``: the data kind's own). For tables those
are gradient-boosted trees (scikit-learn's ``HistGradientBoosting*`` with its defaults: a
numeric gap stays NaN, the trees route it natively; categories arrive one-hot) and a linear
model (logistic regression, or ridge for a regression, on the network's encoding). For
texts it is word-piece TF-IDF (1-2 grams, sublinear term frequencies) and logistic
regression, reading the token ids every text model of the loop reads, as words. Image
data has none.

Each is its own MLflow run (``run_name`` ``baseline-<name>``, tag ``mloop.kind:
baseline``) and an MLflow sklearn model whose pyfunc answers class probabilities (a
regression's: values), so the gate, the registry and the Bento treat it like any
challenger. ``models/baseline.json`` lists what the train stage fitted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.kinds import kind as data_kind
from components.core.paths import Workspace
from components.core.records import read_json, write_json
from components.core.splits import load_meta, load_split
from components.core.tasks import task_of
from components.core.tasks.regression import regression_scores
from components.train.baselines import BASELINES, Baseline

# TF-IDF models registered before the baselines became plug-ins name their function here
from components.train.baselines.tfidf import id_words  # noqa: E402, F401

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import Params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineResult:
    kind: str  # its name: "trees", "linear", "tfidf"
    run_id: str
    model_uri: str
    val_score: float  # its task's default metric on the validation split
    val_metric: str  # which: val accuracy, val RMSE
    seconds: float
    size_bytes: int  # the pickled model

    def summary(self) -> str:
        return (f"baseline ({self.kind}): {self.val_metric} {self.val_score:.4f}"
                f" ({self.seconds:.1f}s); MLflow run {self.run_id}")  # fmt: skip


def baselines_for(params: Params, meta: dict) -> list[Baseline]:
    """This data's baselines: the data kind's own for ``auto`` (trees and linear for
    tables, TF-IDF for texts, none for images), or those ``train.baseline`` lists, each of
    which must read this kind and learn this task."""
    choice = params.train.baseline
    if choice == "none":
        return []
    names = list(data_kind(meta["kind"]).baselines) if choice == "auto" else list(choice)
    task = task_of(meta)
    chosen = []
    for name in names:
        baseline = BASELINES[name]
        if meta["kind"] not in baseline.reads:
            raise ValueError(f"train.baseline: {name} does not fit {meta['kind']} data; use auto"
                             f" or none")  # fmt: skip
        if task.name not in baseline.tasks:
            raise ValueError(f"train.baseline: {name} does not learn a {task.name}; use auto")
        chosen.append(baseline)
    return chosen


def baseline_record(ws: Workspace) -> Path:
    return ws.models / "baseline.json"


def train_baselines(params: Params, ws: Workspace) -> list[BaselineResult]:
    """Fit and track this data's baselines; the record lists them (none: an empty list)."""
    meta = load_meta(ws.prepared)
    results = [fit_baseline(b, params, ws, meta) for b in baselines_for(params, meta)]
    write_json(baseline_record(ws), {"baselines": results})  # the stage's output either way
    return results


def fit_baseline(baseline: Baseline, params: Params, ws: Workspace, meta: dict) -> BaselineResult:
    import pickle

    import mlflow  # heavy (~10 s): only the train stage of table and text data gets here

    from components.core import tracking

    task = task_of(meta)
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    model = baseline.make(params.seed, task, meta)
    log.info(f"training the baseline ({baseline.name}: {baseline.what}) on {len(train)} rows")
    with tracking.start_run(
        ws,
        experiment=params.data.name,
        run_name=f"baseline-{baseline.name}",
        tags={**tracking.lineage_tags(ws, params, meta), "mloop.kind": "baseline"},
    ) as run:
        start = time.perf_counter()
        model.fit(train.x, train.y)
        seconds = time.perf_counter() - start
        answer = "predict" if task.outputs_values else "predict_proba"
        if task.outputs_values:  # the task's own metric on val: RMSE, or accuracy
            val_metric, val_score = "val_rmse", regression_scores(val.y, model.predict(val.x)).rmse
        else:
            val_metric, val_score = "val_accuracy", float(np.mean(model.predict(val.x) == val.y))
        run.log_params(baseline.described(model))
        run.log_tokenizer(ws, meta)
        run.log_metrics({val_metric: val_score, "train_seconds": seconds,
                         **baseline.measured(model)})  # fmt: skip
        example = np.ascontiguousarray(val.x[:4], dtype=np.float32)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=example,
            signature=mlflow.models.infer_signature(example, getattr(model, answer)(example)),
            pyfunc_predict_fn=answer,
            pip_requirements=tracking.pinned(("scikit-learn", "mlflow", "numpy", "skops")),
            # skops (MLflow's default, no pickle) trusts no tree nodes, and no function of
            # ours, unless told: these were fitted just above and load only from this store.
            skops_trusted_types=list(baseline.trusted),
        )
    return BaselineResult(
        kind=baseline.name, run_id=run.run_id, model_uri=info.model_uri, val_score=val_score,
        val_metric=val_metric.replace("_", " "), seconds=seconds,
        size_bytes=len(pickle.dumps(model)),
    )  # fmt: skip


def read_baselines(ws: Workspace) -> list[BaselineResult]:
    """The last train stage's baselines (none: an empty list). A record from before lists
    (one baseline, or ``{"kind": null}``) reads as the list it was."""
    path = baseline_record(ws)
    fields = read_json(path, "train") if path.is_file() else {"baselines": []}
    if "baselines" not in fields:  # one baseline, recorded before train.baseline was a list
        if not fields.get("kind"):
            return []
        accuracy = fields.pop("val_accuracy")
        fields = {"baselines": [{**fields, "val_score": accuracy, "val_metric": "val accuracy"}]}
    return [BaselineResult(**f) for f in fields["baselines"]]
