"""The model a service worker answers with, and how it changes without a dropped request.

``ServedModel`` is everything a request needs of one model version: its predictor,
its names, and its inputs' rules. A worker holds one and each request takes it once at
its start, so a request in flight finishes on the model it started with. ``mloop serve``
(``serve/supervisor.py``) names the model to serve in a pointer file
(``MLOOP_MODEL_POINTER``); each worker's ``Follower`` thread reads it every
``POLL_S``, loads a new version from the BentoML store beside the one serving, swaps it
in (one attribute: atomic), and acknowledges (``<pointer>.ack/<pid>``), as Triton and
TF Serving poll their model repositories. A model that cannot be loaded leaves the one
serving in place, and says why in the acknowledgement.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from components.core.kinds import kind as data_kind
from components.core.kinds.encoding import TableEncoding
from components.core.kinds.tokenizer import FILE as TOKENIZER
from components.core.kinds.tokenizer import load as load_tokenizer
from components.core.kinds.tokenizer import saved_length
from components.core.predict import served
from components.core.tasks import Task, task_of
from components.evaluate.explain.served import ServedExplainer, carried
from components.package.inputs import body_limit

log = logging.getLogger(__name__)
POLL_S = 0.2  # how often a worker reads the pointer (a stat and a small read)


@dataclass(frozen=True)
class ServedModel:
    tag: str
    predict_proba: Callable
    version: str
    model_name: str
    alias: str
    kind: str
    shape: tuple
    pixel_max: float
    classes: list
    encoding: TableEncoding | None  # tables: the encoder fitted in training
    image_files: dict | None  # size and colour of the training files
    text: dict | None  # texts: max_chars
    tokenizer: object | None  # texts: the model's own tokenizer
    max_length: int | None  # ...and the length it reads
    body_limit: int
    task: Task  # what its answers and production labels are
    any_length: bool = False  # token ids of any length (core.predict.served): cut the padding
    explainer: object | None = None  # explain.served.ServedExplainer: what /explain asks
    label_range: list | None = None  # a regression's: the labels /feedback takes


SERVED_METADATA = ("kind", "input_shape", "classes")  # what the package stage records


def load_served(model, ort_threads: int, max_file_bytes: int) -> ServedModel:
    """A BentoML model (the Bento's own, or one of the store) ready to answer."""
    info = model.info
    meta = dict(info.metadata)
    missing = [k for k in SERVED_METADATA if k not in meta]
    if missing:  # nothing is guessed: a model without them was not packaged by mloop
        raise ValueError(f"model {info.tag} carries no {', '.join(missing)} in its metadata:"
                         " package it with the package stage (mloop run, dvc repro)")  # fmt: skip
    kind = meta["kind"]
    tokenizer = max_length = None
    if data_kind(kind).tokenized:
        tokenizer = load_tokenizer(Path(model.path_of(TOKENIZER)))
        max_length = saved_length(tokenizer)
    predict_proba, any_length = served(model.path_of("mlflow_model"), ort_threads)
    explainer = None
    if carried(model.path):  # made on its first request (torch, Captum or SHAP load then)
        explainer = ServedExplainer(model.path, model.path_of("mlflow_model"), meta, tokenizer,
                                    ort_threads)  # fmt: skip
    return ServedModel(
        tag=str(info.tag),
        predict_proba=predict_proba,
        any_length=any_length,
        version=str(info.labels.get("model_version", "unknown")),
        model_name=str(info.labels.get("model_name", "unknown")),
        alias=str(info.labels.get("alias", "unknown")),
        kind=kind,
        shape=tuple(meta["input_shape"]),
        pixel_max=float(meta.get("pixel_max") or 1.0),  # images only: their pixel scale
        classes=list(meta["classes"]),
        encoding=TableEncoding.from_schema(meta["schema"]) if meta.get("schema") else None,
        image_files=meta.get("image_files"),
        text=meta.get("text"),
        tokenizer=tokenizer,
        max_length=max_length,
        body_limit=body_limit(meta, max_file_bytes),
        task=task_of(meta),  # a Bento from before tasks were recorded: classification
        explainer=explainer,
        label_range=meta.get("label_range"),
    )


# ---------------------------------------------------------------- the pointer


def write_pointer(path: Path, tag: str) -> None:
    """Name the model every worker should serve (written whole: a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_text(json.dumps({"model_tag": tag}) + "\n")
    os.replace(scratch, path)


def read_pointer(path: Path) -> str | None:
    try:
        return str(json.loads(Path(path).read_text())["model_tag"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ack_folder(pointer: Path) -> Path:
    return Path(pointer).with_name(Path(pointer).name + ".ack")


def acknowledged(pointer: Path) -> dict[int, dict]:
    """What each worker said it serves: ``{pid: {"model_tag": ..., "error": ...}}``, of
    live workers only."""
    out = {}
    folder = ack_folder(pointer)
    for file in folder.glob("*") if folder.is_dir() else ():
        try:
            pid, said = int(file.name), json.loads(file.read_text())
            os.kill(pid, 0)  # a worker that is gone says nothing any more
        except (ValueError, OSError):
            continue
        out[pid] = said
    return out


def _acknowledge(pointer: Path, tag: str, error: str | None = None) -> None:
    folder = ack_folder(pointer)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / f".{os.getpid()}"
    scratch.write_text(json.dumps({"model_tag": tag, "error": error}))
    os.replace(scratch, folder / str(os.getpid()))


def _warm() -> None:
    """Import what loading either format of model needs, once, in this thread: a worker
    serving ONNX would otherwise import MLflow and torch (seconds, under traffic) only when
    a network in torch format is swapped in."""
    try:
        import mlflow.pyfunc  # noqa: F401 (heavy: imported here, off the request path)
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401
    except ImportError:  # a service image without one of them serves the other format
        pass


def _warm_flavours() -> None:
    """In a thread of its own, beside the follower (which must not wait for it): the MLflow
    flavours a swap to a torch or scikit-learn model loads through. ``mlflow.pytorch`` brings
    Lightning, torchmetrics, transformers and SciPy: 25 s under 200 requests/s, measured when
    the explainer (which had imported them at a worker's start) moved to a process of its own
    and a promote under load waited for them."""
    try:
        import mlflow.pytorch  # noqa: F401
        import mlflow.sklearn  # noqa: F401
    except ImportError:
        pass


class Follower:
    """A worker's thread that serves what the pointer names (``on_change(new model)``)."""

    def __init__(self, pointer: Path, current: str, load: Callable[[str], ServedModel],
                 on_change: Callable[[ServedModel], None]) -> None:  # fmt: skip
        self.pointer, self.current = Path(pointer), current
        self.load, self.on_change = load, on_change
        _acknowledge(self.pointer, current)
        threading.Thread(target=_warm_flavours, daemon=True, name="mloop-warm-flavours").start()
        threading.Thread(target=self._follow, daemon=True, name="mloop-model-follower").start()

    def _follow(self) -> None:
        failed: str | None = None
        _warm()
        while True:
            time.sleep(POLL_S)
            wanted = read_pointer(self.pointer)
            if wanted is None or wanted in (self.current, failed):
                continue
            start = time.perf_counter()
            try:
                model = self.load(wanted)
            except Exception as err:  # noqa: BLE001 (any load fault keeps the old model)
                failed = wanted
                log.error(f"cannot load {wanted}: {type(err).__name__}: {err}; still serving"
                          f" {self.current}")  # fmt: skip
                _acknowledge(self.pointer, self.current, f"cannot load {wanted}: {err}")
                continue
            self.on_change(model)
            self.current, failed = wanted, None
            _acknowledge(self.pointer, wanted)
            log.info(f"now serving {wanted} (loaded in {time.perf_counter() - start:.1f} s)")
