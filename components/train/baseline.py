"""The model a user would pick instead of the network, trained beside it in every run.

For tables that is gradient-boosted trees: scikit-learn's
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

from components.core.paths import Workspace
from components.core.records import read_json, write_json
from components.core.splits import load_meta, load_split

if TYPE_CHECKING:  # types only: the training path runs without pydantic
    from components.core.config import Params

log = logging.getLogger(__name__)

TREE_NODES = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
TREES, TFIDF = "trees", "tfidf"
TRUSTED = {TREES: [TREE_NODES], TFIDF: ["components.train.baseline.id_words"]}
FOR_KIND = {"tabular": TREES, "text": TFIDF}  # what train.baseline: auto gives each kind


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
    """Which baseline this data gets: trees for tables, TF-IDF for texts (``auto``), none
    for images."""
    choice, fits = params.train.baseline, FOR_KIND.get(meta["kind"])
    if choice == "none":
        return None
    if choice != "auto" and choice != fits:
        raise ValueError(f"train.baseline: {choice} does not fit {meta['kind']} data; use auto"
                         f" or none")  # fmt: skip
    return fits


def text_pipeline(seed: int, words=None):
    """The model a user would pick for texts: word 1-2-gram TF-IDF (sublinear term
    frequencies) and logistic regression, as scikit-learn gives them. It takes raw texts,
    or with ``words`` (``id_words``) token ids, and answers class probabilities."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    steps = [vectorizer, LogisticRegression(C=10.0, max_iter=2000, random_state=seed)]
    if words is not None:  # ids as words: every non-space run is a token, case kept
        vectorizer.set_params(token_pattern=r"\S+", lowercase=False)
        steps.insert(0, FunctionTransformer(words))
    return make_pipeline(*steps)


FIRST_WORD_ID = 5  # [PAD] [UNK] [CLS] [SEP] [MASK] are 0..4: only [UNK] stays a word


def id_words(ids) -> list[str]:
    """Token-id rows (N x L, padded with 0) as space-separated words for ``text_pipeline``:
    every id but padding and the [CLS], [SEP] and [MASK] markers."""
    rows = np.asarray(ids).astype(np.int64)
    return [" ".join(map(str, row[(row >= FIRST_WORD_ID) | (row == 1)])) for row in rows]


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
    choice = baseline_kind(params, meta)
    if choice is None:
        write_json(record, {"kind": None})  # the stage's output exists either way (DVC)
        return None
    train, val = load_split(ws.prepared, "train"), load_split(ws.prepared, "val")
    if choice == TREES:
        model, what = (
            HistGradientBoostingClassifier(random_state=params.seed),
            "gradient-boosted trees",
        )
    else:
        model, what = text_pipeline(params.seed, id_words), "TF-IDF + logistic regression"
    log.info(f"training the baseline ({choice}: {what}) on {len(train)} rows")
    with tracking.start_run(
        ws,
        experiment=params.data.name,
        run_name=f"baseline-{choice}",
        tags={**tracking.lineage_tags(ws, params, meta), "mloop.kind": "baseline"},
    ) as run:
        start = time.perf_counter()
        model.fit(train.x, train.y)
        seconds = time.perf_counter() - start
        val_accuracy = float(np.mean(model.predict(val.x) == val.y))
        run.log_params(described(model, choice))
        run.log_tokenizer(ws, meta)
        run.log_metrics({"val_accuracy": val_accuracy, "train_seconds": seconds})
        if choice == TREES:
            run.log_metrics({"trees.iterations": float(model.n_iter_)})
        else:
            run.log_metrics({"tfidf.terms": float(len(model[1].vocabulary_))})
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
            skops_trusted_types=TRUSTED[choice],
        )
    result = BaselineResult(
        kind=choice,
        run_id=run.run_id,
        model_uri=info.model_uri,
        val_accuracy=val_accuracy,
        seconds=seconds,
        size_bytes=len(pickle.dumps(model)),
    )
    write_json(record, result)
    return result


def described(model, choice: str) -> dict[str, object]:
    """The baseline's settings as MLflow params (``trees.*``, ``tfidf.*``)."""
    if choice == TREES:
        return {f"trees.{k}": v for k, v in model.get_params().items()}
    vectorizer, classifier = model[1], model[2]
    return {"tfidf.ngram_range": vectorizer.ngram_range, "tfidf.words": "token ids",
            "tfidf.sublinear_tf": vectorizer.sublinear_tf, "tfidf.C": classifier.C}  # fmt: skip


def read_baseline(ws: Workspace) -> BaselineResult | None:
    """The last train stage's baseline, or None when the data has none."""
    path = baseline_record(ws)
    fields = read_json(path, "train") if path.is_file() else {"kind": None}
    return BaselineResult(**fields) if fields["kind"] else None
