"""The model a user would pick instead of the network, trained beside it in every run.

Each baseline is a plug-in (``components.train.baselines``: ``trees``, ``tfidf``), chosen
by ``train.baseline`` (``auto``: the data kind's own). For tables that is gradient-boosted
trees: scikit-learn's
``HistGradientBoostingClassifier`` with its default settings, fitted on the same
prepared training split as the network (a numeric gap stays NaN: the trees route it
natively; categories arrive one-hot). It is its own MLflow run (``run_name``
``baseline-trees``, tag ``mloop.kind: baseline``) and an MLflow sklearn model whose
pyfunc answers class probabilities, so the gate, the registry and the Bento treat it
like any challenger. For texts it is word-piece TF-IDF (1-2 grams, sublinear term
frequencies) and logistic regression (``baseline-tfidf``): it reads the token ids every
text model of the loop reads, as words, so the registry, the gate and the service treat
it as they treat the network. Image data has no baseline (``train.baseline: auto``).
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
from components.train.baselines import BASELINES, Baseline

# TF-IDF models registered before the baselines became plug-ins name their function here
from components.train.baselines.tfidf import id_words  # noqa: E402, F401

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import Params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineResult:
    kind: str  # "trees"
    run_id: str
    model_uri: str
    val_accuracy: float
    seconds: float
    size_bytes: int  # the pickled model

    def summary(self) -> str:
        return (
            f"baseline ({self.kind}): val accuracy {self.val_accuracy:.4f}"
            f" ({self.seconds:.1f}s); MLflow run {self.run_id}"
        )


def baseline_for(params: Params, meta: dict) -> Baseline | None:
    """This data's baseline: the data kind's own for ``auto`` (trees for tables, TF-IDF for
    texts, none for images), or the one ``train.baseline`` names, if it reads this kind."""
    choice, own = params.train.baseline, data_kind(meta["kind"]).baseline
    if choice == "none" or (choice == "auto" and own is None):
        return None
    baseline = BASELINES[own if choice == "auto" else choice]
    if meta["kind"] not in baseline.reads:
        raise ValueError(f"train.baseline: {choice} does not fit {meta['kind']} data; use auto"
                         f" or none")  # fmt: skip
    return baseline


def baseline_record(ws: Workspace) -> Path:
    return ws.models / "baseline.json"


def train_baseline(params: Params, ws: Workspace) -> BaselineResult | None:
    """Fit and track this data's baseline; the record says so when the data has none."""
    import pickle

    import mlflow  # heavy (~10 s): only the train stage of table data gets here

    from components.core import tracking

    meta = load_meta(ws.prepared)
    record = baseline_record(ws)
    baseline = baseline_for(params, meta)
    if baseline is None:
        write_json(record, {"kind": None})  # the stage's output exists either way (DVC)
        return None
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    model = baseline.make(params.seed)
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
        val_accuracy = float(np.mean(model.predict(val.x) == val.y))
        run.log_params(baseline.described(model))
        run.log_tokenizer(ws, meta)
        run.log_metrics({"val_accuracy": val_accuracy, "train_seconds": seconds,
                         **baseline.measured(model)})  # fmt: skip
        example = np.ascontiguousarray(val.x[:4], dtype=np.float32)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=example,
            signature=mlflow.models.infer_signature(example, model.predict_proba(example)),
            pyfunc_predict_fn="predict_proba",
            pip_requirements=tracking.pinned(("scikit-learn", "mlflow", "numpy", "skops")),
            # skops (MLflow's default, no pickle) trusts no tree nodes, and no function of
            # ours, unless told: these were fitted just above and load only from this store.
            skops_trusted_types=list(baseline.trusted),
        )
    result = BaselineResult(
        kind=baseline.name,
        run_id=run.run_id,
        model_uri=info.model_uri,
        val_accuracy=val_accuracy,
        seconds=seconds,
        size_bytes=len(pickle.dumps(model)),
    )
    write_json(record, result)
    return result


def read_baseline(ws: Workspace) -> BaselineResult | None:
    """The last train stage's baseline, or None when the data has none."""
    path = baseline_record(ws)
    fields = read_json(path, "train") if path.is_file() else {"kind": None}
    return BaselineResult(**fields) if fields["kind"] else None
