"""POST /explain's work: the inputs checked and capped in their own terms, the cost
estimated and admitted under the worker's budget (``budget.py``), the attributions made in
the explanation process (``explain_process.py``), so that explanations, however many are
sent, never take the predictions' capacity, cores or interpreter.

The service's route (``service.py``) answers with what ``Explaining.explain`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument, ServiceUnavailable

from components.core.kinds.tokenizer import pad_token
from components.package.budget import CpuBudget, UnitCost, retry_after
from components.package.explain_process import ExplainFailed, ExplainProcess, ExplainUnavailable
from components.package.inputs import (
    Conflict,
    TooManyInputs,
    encode_rows,
    text_inputs,
    to_batch,
)

# the field each kind's inputs come in (the predict routes' names)
EXPLAINED = {"tabular": "rows", "text": "texts", "image": "images"}


class OverBudget(BentoMLException):
    """Shed: the worker's explanations are over their CPU budget (Retry-After says when)."""

    error_code = HTTPStatus.TOO_MANY_REQUESTS


class Explaining:
    """One worker's explanations: its budget, its cost model, its process, its queue (one
    job at a time: the thread waits on the process while the event loop answers)."""

    def __init__(self, settings, state) -> None:
        self.settings = settings
        self.state = state  # the gate's ServiceState: the Retry-After of the last shed
        self.budget = CpuBudget(settings.explain_cpu_share, settings.explain_queue_s)
        self.cost = UnitCost(unknown=settings.explain_queue_s)
        self.process = ExplainProcess(settings.ort_threads, settings.explain_nice)
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mloop-explain")
        # the admitted requests' inputs are made here, one at a time, with its own tokenizer
        self.prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mloop-explain-inputs")
        self._tokenizer: tuple = (None, None)  # (the model's, this thread's copy)

    def warm(self, explainer) -> None:
        """Start the process and make ``explainer`` there now, not in a request."""
        self.thread.submit(self._quietly, ("warm", explainer))

    def _quietly(self, job: tuple) -> None:
        with contextlib.suppress(ExplainFailed, ExplainUnavailable):
            self.process.call(job)  # what fails is said to the first request that asks

    def bound(self, m, rows, texts, images) -> int:
        """The request's size at most, in its own units, from what was sent as it is (nothing
        parsed, tokenized or predicted yet: what a request shed by its budget costs): a text
        counts ``min(its characters, the tokens the model reads)``; a row or an image, one.
        400 for the wrong fields, 409 without an explainer, 413 past the batch cap."""
        given = [k for k, v in (("rows", rows), ("texts", texts), ("images", images))
                 if v is not None]  # fmt: skip
        wanted = EXPLAINED[m.kind]
        if given != [wanted]:
            raise InvalidArgument(f"this model reads {m.kind} data: POST {{\"{wanted}\": [...]}}"
                                  " to /explain, and nothing else")  # fmt: skip
        if m.explainer is None:
            raise Conflict("this Bento carries no explainer (packaged before explanations):"
                           " package the model again (mloop run, or dvc repro)")  # fmt: skip
        sent = next(v for v in (rows, texts, images) if v is not None)
        sent = [sent] if isinstance(sent, str) else sent
        if not isinstance(sent, list):
            raise InvalidArgument(f"{wanted} must be a list")
        cap = self.settings.explain_max_batch
        if len(sent) > cap:  # the body limit bounded what was parsed
            raise TooManyInputs(f"/explain takes at most {cap} inputs (MLOOP_EXPLAIN_MAX_BATCH),"
                                f" got {len(sent)}")  # fmt: skip
        if texts is None:
            return len(sent)
        longest = m.max_length or 1
        return sum(min(len(t), longest) if isinstance(t, str) else 1 for t in sent)

    async def inputs(self, m, rows, texts, images):
        """The request's model inputs, what the log keeps and what the explanation shows,
        made in the inputs' thread (a text's statistics are Python over every character: off
        the event loop); 413 past ``MLOOP_EXPLAIN_MAX_TOKENS`` tokens of its texts."""
        return await asyncio.get_running_loop().run_in_executor(
            self.prep, self._inputs, m, rows, texts, images
        )

    def _inputs(self, m, rows, texts, images):
        if rows is not None:
            return encode_rows(rows, m.encoding), (), None
        if texts is None:
            return to_batch(images, m.shape, m.pixel_max), (), None
        if self._tokenizer[0] is not m.tokenizer:  # this thread's own copy of the model's
            from tokenizers import Tokenizer

            self._tokenizer = (m.tokenizer, Tokenizer.from_str(m.tokenizer.to_str()))
        tokenizer = self._tokenizer[1]
        x, logged, shown = text_inputs(m, texts, tokenizer)
        units = int((np.asarray(x) != pad_token(tokenizer)[1]).sum())
        most = self.settings.explain_max_tokens
        if units > most:
            raise TooManyInputs(f"/explain takes at most {most:,} tokens across its texts"
                                f" (MLOOP_EXPLAIN_MAX_TOKENS), got {units:,}: send fewer or"
                                " shorter texts")  # fmt: skip
        return x, logged, shown

    def admit(self, units: int) -> float:
        """The CPU-seconds admitted for ``units``; 429 with Retry-After when over budget."""
        estimate = self.cost.estimate(units)
        wait = self.budget.admit(estimate)
        if wait is not None:
            self.state.retry_after = retry_after(wait)
            raise OverBudget(
                f"explanations are over this worker's CPU budget ({self.budget.share:g} CPU-s/s,"
                f" {self.budget.capacity:g} s ahead: MLOOP_EXPLAIN_CPU_SHARE,"
                f" MLOOP_EXPLAIN_QUEUE_S); this one would take ~{estimate:.2f} CPU-s: retry"
                f" after {self.state.retry_after} s"
            )
        return estimate

    async def attribute(self, explainer, shown, targets, rows, units: int, estimate: float):
        """(method, attributions, completeness) from the process; the budget settles, and the
        cost per unit (``units``: the request's ``bound``, as admission counts) is learnt."""
        job = ("explain", explainer, shown, targets, rows)
        spent = 0.0
        try:
            (method, found, complete), spent = await asyncio.get_running_loop().run_in_executor(
                self.thread, self.process.call, job
            )
        except ExplainFailed as err:
            raise Conflict(f"cannot explain with this model: {err}") from None
        except ExplainUnavailable as err:
            raise ServiceUnavailable(str(err)) from None
        finally:
            self.budget.settle(estimate, spent)
        self.cost.observe(units, spent)
        return method, found, complete

    def release(self, estimate: float) -> None:
        """An admitted request that ended before its explanation: nothing was spent."""
        self.budget.settle(estimate, 0.0)

    def close(self) -> None:
        self.process.close()
        for pool in (self.thread, self.prep):
            pool.shutdown(wait=False, cancel_futures=True)
