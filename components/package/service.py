"""The Bento service: classify images (POST /predict: pixel values; /predict_files: PNG or
JPEG files as multipart/form-data; /predict_base64: the files as base64 in JSON), table
rows (POST /predict_rows) or texts (POST /predict_text: tokenized here, with the
tokenizer the model was trained with, stored beside it).

Built by the ``package`` stage around the registered model it imported into
the BentoML store; ``bentoml serve`` of the Bento runs this file. Inputs are
checked here, against the model's metadata, so that a malformed request is
answered 400 with the reason, never 500. Every answered request gets an id and
is committed to the inference log (``MLOOP_INFERENCE_LOG``, a SQLite file;
``off`` disables it) before the answer leaves; POST /feedback attaches the true
labels to a logged request later. With ``MLOOP_API_TOKEN`` set, every endpoint
but the health probes wants ``Authorization: Bearer <token>`` and answers 401
without it (an empty token counts as not set); /metrics also takes
``MLOOP_METRICS_TOKEN``, a scrape credential. Bodies beyond ``MLOOP_MAX_BODY_BYTES``
(default: the largest legal batch) answer 413 before anything is parsed. A log
that cannot be opened or written makes the service not ready (/readyz 503) and
answers 503 with the reason: a prediction is never acknowledged unlogged.
BentoML serves /livez, /readyz and the Prometheus /metrics itself.

The request path is chosen from ``benchmarks/serving.py`` (figures in the README):
an ONNX model runs in ONNX Runtime directly, on ``MLOOP_ORT_THREADS`` threads;
the requests of one event-loop turn share one log commit (``GroupCommit``);
OpenTelemetry spans are off unless ``MLOOP_TRACING`` asks for them (with no exporter
configured they went nowhere and cost a fifth of the CPU); beyond
``MLOOP_MAX_IN_FLIGHT`` requests per worker the gate answers 503 with Retry-After.
There is no adaptive batching: the model takes about 0.02 ms per image, so batching
requests could save little, and it cost each request a hop to a second service
process (at 250 requests/s, 43 of 2,000 answers were 500 and p99 was 161 ms).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import sqlite3
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument, NotFound, ServiceUnavailable
from pydantic import Field

from components.core.credentials import labeller_tokens
from components.core.inference_log import (
    GroupCommit,
    InferenceLog,
    NullLog,
    Record,
    is_off,
    new_request_id,
)
from components.core.kinds.base import MAX_BATCH
from components.core.settings import settings
from components.package.explaining import Explaining
from components.package.http_gate import LABELLER_HEADER, RequestGate, ServiceState
from components.package.inputs import (
    EXAMPLE_INPUT,
    MAX_ID_CHARS,
    Answer,
    Conflict,
    Explained,
    Explanation,
    Labelled,
    Prediction,
    Value,
    decode_uploads,
    encode_rows,
    from_base64,
    text_inputs,
    to_batch,
    upload_pixels,
)
from components.package.metrics import install as install_bounded_metrics
from components.package.routes import ENDPOINTS
from components.package.served_model import Follower, ServedModel, load_served, read_pointer

# The package stage writes the model's tag beside this file in the Bento it builds.
_PINNED = Path(__file__).with_name("bento_model.json")
SETTINGS = settings()  # read once, when the server (or a build) imports the service
if not SETTINGS.bento_model and not _PINNED.is_file():
    raise RuntimeError(f"no model to serve: the package stage pins one in {_PINNED.name} beside"
                       " the service in the Bento it builds; else set MLOOP_BENTO_MODEL to a"
                       " BentoML model tag")  # fmt: skip
MODEL_TAG = SETTINGS.bento_model or json.loads(_PINNED.read_text())["tag"]
LOG_PATH = SETTINGS.inference_log or "inference.sqlite"
# Uploads that declare more pixels in all decode in a thread (a few small images decode
# faster than a hand-off to one); a small file can declare many pixels, so pixels decide.
UPLOAD_ON_LOOP_PIXELS = 256 * 256
# Without an exporter configured, BentoML's OpenTelemetry middleware makes spans that
# go nowhere: every path is excluded from it unless MLOOP_TRACING asks for spans.
TRACING = {} if SETTINGS.tracing else {"tracing": {"excluded_urls": ["."]}}
GATE = ServiceState()  # what this worker tells its gate: the model's body limit, the log's state


@bentoml.service(
    name="mloop_classifier",
    traffic={"timeout": 30},
    logging={"access": {"enabled": SETTINGS.access_log}},
    workers=SETTINGS.service_workers,  # benchmarks/serving.py
    **TRACING,
)
class Classifier:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        pointer = SETTINGS.model_pointer  # mloop serve: the model it names, followed
        wanted = read_pointer(pointer) if pointer else None
        self.m = self._load(wanted) if wanted else self._load_own()
        GATE.body_limit = self.m.body_limit
        if pointer:
            Follower(pointer, self.m.tag, self._load, self._swap)
        self.log: InferenceLog | NullLog | None = None
        self.writer: GroupCommit | NullLog | None = None
        self.log_error: str | None = None  # why the log cannot be written, while it cannot
        self._open_log()
        self.explaining = Explaining(SETTINGS, GATE)  # /explain's budget, queue and process
        if self.m.explainer is not None:  # made now, in the explain process: not by a request
            self.explaining.warm(self.m.explainer)
        # What start-up made (modules, the model, schemas) lives as long as the worker:
        # kept out of the garbage collector's full passes, which stalled a worker for
        # ~100 ms mid-load when they walked it all.
        gc.collect()
        gc.freeze()

    def _load_own(self) -> ServedModel:
        """The model the Bento was built around (the stored model, once running)."""
        return load_served(self.model_ref, SETTINGS.ort_threads, SETTINGS.max_file_bytes)

    def _load(self, tag: str) -> ServedModel:
        """A model version of the BentoML store (what ``mloop serve`` follows)."""
        if tag == str(self.model_ref.tag):
            return self._load_own()
        model = bentoml.models.get(tag)
        return load_served(model, SETTINGS.ort_threads, SETTINGS.max_file_bytes)

    def _swap(self, model: ServedModel) -> None:
        """Serve ``model`` from the next request on; requests under way keep theirs."""
        if model.explainer is not None:
            self.explaining.warm(model.explainer)
        GATE.body_limit = model.body_limit
        self.m = model

    def _open_log(self) -> InferenceLog | None:
        """The inference log, opened now if it could not be before (a fixed folder)."""
        if self.log is None and is_off(LOG_PATH):
            self.log = self.writer = NullLog()  # records nothing; a label finds no request
        if self.log is None:
            try:
                self.log = InferenceLog(LOG_PATH, keep_inputs=SETTINGS.log_inputs)
                self.writer = GroupCommit(self.log)
            except (OSError, sqlite3.Error) as err:
                self._unwritable(f"cannot open the inference log {LOG_PATH}: {err}")
        return self.log

    def _unwritable(self, reason: str | None) -> None:
        """Why the log cannot be written now (None: it can); the gate quotes it in 503s."""
        self.log_error = reason
        GATE.unavailable = reason and f"{reason}; nothing was answered"

    async def __is_ready__(self) -> bool:
        """/readyz: 503 while the inference log cannot be written (retried at each probe)."""
        if self.log is not None and self.log_error is None:
            return True
        try:
            await self._logged(lambda: asyncio.to_thread(self.log.probe))
        except ServiceUnavailable:
            return False
        return True

    async def _logged(self, write):
        """Await a log write (``write()`` makes the awaitable once the log is open); a
        failure makes the service not ready and answers 503."""
        if self._open_log() is None:
            raise ServiceUnavailable(GATE.unavailable)
        try:
            result = await write()
        except sqlite3.Error as err:
            self._unwritable(f"cannot write the inference log {LOG_PATH}: {err}")
            raise ServiceUnavailable(GATE.unavailable) from None
        if self.log_error is not None:
            self._unwritable(None)
        return result

    def _only(self, kind: str) -> ServedModel:
        """The model this request is answered by (taken once: a swap does not reach a
        request under way); 400 naming the right endpoint unless it reads ``kind`` data."""
        m = self.m
        if m.kind != kind:
            raise InvalidArgument(f"this model reads {m.kind} data: POST it to"
                                  f" {ENDPOINTS.get(m.kind, '/predict')}")  # fmt: skip
        return m

    async def _answer(self, m: ServedModel, x: np.ndarray, logged: tuple = (),
                      proba: np.ndarray | None = None) -> Answer:  # fmt: skip
        """Predict (unless ``proba`` was), log (``logged``: a text request's statistics and
        texts), answer."""
        proba = m.predict_proba(x) if proba is None else proba
        request_id = new_request_id()
        answers, confidence = m.task.answers(proba, m.classes)  # classes, or values
        record = Record(request_id, m.version, x, answers, confidence, *logged)
        await self._logged(lambda: self.writer.append(record))  # committed before the answer
        if m.task.outputs_values:
            predictions = [Value(value=v) for v in answers]
        else:
            predictions = [Prediction(class_=c, probabilities=p.round(6).tolist())
                           for c, p in zip(answers, proba, strict=True)]  # fmt: skip
        return Answer(
            request_id=request_id,
            model_name=m.model_name,
            model_version=m.version,
            model_alias=m.alias,
            predictions=predictions,
        )

    @bentoml.api
    async def predict(
        self,
        images: Annotated[
            list,
            Field(
                description="one image (rows of pixel values) or a list of images",
                examples=[EXAMPLE_INPUT],
            ),
        ],
    ) -> Answer:
        """Classify one image or a batch of images given as raw pixel values."""
        m = self._only("image")
        return await self._answer(m, to_batch(images, m.shape, m.pixel_max))

    @bentoml.api
    async def predict_files(
        self,
        files: Annotated[
            list[Path],
            Field(
                description="PNG or JPEG files (multipart/form-data, field `files`)",
                min_length=1,
                max_length=MAX_BATCH,
            ),
        ],  # fmt: skip
    ) -> Answer:
        """Classify image files, uploaded as multipart/form-data: each decoded, resized and
        converted exactly as the prepare stage did with the training folder."""
        m = self._only("image")
        return await self._answer(m, await self._uploads(m, files))

    @bentoml.api
    async def predict_base64(
        self,
        files: Annotated[
            list,
            Field(description="PNG or JPEG files, each a base64 string", min_length=1),
        ],
    ) -> Answer:
        """Classify image files sent in JSON as base64 strings (as /predict_files)."""
        m = self._only("image")
        return await self._answer(m, await self._uploads(m, from_base64(files)))

    async def _uploads(self, m: ServedModel, files: list) -> np.ndarray:
        if not m.image_files:
            raise InvalidArgument("this model was not trained on image files: POST pixel values"
                                  " to /predict")  # fmt: skip
        pixels = upload_pixels(files, SETTINGS.max_file_bytes, SETTINGS.max_request_pixels)
        decode = functools.partial(decode_uploads, files, m.image_files,
                                   SETTINGS.max_image_pixels)  # fmt: skip
        # Many pixels would stall the event loop, and every request of this worker with it.
        return await asyncio.to_thread(decode) if pixels > UPLOAD_ON_LOOP_PIXELS else decode()

    @bentoml.api
    async def predict_rows(
        self,
        rows: Annotated[
            list, Field(description="table rows as objects {column: value}", min_length=1)
        ],
    ) -> Answer:
        """Classify table rows given as objects of column values, as in the training file."""
        m = self._only("tabular")
        return await self._answer(m, encode_rows(rows, m.encoding))

    @bentoml.api
    async def predict_text(
        self,
        texts: Annotated[
            str | list,
            Field(description="one text or a list of texts", examples=["Free entry! Txt WIN"]),
        ],
    ) -> Answer:
        """Classify one text or a list of texts, tokenized here with the model's tokenizer.
        The log keeps each text's statistics, and the text only with MLOOP_LOG_INPUTS."""
        m = self._only("text")
        ids, logged, _ = text_inputs(m, texts)
        return await self._answer(m, ids, logged)

    @bentoml.api
    async def explain(
        self,
        rows: Annotated[list | None, Field(description="table rows, as /predict_rows")] = None,
        texts: Annotated[str | list | None, Field(description="texts, as /predict_text")] = None,
        images: Annotated[list | None, Field(description="images, as /predict")] = None,
    ) -> Explained:
        """Predict and say why: each input's attributions toward its predicted class, in
        the input's own terms (Integrated Gradients for a network, SHAP for trees, coefficient
        x value for the linear model, coefficient x tf-idf for TF-IDF; a regression: toward
        its value). At most MLOOP_EXPLAIN_MAX_BATCH inputs and MLOOP_EXPLAIN_MAX_TOKENS
        tokens (beyond: 413); under the worker's CPU budget for explanations (beyond: 429
        with Retry-After), made in a process of their own (``explaining.py``)."""
        m = self.m
        explaining = self.explaining
        size = explaining.bound(m, rows, texts, images)
        estimate = explaining.admit(size)  # 429 here: nothing parsed further, nothing logged
        try:  # what it costs happens in threads: the event loop answers the cheap routes
            x, logged, shown = await explaining.inputs(m, rows, texts, images)
            proba = await asyncio.to_thread(m.predict_proba, x)
            answer = await self._answer(m, x, logged, proba)
        except BaseException:
            explaining.release(estimate)
            raise
        values = m.task.outputs_values  # a regression: toward its one value
        targets = [0 if values else m.classes.index(p.class_) for p in answer.predictions]
        method, found, complete = await explaining.attribute(
            m.explainer, shown if shown is not None else x, targets, rows, size, estimate
        )
        return Explained(
            **answer.model_dump(), method=method, explained_version=m.explainer.version,
            explanations=[Explanation(class_=None if values else p.class_,
                                      value=p.value if values else None, attributions=a,
                                      completeness=c)
                          for p, a, c in zip(answer.predictions, found, complete, strict=True)],
        )  # fmt: skip

    @bentoml.api
    async def feedback(
        self,
        request_id: Annotated[
            str,
            Field(
                description="the id a prediction answered with",
                min_length=1,
                max_length=MAX_ID_CHARS,
            ),
        ],  # fmt: skip
        labels: Annotated[
            list,
            Field(
                description="the true class (a regression: the true value) of each input of"
                " that request, in order",
                min_length=1,
                max_length=MAX_BATCH,
            ),
        ],  # fmt: skip
        overwrite: Annotated[
            bool, Field(description="replace labels given before (else 409 Conflict)")
        ] = False,
        ctx: bentoml.Context = None,
    ) -> Labelled:
        """Attach the true labels to a logged request (for quality monitoring and the next
        training data). Wants a labeller's token; the label records the labeller's name."""
        source = ctx.request.headers.get(LABELLER_HEADER.decode(), "") if ctx else ""
        try:
            labels = self.m.task.check_feedback(labels, self.m.classes, self.m.label_range)
        except ValueError as err:
            raise InvalidArgument(str(err)) from None
        try:
            updated, replaced = await self._logged(
                lambda: asyncio.to_thread(
                    self.log.attach_labels,
                    request_id,
                    labels,
                    overwrite=overwrite,
                    source=source,
                )
            )
        except LookupError as err:
            raise NotFound(str(err)) from None
        except FileExistsError as err:
            raise Conflict(str(err)) from None
        except ValueError as err:
            raise InvalidArgument(str(err)) from None
        return Labelled(request_id=request_id, labelled=updated, overwritten=replaced)


install_bounded_metrics(api.route for api in Classifier.apis.values())
Classifier.add_asgi_middleware(
    RequestGate,
    token=SETTINGS.api_token,
    metrics_token=SETTINGS.metrics_token,
    max_body=SETTINGS.max_body_bytes,
    max_in_flight=SETTINGS.max_in_flight,
    allowed_hosts=SETTINGS.allowed_hosts,
    labellers=labeller_tokens(SETTINGS.labeller_tokens, SETTINGS.labeller_token),
    state=GATE,
    explain_rate=SETTINGS.explain_rate,
)
