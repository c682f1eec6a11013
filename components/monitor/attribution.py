"""What drives the champion's answers in production, against what drove them on validation.

``leaning`` explains a sample of the logged traffic (its kept inputs) with the champion's
own explainer, measures each column's (word's, image cell's) share of the mean absolute
attribution, and compares it with the share in the champion's global explanation (its
run's ``explanations/``, from the evaluate stage). The features whose share moved most
are reported beside Evidently's data drift: "the model now leans on X".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core import inference_log

log = logging.getLogger(__name__)
SHOWN = 3  # the features named in the line, each way
MIN_MOVE = 0.02  # a change of share (two points of the total attribution) worth naming


@dataclass(frozen=True)
class Leaning:
    rows: int  # logged inputs explained
    moved: list[dict]  # {feature, reference, now, change}, the largest change first
    line: str  # "the model now leans on X (share a -> b); less on Y (...)"
    method: str


def champion_explanation(name: str) -> tuple[dict, object] | None:
    """The champion's global explanation (its run's ``explanations/``) and its version."""
    import mlflow  # heavy (~10 s): loaded by the check that needs it

    from components.evaluate.explain.trained import ARTIFACT_FOLDER

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(name, "champion")
    own = "network" if version.tags.get("mloop.kind", "trained") == "trained" else (
        version.tags.get("mloop.family", ""))  # fmt: skip
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path=f"{ARTIFACT_FOLDER}/{own}.json"
        )
    except mlflow.exceptions.MlflowException:
        return None
    return json.loads(Path(path).read_text()), version


def champion_explainer(params, ws, meta: dict, version):
    """The champion's explainer, as the evaluate stage made it for that version."""
    import mlflow  # heavy (~10 s): loaded by the check that needs it

    from components.compress.stage import champion_weights
    from components.evaluate.explain.explainer import for_baseline, for_network
    from components.evaluate.explain.trained import data_view, sklearn_model

    tokenizer = None
    if meta.get("text"):  # the champion's own tokenizer, versioned with its run
        from components.core.kinds.tokenizer import ARTIFACT_FOLDER, FILE
        from components.core.kinds.tokenizer import load as load_tokenizer

        found = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path=f"{ARTIFACT_FOLDER}/{FILE}"
        )
        tokenizer = load_tokenizer(Path(found))
    if version.tags.get("mloop.kind") == "baseline":
        model = sklearn_model(f"models:/{params.registry.model_name}/{version.version}")
        return for_baseline(version.tags["mloop.family"], model, data_view(ws.prepared, meta,
                                                                           tokenizer))  # fmt: skip
    from components.train.models import load_net  # torch: where a net is explained

    net, spec = load_net(champion_weights(params.registry.model_name, version.version))
    view = data_view(ws.prepared, meta, tokenizer, spec)
    return for_network(net, view, params.explain.steps, params.explain.max_steps)


def logged_inputs(path: Path, ids: list[int], meta: dict) -> tuple[list[int], object]:
    """The kept inputs of the log's rows ``ids`` (texts, or arrays of the model's input
    shape), and the ids they are of: rows that kept none are left out."""
    blobs = inference_log.inputs(path, ids)
    if meta.get("text"):
        kept = [i for i in ids if blobs.get(i)]
        return kept, [bytes(blobs[i]).decode("utf-8", "replace") for i in kept]
    shape = tuple(meta["input_shape"])
    size = int(np.prod(shape)) * 4  # another model's inputs (another size): not comparable
    kept = [i for i in ids if blobs.get(i) and len(blobs[i]) == size]
    x = np.frombuffer(b"".join(blobs[i] for i in kept), np.float32)
    return kept, x.reshape(len(kept), *shape)


def leaning(params, ws, meta: dict, log_path: Path, table) -> Leaning | str:
    """The shift in what drives the champion's answers on the logged rows ``table`` (a
    sample of ``explain.sample``; each toward the class it was answered), or why it was
    not measured."""
    from components.evaluate.explain.summary import share_of, shares

    found = champion_explanation(params.registry.model_name)
    if found is None:
        return "attributions not compared: the champion's run has no explanations/"
    reference, version = found
    if "skipped" in reference:
        return f"attributions not compared: {reference['skipped']}"
    rows = table if len(table) <= params.explain.sample else table.sample(
        params.explain.sample, random_state=params.seed)  # fmt: skip
    ids, inputs = logged_inputs(log_path, sorted(rows["id"].tolist()), meta)
    if not len(ids):
        return "attributions not compared: the log kept no inputs (MLOOP_LOG_INPUTS)"
    if meta["classes"]:
        index = {str(c): i for i, c in enumerate(meta["classes"])}
        answered = rows.set_index("id").loc[ids, "prediction"].astype(str)
        if not answered.isin(list(index)).all():
            return "attributions not compared: the log holds answers of other classes"
        targets = answered.map(index).to_numpy(np.int64)
    else:  # a regression: toward its one value
        targets = np.zeros(len(ids), np.int64)
    explainer = champion_explainer(params, ws, meta, version)
    x, _ = explainer.model_inputs(inputs)
    scores = explainer.attributor.explain(x, targets).scores
    now, before = share_of(explainer.view, x, scores), shares(reference)
    moved = sorted(({"feature": k, "reference": before.get(k, 0.0), "now": now.get(k, 0.0),
                     "change": now.get(k, 0.0) - before.get(k, 0.0)}
                    for k in set(now) | set(before)), key=lambda m: -abs(m["change"]))  # fmt: skip
    return Leaning(len(ids), moved[:10], line_of(moved), explainer.method)


def line_of(moved: list[dict]) -> str:
    """What the largest moves say: more on the features whose share rose by ``MIN_MOVE``
    or more, less on those whose share fell as much."""
    up = sorted((m for m in moved if m["change"] >= MIN_MOVE), key=lambda m: -m["change"])
    down = sorted((m for m in moved if m["change"] <= -MIN_MOVE), key=lambda m: m["change"])

    def named(found: list[dict]) -> str:
        return ", ".join(f"{m['feature']} (share {m['reference']:.2f} -> {m['now']:.2f})"
                         for m in found[:SHOWN])  # fmt: skip

    parts = [f"the model now leans on {named(up)}"] if up else []
    parts += [f"less on {named(down)}"] if down else []
    if parts:
        return "; ".join(parts)
    largest = max((abs(m["change"]) for m in moved), default=0.0)
    return f"what drives the answers did not move (largest change of share {largest:.3f})"
