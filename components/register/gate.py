"""The promotion gate: one decision, taken the same way by the register stage and ``promote``.

Without new data the challenger must beat the current champion, both scored on the
same frozen test split, by more than ``register.min_improvement``. Once accepted
batches joined the data there is a recent slice too (held out of the newest batches,
never trained on): then the challenger must beat the champion on the recent slice and
lose no more than ``register.max_regression`` on the frozen split, both scored on the
same rows. Either way it must stay under the latency and size limits. ``judge`` holds
the registry lock (a file beside the SQLite store, or
``MLOOP_REGISTRY_LOCK``: two flows finishing at once decide one after the other),
scores the champion, decides, moves the aliases and records the decision (version
tags and ``reports/gate.json``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from components.core.paths import Workspace
from components.core.predict import load_registered
from components.core.records import write_json
from components.core.settings import settings
from components.core.splits import RECENT, load_meta, load_split
from components.core.tasks import CLASSIFICATION, Task, task_of
from components.evaluate.metrics import task_scores
from components.register.aliases import CHAMPION, alias_version, crown

if TYPE_CHECKING:  # types only
    from components.core.config import Params, RegisterConfig


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger_score: float
    champion_score: float | None
    champion_version: str | None
    reasons: tuple[str, ...] = ()  # every rule's verdict
    forced: bool = False
    # The recent slice (None: no batches joined the data): both scores and its rows
    recent_challenger: float | None = None
    recent_champion: float | None = None
    recent_rows: int = 0


def decide(
    challenger_score: float,
    champion_score: float | None,
    cfg: RegisterConfig,
    champion_version: str | None = None,
    latency_p95_ms: float | None = None,
    size_mb: float | None = None,
    recent: tuple[float, float | None, int] | None = None,
    task: Task = CLASSIFICATION,
) -> Decision:
    """The promotion gate: a strictly better challenger, inside the latency and size limits.

    ``recent``: (challenger, champion, rows) on the recent slice; with it, better there
    and within ``max_regression`` on the frozen split (``challenger_score``).
    """
    failed, passed = [], []
    if cfg.max_latency_p95_ms is not None and latency_p95_ms is not None:
        verdict = f"latency p95 {latency_p95_ms:.3f} ms vs limit {cfg.max_latency_p95_ms} ms"
        (failed if latency_p95_ms > cfg.max_latency_p95_ms else passed).append(verdict)
    if cfg.max_size_mb is not None and size_mb is not None:
        verdict = f"size {size_mb:.3f} MB vs limit {cfg.max_size_mb} MB"
        (failed if size_mb > cfg.max_size_mb else passed).append(verdict)
    lower, better = task.direction(cfg.metric), task.better
    if champion_score is None:
        passed.append("no champion yet")
    elif recent is not None and recent[1] is not None:
        mine, theirs, rows = recent
        if better(cfg.metric, mine, theirs, cfg.min_improvement):
            passed.append(f"recent slice ({rows} rows): {cfg.metric} {mine:.4f} beats champion"
                          f" {theirs:.4f}{lower}")  # fmt: skip
        else:
            failed.append(
                f"recent slice ({rows} rows): {cfg.metric} {mine:.4f} does not beat"
                f" champion {theirs:.4f} by more than {cfg.min_improvement}{lower}"
            )
        sign = -1.0 if cfg.metric in task.lower_is_better else 1.0
        loss = sign * (champion_score - challenger_score)
        verdict = (f"frozen split: {cfg.metric} {challenger_score:.4f} vs champion"
                   f" {champion_score:.4f}")  # fmt: skip
        # a regression's metrics are in the label's units: the limit is a share of the champion's
        allowed = cfg.max_regression * (abs(champion_score) if task.outputs_values else 1.0)
        limit = f"register.max_regression {cfg.max_regression}" + (
            " of the champion's" if task.outputs_values else "")  # fmt: skip
        if loss > allowed + 1e-12:
            failed.append(f"{verdict} loses {loss:.4f}, more than {limit}")
        else:
            passed.insert(len(passed) - 1, f"{verdict}, within {limit}")
    elif better(cfg.metric, challenger_score, champion_score, cfg.min_improvement):
        passed.append(
            f"{cfg.metric} {challenger_score:.4f} beats champion {champion_score:.4f}"
            + (f" by more than {cfg.min_improvement}" if cfg.min_improvement else "")
            + lower
        )
    else:
        failed.append(
            f"{cfg.metric} {challenger_score:.4f} does not beat champion {champion_score:.4f}"
            f" by more than the margin {cfg.min_improvement}" + lower
        )
    promote = not failed
    reason = "; ".join(failed) if failed else passed[-1]
    return Decision(
        promote,
        reason,
        cfg.metric,
        challenger_score,
        champion_score,
        champion_version,
        tuple(failed + passed),
        recent_challenger=recent[0] if recent else None,
        recent_champion=recent[1] if recent else None,
        recent_rows=recent[2] if recent else 0,
    )


@contextmanager
def registry_lock(ws: Workspace, timeout: float = 600) -> Iterator[None]:
    """One gate decision at a time per registry (per tracking store)."""
    from filelock import FileLock

    from components.core.tracking import tracking_uri  # reads MLflow's settings

    path = settings().registry_lock
    uri = tracking_uri()
    if not path and uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///") + ".registry.lock"
    path = path or str(ws.registry_lock)
    with FileLock(path, timeout=timeout):
        yield


def registered_scores(
    name: str, version: str, params: Params, ws: Workspace, splits: tuple[str, ...]
) -> dict[str, float]:
    """A registered version's ``register.metric`` on splits of the current data (the
    frozen test split, the recent slice), the model loaded once for all of them."""
    meta = load_meta(ws.prepared)
    task = task_of(meta)
    metric = task.metric_for(params.registry.metric)
    predict = load_registered(f"models:/{name}/{version}")
    scores = {}
    for split in splits:
        rows = load_split(ws.prepared, split)
        found = task_scores(task, rows.y, predict(rows.x), meta["classes"])
        scores[split] = found.metric(metric)
    return scores


def judge(
    client,
    params: Params,
    ws: Workspace,
    *,
    version: str,
    limits: tuple[float | None, float | None] = (None, None),
    force: bool = False,
) -> Decision:
    """Lock, score challenger and champion, decide, move the aliases on a yes, record: the
    gate, once. Both are scored under the lock by the same code (``registered_scores``)
    on the same rows; ``limits`` are the challenger's latency p95 (ms) and size (MB);
    ``force`` turns a no into a recorded yes.
    """
    meta = load_meta(ws.prepared)
    cfg = params.registry.model_copy(
        update={"metric": task_of(meta).metric_for(params.registry.metric)})  # fmt: skip
    with registry_lock(ws):
        champion = alias_version(client, cfg.model_name, CHAMPION)
        if champion == version:
            raise ValueError(f"version {version} is already {CHAMPION}")
        # With new batches both are scored on the same recent rows too
        recent_rows = meta["counts"].get(RECENT, 0)
        splits = ("test", RECENT) if recent_rows else ("test",)
        theirs = (registered_scores(cfg.model_name, champion, params, ws, splits) if champion
                  else {})  # fmt: skip
        mine = registered_scores(cfg.model_name, version, params, ws, splits)
        recent = (mine[RECENT], theirs.get(RECENT), recent_rows) if recent_rows else None
        decision = decide(
            mine["test"], theirs.get("test"), cfg, champion_version=champion,
            latency_p95_ms=limits[0], size_mb=limits[1], recent=recent, task=task_of(meta),
        )  # fmt: skip
        if force and not decision.promote:
            decision = replace(
                decision, promote=True, reason=f"forced over: {decision.reason}", forced=True
            )
        if decision.promote:
            crown(client, cfg.model_name, version)
        record(client, cfg.model_name, version, decision, ws, meta.get("leakage") or [])
    return decision


def record(client, name: str, version: str, decision: Decision, ws: Workspace,
           leakage: list[dict] = ()) -> Path:  # fmt: skip
    """The decision as version tags and ``reports/gate.json``, with the probable leakage the
    prepare stage found (``components/prepare/leakage.py``): what the model may rely on
    that it will not have when asked."""
    for key, value in {
        "mloop.gate.decision": "promoted" if decision.promote else "rejected",
        "mloop.gate.reason": decision.reason,
        "mloop.gate.reasons": " | ".join(decision.reasons),
        "mloop.gate.challenger_score": decision.challenger_score,
        "mloop.gate.champion_score": decision.champion_score,
        "mloop.gate.champion_version": decision.champion_version,
        "mloop.gate.forced": decision.forced,
        "mloop.gate.frozen": f"{decision.challenger_score:.4f}"
        + (f" vs {decision.champion_score:.4f}" if decision.champion_score is not None else ""),
        "mloop.gate.recent": "-"
        if decision.recent_challenger is None
        else f"{decision.recent_challenger:.4f}"
        + (f" vs {decision.recent_champion:.4f}" if decision.recent_champion is not None else "")
        + f" ({decision.recent_rows} rows)",
        "mloop.gate.time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }.items():
        client.set_model_version_tag(name, version, key, str(value))
    # what each side relies on (its global explanation, tagged by the register stage)
    relies = {"challenger": client.get_model_version(name, version).tags.get("mloop.explain")}
    if decision.champion_version and decision.champion_version != version:
        relies["champion"] = client.get_model_version(
            name, decision.champion_version).tags.get("mloop.explain")  # fmt: skip
    if leakage:
        client.set_model_version_tag(name, version, "mloop.leakage",
                                     " | ".join(f["message"] for f in leakage))  # fmt: skip
    report = ws.report("gate.json")
    write_json(report, {"model_name": name, "version": version, "decision": decision,
                        "relies_on": relies, "leakage": list(leakage)})  # fmt: skip
    return report
