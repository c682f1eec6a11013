"""The model a user would pick instead of the network, trained beside it in every run.

For tables that is gradient-boosted trees: scikit-learn's
``HistGradientBoostingClassifier`` with its default settings, fitted on the same
prepared training split as the network (a numeric gap stays NaN: the trees route it
natively; categories arrive one-hot). It is its own MLflow run (``run_name``
``baseline-trees``, tag ``mloop.kind: baseline``) and an MLflow sklearn model whose
pyfunc answers class probabilities, so the gate, the registry and the Bento treat it
like any challenger. Image data has no baseline (``train.baseline: auto``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.paths import Workspace
from components.core.records import read_json, write_json
from components.prepare.splits import load_meta, load_split

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import Params

log = logging.getLogger(__name__)

TREES = "trees"
TREE_NODES = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


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


def baseline_kind(params: Params, meta: dict) -> str | None:
    """Which baseline this data gets: trees for tables (``auto``), none for images."""
    choice = params.train.baseline
    if choice == "none":
        return None
    if meta["kind"] != "tabular":
        if choice == TREES:
            raise ValueError("train.baseline: trees needs table data; use auto or none")
        return None
    return TREES


def text_pipeline(seed: int):
    """The model a user would pick for texts (issue 20, part 4; not yet in the loop): word
    1-2-gram TF-IDF (sublinear term frequencies) and logistic regression, as scikit-learn
    gives them; it takes raw texts and answers class probabilities."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(C=10.0, max_iter=2000, random_state=seed),
    )


def baseline_record(ws: Workspace) -> Path:
    return ws.models / "baseline.json"


def train_baseline(params: Params, ws: Workspace) -> BaselineResult | None:
    """Fit and track this data's baseline; the record says so when the data has none."""
    import pickle

    import mlflow  # heavy (~10 s): only the train stage of table data gets here
    from sklearn.ensemble import HistGradientBoostingClassifier

    from components.core import tracking

    meta = load_meta(ws.prepared)
    record = baseline_record(ws)
    kind = baseline_kind(params, meta)
    if kind is None:
        write_json(record, {"kind": None})  # the stage's output exists either way (DVC)
        return None
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    model = HistGradientBoostingClassifier(random_state=params.seed)
    log.info(f"training the baseline ({kind}: gradient-boosted trees) on {len(train)} rows")
    with tracking.start_run(
        ws,
        experiment=params.data.name,
        run_name=f"baseline-{kind}",
        tags={**tracking.lineage_tags(ws, params, meta), "mloop.kind": "baseline"},
    ) as run:
        start = time.perf_counter()
        model.fit(train.x, train.y)
        seconds = time.perf_counter() - start
        val_accuracy = float(np.mean(model.predict(val.x) == val.y))
        run.log_params({f"trees.{k}": v for k, v in model.get_params().items()})
        run.log_metrics({
            "val_accuracy": val_accuracy, "train_seconds": seconds,
            "trees.iterations": float(model.n_iter_),
        })  # fmt: skip
        example = np.ascontiguousarray(val.x[:4], dtype=np.float32)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=example,
            signature=mlflow.models.infer_signature(example, model.predict_proba(example)),
            pyfunc_predict_fn="predict_proba",
            pip_requirements=tracking.pinned(("scikit-learn", "mlflow", "numpy", "skops")),
            # skops (MLflow's default, no pickle) trusts no tree nodes unless told: these were
            # fitted just above and load only from this run's store.
            skops_trusted_types=[TREE_NODES],
        )
    result = BaselineResult(
        kind=kind,
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
