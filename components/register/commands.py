"""What an operator does with the registry: promote, rollback, list versions, trace lineage.

``promote`` and ``rollback`` move ``champion`` (and ``champion-compressed`` with it);
the CLI then packages what is now served.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from components.core.paths import Workspace
from components.register.aliases import (
    CHAMPION,
    alias_version,
    follow_champion,
    history,
    set_history,
)
from components.register.gate import Decision, judge, registry_lock

if TYPE_CHECKING:  # types only
    from components.core.config import Params


def promote(params: Params, ws: Workspace, version: str, force: bool = False) -> Decision:
    """``mloop promote``: the gate for one registered version; ``force`` overrides a no."""
    import mlflow  # heavy (~10 s): the CLI's help imports this module
    from mlflow.exceptions import MlflowException

    cfg = params.registry
    client = mlflow.MlflowClient()
    try:
        tags = client.get_model_version(cfg.model_name, version).tags
    except MlflowException:
        raise LookupError(f"{cfg.model_name} has no version {version}") from None
    if tags.get("mloop.kind") == "compressed":
        raise ValueError(f"version {version} is a compressed variant; promote its parent")
    limits = tuple(
        float(tags[key]) if tags.get(key) else None
        for key in ("mloop.latency_p95_ms", "mloop.size_mb")
    )
    return judge(
        client, params, ws, version=version,
        limits=limits, force=force,
    )  # fmt: skip


def rollback(params: Params, ws: Workspace) -> tuple[str, str]:
    """``champion`` back to the previous champion; returns ``(from, to)`` versions."""
    import mlflow  # heavy (~10 s): the CLI's help imports this module
    from mlflow.exceptions import MlflowException

    name = params.registry.model_name
    client = mlflow.MlflowClient()
    with registry_lock(ws):
        try:
            versions = history(client, name)
        except MlflowException:
            raise RuntimeError(f"{name}: no registered model yet, nothing to roll back") from None
        current = alias_version(client, name, CHAMPION)
        if current is None or len(versions) < 2 or versions[-1] != current:
            raise RuntimeError(
                f"{name}: no previous champion to roll back to"
                f" (history {versions}, champion {current})"
            )
        previous = versions[-2]
        set_history(client, name, versions[:-1])
        client.set_registered_model_alias(name, CHAMPION, previous)
        follow_champion(client, name, previous)
        client.set_model_version_tag(
            name, current, "mloop.rolled_back", time.strftime("%Y-%m-%dT%H:%M:%S%z")
        )
    return current, previous


def models_table(name: str) -> list[dict[str, str]]:
    """``mloop models``: every version with aliases, metric, gate verdict and lineage."""
    import mlflow  # heavy (~10 s): the CLI's help imports this module

    client = mlflow.MlflowClient()
    rows = []
    found = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    # the task's headline scores: a regression's RMSE and R², else accuracy and ROC AUC
    scores = ("test_rmse", "test_r2") if any("test_rmse" in mv.tags for mv in found) else (
        "test_accuracy", "test_roc_auc")  # fmt: skip
    for mv in found:
        tags = mv.tags
        try:
            run_tags = client.get_run(mv.run_id).data.tags if mv.run_id else {}
        except Exception:  # a deleted run: the version still lists
            run_tags = {}
        rows.append(
            {
                "version": str(mv.version),
                "kind": tags.get("mloop.kind", "trained")
                + (
                    f" of v{tags['mloop.parent_version']}" if "mloop.parent_version" in tags else ""
                ),
                # the network's family, or the baseline beside it; "network" before families
                "family": tags.get("mloop.family", "network"),
                # search results carry no aliases in every store: ask for each version
                "aliases": ",".join(sorted(client.get_model_version(name, mv.version).aliases))
                or "-",
                **{score: tags.get(score, "-")[:8] for score in scores},
                "gate": tags.get("mloop.gate.decision", "-")
                + (" (forced)" if tags.get("mloop.gate.forced") == "True" else ""),
                # at its gate: its score (vs the champion's) on the frozen split, the recent slice
                "frozen": tags.get("mloop.gate.frozen", "-"),
                "recent": tags.get("mloop.gate.recent", "-").split(" (")[0],
                # what it relies on most (its global explanation, from the evaluate stage)
                "relies on": _short(tags.get("mloop.explain", "-"), 48),
                "batches": _short_batches(run_tags.get("mloop.batches", "-")),
                "data": run_tags.get("mloop.data_version", "-")[:12],
                "commit": run_tags.get("mloop.git_commit", "-")[:8],
                "created": time.strftime(
                    "%Y-%m-%d %H:%M", time.localtime(mv.creation_timestamp / 1e3)
                ),
            }
        )
    return rows


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def new_batches(params: Params, ws: Workspace) -> list[str] | None:
    """The accepted batches (inside ``data.batches.window``) that arrived after the newest
    batch the champion was trained on; None when there is no champion yet."""
    import re

    import mlflow  # heavy (~10 s): the CLI's help imports this module
    from mlflow.exceptions import MlflowException

    from components.prepare.batches import in_window, list_batches

    client = mlflow.MlflowClient()
    try:
        champion = client.get_model_version_by_alias(params.registry.model_name, CHAMPION)
    except MlflowException:
        return None
    tag = client.get_run(champion.run_id).data.tags.get("mloop.batches", "-")
    seen = max((int(n) for n in re.findall(r"batch-(\d+)", tag)), default=0)
    window = in_window(list_batches(ws.batches), params.data.batches)
    return [b.id for b in window if int(b.id.split("-")[1]) > seen]


def _short_batches(tag: str) -> str:
    ids = [i for i in tag.split(",") if i and i != "-"]
    if len(ids) <= 2:
        return ",".join(i.removeprefix("batch-") for i in ids) or "-"
    return f"{ids[0].removeprefix('batch-')}..{ids[-1].removeprefix('batch-')}"


def lineage(reference: str) -> dict:
    """Model version, run, data version, commit and params of ``NAME@ALIAS`` or ``NAME/VERSION``."""
    import mlflow  # heavy (~10 s): the CLI's help imports this module
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        if "@" in reference:
            name, alias = reference.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        elif "/" in reference:
            name, number = reference.split("/", 1)
            version = client.get_model_version(name, number)
        else:
            raise ValueError(f"{reference!r}: expected NAME@ALIAS or NAME/VERSION")
    except MlflowException as err:
        raise LookupError(
            f"{reference}: no such registered model version ({err.message})"
        ) from None
    run = client.get_run(version.run_id)
    tags = run.data.tags
    return {
        "model": f"{version.name} version {version.version}",
        "aliases": ", ".join(sorted(version.aliases)) or "-",
        "run": f"{run.info.run_id} ({run.info.run_name}, {run.info.status})",
        "experiment": run.info.experiment_id,
        "data": tags.get("mloop.data_name", "unknown"),
        "data version": tags.get("mloop.data_version", "unknown"),
        "git commit": tags.get("mloop.git_commit", "unknown"),
        "params hash": tags.get("mloop.params_hash", "unknown"),
        "batches": tags.get("mloop.batches", "-"),  # accepted batches beside the reference data
        "gate": version.tags.get("mloop.gate.reason", "-"),
        "relies on": version.tags.get("mloop.explain", "-"),
        "gate scores": f"frozen split {version.tags.get('mloop.gate.frozen', '-')};"
        f" recent slice {version.tags.get('mloop.gate.recent', '-')}",
        "params": dict(run.data.params),
    }
