"""The ``register`` stage: the trained models as new versions; one, ``challenger``, faces the gate.

The network and the baselines beside it (for tables gradient-boosted trees and a linear
model) each become a version. The one scoring best on the validation split by
``register.metric`` (a tie: the simpler one) gets alias ``challenger`` (the test split
stays for the gate);
``champion`` moves to it only when the gate (``gate.py``) says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.core.config import Params
from components.core.paths import Workspace
from components.core.predict import torch_predictor
from components.core.records import read_json, write_json
from components.core.splits import load_meta, load_split
from components.core.tasks import task_of
from components.core.timing import latency_ms
from components.evaluate.explain.trained import read_explanations
from components.evaluate.metrics import task_scores
from components.register.aliases import CHALLENGER
from components.register.gate import Decision, judge
from components.train.models import load_net
from components.train.stage import read_train_record


@dataclass(frozen=True)
class RegistrationResult:
    model_name: str
    version: str
    aliases: list[str]
    decision: Decision
    record: Path
    family: str = "network"  # which candidate became the challenger: its family (mlp, trees)
    candidates: dict[str, str] | None = None  # family -> registered version
    leakage: tuple[str, ...] = ()  # probable leakage in the data, said

    def summary(self) -> str:
        verdict = "promoted to champion" if self.decision.promote else "not promoted"
        others = {f: v for f, v in (self.candidates or {}).items() if f != self.family}
        beside = "".join(f"; {f} registered as version {v}, not chosen" for f, v in others.items())
        leaks = "".join(f"; WARNING {m}" for m in self.leakage)
        return (
            f"{self.model_name} version {self.version} ({self.family}) {verdict}"
            f" ({self.decision.reason}); aliases {', '.join(self.aliases)}{beside}{leaks}"
        )


@dataclass(frozen=True)
class Candidate:
    """One model the train stage made: the network, or the baseline beside it."""

    family: str  # the network's family (cnn, mlp, transformer, ...) or the baseline's (trees)
    kind: str  # the version's mloop.kind: "trained" or "baseline"
    run_id: str
    model_uri: str
    metrics: dict[str, float]  # test scores from the evaluate stage
    val_score: float  # register.metric on the validation split: what picks the challenger
    latency_p95_ms: float
    size_mb: float


def candidates(params: Params, ws: Workspace, meta: dict) -> list[Candidate]:
    """The network and each baseline trained beside it, each scored on val (``meta``: the
    prepared data's)."""
    from components.core.predict import load_registered
    from components.evaluate.stage import baseline_metrics_file
    from components.train.baseline import read_baselines

    task = task_of(meta)
    metric = task.metric_for(params.registry.metric)
    val = load_split(ws.prepared, "val")
    example = load_split(ws.prepared, "test").x[:1].astype("float32")
    trained = read_train_record(ws)
    net, spec = load_net(ws.model_file)
    found = [(
        spec.family, "trained", trained.run_id, trained.model_uri,
        read_json(ws.metrics, "evaluate"), torch_predictor(net), ws.model_file.stat().st_size,
    )]  # fmt: skip
    scored = read_json(baseline_metrics_file(ws), "evaluate")
    for baseline in read_baselines(ws):
        found.append((
            baseline.kind, "baseline", baseline.run_id, baseline.model_uri,
            scored.get(baseline.kind, {}), load_registered(baseline.model_uri),
            baseline.size_bytes,
        ))  # fmt: skip
    out = []
    for family, kind, run_id, uri, metrics, predict, size in found:
        if metric not in metrics:  # an AUC on a test split of one class
            raise ValueError(
                f"register.metric {metric} is undefined on this test split ({family} has no"
                " score of it: one class only, or a MAPE of a label that is not positive):"
                " gate on another metric"
            )
        val_score = task_scores(task, val.y, predict(val.x), meta["classes"]).metric(metric)
        _, p95 = latency_ms(predict, example, repeats=200)
        out.append(Candidate(family, kind, run_id, uri, metrics, val_score, p95, size / 1e6))
    return out


# On a tie on the validation split the simpler model is the challenger (Occam's razor: on a
# small table accuracy ties often): the linear models, then the trees, then the network.
SIMPLER = {"linear": 0, "tfidf": 0, "trees": 1}


def challenger_of(found: list[Candidate], task, metric: str) -> Candidate:
    """The candidate scoring best on the validation split by ``metric``; a tie goes to the
    simpler one (``SIMPLER``; a network ranks last)."""
    ordered = sorted(found, key=lambda c: SIMPLER.get(c.family, len(SIMPLER)))
    pick = ordered[0]
    for other in ordered[1:]:
        if task.better(metric, other.val_score, pick.val_score):
            pick = other
    return pick


def register_stage(params: Params, ws: Workspace) -> RegistrationResult:
    """Register each candidate as a version; the best on val becomes challenger, then the gate."""
    import mlflow  # heavy (~10 s): the stage table lists this module without loading it

    meta = load_meta(ws.prepared)
    task = task_of(meta)
    cfg = params.registry.model_copy(update={"metric": task.metric_for(params.registry.metric)})
    found = candidates(params, ws, meta)
    pick = challenger_of(found, task, cfg.metric)
    client = mlflow.MlflowClient()
    explained = read_explanations(ws)["models"]
    versions = {}
    for c in found:
        versions[c.family] = str(
            mlflow.register_model(
                c.model_uri,
                cfg.model_name,
                tags={
                    "mloop.run_id": c.run_id,
                    "mloop.kind": c.kind,
                    "mloop.family": c.family,
                    **{k: str(v) for k, v in c.metrics.items() if k in task.metrics},
                    f"mloop.val.{cfg.metric}": f"{c.val_score:.6f}",
                    "mloop.latency_p95_ms": f"{c.latency_p95_ms:.4f}",
                    "mloop.size_mb": f"{c.size_mb:.4f}",
                    # what it relies on (its run's explanations/), beside what it scores
                    **explanation_tags(
                        explained.get("network" if c.kind == "trained" else c.family)
                    ),
                },
            ).version
        )
    for c in (c for c in found if c is not pick):  # said why, then left out of the gate
        reason = (
            f"not the challenger: {pick.family} scored {cfg.metric} {pick.val_score:.4f} on the"
            f" validation split, {c.family} {c.val_score:.4f}"
        )
        client.set_model_version_tag(cfg.model_name, versions[c.family], "mloop.gate.decision",
                                     "not chosen")  # fmt: skip
        client.set_model_version_tag(cfg.model_name, versions[c.family], "mloop.gate.reason",
                                     reason)  # fmt: skip
    version = versions[pick.family]
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, version)
    decision = judge(
        client, params, ws, version=version,
        limits=(pick.latency_p95_ms, pick.size_mb),
    )  # fmt: skip
    aliases = sorted(client.get_model_version(cfg.model_name, version).aliases)
    result = RegistrationResult(
        cfg.model_name, version, aliases, decision, ws.report("registry.json"),
        family=pick.family, candidates={c.family: versions[c.family] for c in found},
        leakage=tuple(f["message"] for f in meta.get("leakage") or []),
    )  # fmt: skip
    write_json(result.record, result)
    return result


def explanation_tags(found: dict | None) -> dict[str, str]:
    """A version's tags of its global explanation: its headline and how it was measured."""
    from components.evaluate.explain.summary import headline

    if not found:
        return {}
    if "skipped" in found:
        return {"mloop.explain": f"not explained: {found['skipped']}"}
    tags = {"mloop.explain": headline(found), "mloop.explain.method": found["method"]}
    if found.get("completeness"):
        tags["mloop.explain.complete"] = f"{found['completeness']['within_tolerance']:.3f}"
    return tags


def read_registration(ws: Workspace) -> dict:
    return read_json(ws.report("registry.json"), "register")
