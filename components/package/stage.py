"""The ``package`` stage: a Bento built around the registered champion.

It serves ``champion-compressed`` when that alias holds the champion's own
compressed variant, the champion otherwise. That MLflow model is imported into the
BentoML store (``BENTOML_HOME``, the workspace's ``.mloop/bentoml`` by default)
and a Bento is built from ``components/service.py``. ``bentoml serve <tag>`` then
answers on port 3000.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from components.core.config import Params
from components.core.kinds import kind as data_kind
from components.core.kinds.sources import source_of
from components.core.kinds.tokenizer import ARTIFACT_FOLDER as TOKENIZER_FOLDER
from components.core.kinds.tokenizer import FILE as TOKENIZER
from components.core.paths import Workspace
from components.core.records import write_json
from components.core.splits import load_meta, pixel_scale
from components.core.tasks import task_of
from components.core.tracking import pinned
from components.evaluate.explain import served as explainer
from components.register.aliases import (
    CHAMPION,
    COMPRESSED,
    champion_version,
    compressed_version,
)

SERVICE = "components.package.service:Classifier"
PINNED = "components/package/bento_model.json"  # the model's tag, beside the service
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout: components/ is in it
# What the Bento's own environment needs to run the service (for `bentoml containerize`).
SERVING_PACKAGES = (
    "bentoml",
    "mlflow",
    "torch",
    "numpy",
    "pandas",
    "cloudpickle",
    "onnx",
    "onnxruntime",
    "pydantic-settings",
    "scikit-learn",  # a trees champion (the tables' baseline): MLflow's sklearn flavour ...
    "skops",  # ... stored with skops, not pickle
    "tokenizers",  # texts: /predict_text tokenizes with the model's own tokenizer
    "captum",  # /explain: Integrated Gradients of a network
    "shap",  # /explain: SHAP values of a trees champion
)


@dataclass(frozen=True)
class PackageResult:
    bento_tag: str
    model_tag: str
    model_name: str
    model_version: str
    alias: str
    record: Path

    def summary(self) -> str:
        return (
            f"Bento {self.bento_tag} serving {self.model_name} version {self.model_version}"
            f" ({self.alias})"
        )


def bento_model_name(registered_name: str) -> str:
    return registered_name.lower().replace(" ", "-")


def imported_model(name: str, version: str, run_id: str):
    """The BentoML store's copy of a registered version, if an earlier run imported it.

    Matched on the MLflow run too: one BentoML store can serve several registries
    (workspaces), each with its own version 1.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        stored = bentoml.models.list(bento_model_name(name))
    except NotFound:
        return None
    want = {"model_name": name, "model_version": version, "run_id": run_id}
    return next(
        (m for m in stored if all(m.info.labels.get(k) == v for k, v in want.items())), None
    )


def image_files(params: Params) -> dict | None:
    """Size and colour mode of the training images, when they came from files."""
    images = params.data.images
    if source_of(params.data).batch != "folder" or images is None:
        return None
    return {"size": list(images.size), "color": images.color}


def text_limits(params: Params, meta: dict) -> dict | None:
    """What /predict_text takes: the longest text (the token length the model reads comes
    with its tokenizer)."""
    return {"max_chars": params.gate.max_text_chars} if data_kind(meta["kind"]).tokenized else None


def label_range(params: Params, ws: Workspace, meta: dict) -> list[float] | None:
    """What /feedback takes as a regression's label: the data gate's range for it (the
    reference profile's, widened by validate.range_margin, or validate.ranges)."""
    from components.core.kinds.table_checks import label_bounds
    from components.validate.profile import profile_path

    if not task_of(meta).outputs_values:
        return None
    profile = profile_path(ws, params)
    reference = json.loads(profile.read_text()) if profile.is_file() else None
    bounds = label_bounds((meta.get("schema") or {}).get("label"), params.gate, reference)
    return None if bounds is None else [float(b) for b in bounds]


def add_explainer(params: Params, client, folder: str, name: str, champion: str) -> None:
    """The champion's explainer beside the served model (``explain.served``): a network's
    trained weights (a compressed variant is explained by the network it was made from),
    or the baseline's name."""
    from components.compress.stage import champion_weights

    tags = client.get_model_version(name, champion).tags
    is_baseline = tags.get("mloop.kind") == "baseline"
    weights = None if is_baseline else champion_weights(name, champion)
    explainer.write(Path(folder), weights, tags.get("mloop.family") if is_baseline else None,
                    params.explain.steps, params.explain.max_steps, champion)  # fmt: skip
    if weights is not None:  # what the network's family builds from: in the Bento too
        from components.train.models import carry

        carry(weights, Path(folder) / explainer.FOLDER)


def package_stage(params: Params, ws: Workspace) -> PackageResult:
    import bentoml
    import mlflow

    name = params.registry.model_name
    client = mlflow.MlflowClient()
    champion = champion_version(client, name)
    compressed = compressed_version(client, name)  # the champion's own, or none
    version, alias = (compressed, COMPRESSED) if compressed else (champion, CHAMPION)
    meta = load_meta(ws.prepared)
    run_id = client.get_model_version(name, str(version)).run_id
    labels = {"model_name": name, "model_version": str(version), "alias": alias, "run_id": run_id}
    model = imported_model(name, str(version), run_id) or bentoml.mlflow.import_model(
        bento_model_name(name),
        f"models:/{name}/{version}",
        labels=labels,
        metadata={  # what the service checks requests against; BentoML takes no None
            key: value
            for key, value in {
                "kind": meta["kind"],
                "task": task_of(meta).name,
                "input_shape": list(meta["input_shape"]),
                "pixel_max": pixel_scale(params, meta),
                "classes": meta["classes"],
                "schema": meta["schema"],
                "data_version": str(meta["version"]),
                # what /predict_files decodes uploads to: the training folder's settings
                "image_files": image_files(params),
                "text": text_limits(params, meta),
                "label_range": label_range(params, ws, meta),  # a regression's /feedback
            }.items()
            if value is not None
        },
    )
    model = bentoml.models.get(model.tag)  # the store's copy (import returns a staging one)
    if data_kind(meta["kind"]).tokenized and not Path(model.path_of(TOKENIZER)).is_file():
        # the tokenizer the model was trained with, versioned with its run, beside it
        try:
            tokenizer = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{TOKENIZER_FOLDER}/{TOKENIZER}"
            )
        except mlflow.exceptions.MlflowException:
            bentoml.models.delete(model.tag)
            raise FileNotFoundError(
                f"{name} version {version}: its run {run_id} logged no {TOKENIZER_FOLDER}/"
                f"{TOKENIZER}; a text model cannot be served without the tokenizer it reads with"
            ) from None
        shutil.copy(tokenizer, model.path_of(TOKENIZER))
    if not explainer.carried(model.path):
        add_explainer(params, client, model.path, name, str(champion))
    packages = pinned(SERVING_PACKAGES)
    with tempfile.TemporaryDirectory() as stage:
        # Build from a staged copy of the code with the model's tag pinned beside the
        # service, so the Bento serves this model wherever it runs.
        shutil.copytree(
            SOURCE_ROOT / "components",
            Path(stage) / "components",
            ignore=shutil.ignore_patterns("__pycache__", "bento_model.json"),
        )
        (Path(stage) / PINNED).write_text(json.dumps({"tag": str(model.tag)}))
        os.environ["MLOOP_BENTO_MODEL"] = str(model.tag)  # the build imports the service here
        try:
            bento = bentoml.bentos.build(
                SERVICE,
                name=params.package.service_name or params.registry.model_name,
                labels={"model_name": name, "model_version": str(version), "alias": alias},
                description=f"{name} version {version} ({alias}), built by mloop",
                include=["components/**/*.py", PINNED],
                python={"packages": packages, "lock_packages": False},
                models=[str(model.tag)],
                build_ctx=stage,
            )
        finally:
            os.environ.pop("MLOOP_BENTO_MODEL", None)
    result = PackageResult(
        bento_tag=str(bento.tag),
        model_tag=str(model.tag),
        model_name=name,
        model_version=str(version),
        alias=alias,
        record=ws.report("bento.json"),
    )
    write_json(result.record, result)
    return result
