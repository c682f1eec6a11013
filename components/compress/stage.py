"""The ``compress`` stage: the champion's variants (``variants.py``), and the one that ships.

The chosen variant is registered as its own model version, alias
``champion-compressed``, tagged with its parent. The table and a trade-off plot
go to ``reports/`` and MLflow; the two student trainings are runs nested under
the compression run.
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core import families
from components.core.kinds import kind as data_kind
from components.core.paths import Workspace
from components.core.records import write_json
from components.core.splits import load_meta, load_split
from components.core.tasks import task_of
from components.register.aliases import (
    COMPRESSED,
    champion_version,
    register_compressed,
)

if TYPE_CHECKING:  # types only
    from components.core.config import Params
from components.compress.variants import Variant, build_variants, choose, measure, plot, table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompressionResult:
    champion_version: str
    variants: list[Variant]
    chosen: str | None  # the shipped variant; None when nothing beats fp32 within budget
    registered_version: str | None
    report: Path
    table: Path
    plot: Path
    skipped: str | None = None  # why nothing was built (the champion is no network)

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def summary(self) -> str:
        if self.skipped:
            return f"nothing to compress: {self.skipped}; report {self.table}"
        if self.chosen is None:
            return f"no variant beats fp32 within the accuracy budget; report {self.table}"
        base, best = self.variants[0], self.variant(self.chosen)
        return (
            f"{best.name} ships as version {self.registered_version} ({COMPRESSED}):"
            f" val {best.metric} {best.val_accuracy:.4f} (fp32 {base.val_accuracy:.4f}), test"
            f" {best.accuracy:.4f} (fp32 {base.accuracy:.4f}),"
            f" {base.size_bytes / best.size_bytes:.1f}x smaller, {best.speedup:.2f}x faster;"
            f" report {self.table}"
        )


def champion_weights(name: str, version: str) -> Path:
    """Download the trained weights logged beside a registered version's model."""
    import mlflow

    from components.train.stage import WEIGHTS_FOLDER

    run_id = mlflow.MlflowClient().get_model_version(name, version).run_id
    folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=WEIGHTS_FOLDER)
    return Path(folder) / "model.pt"


def compress_stage(params: Params, ws: Workspace) -> CompressionResult:
    import mlflow

    from components.core import tracking
    from components.train.models import load_net

    name = params.registry.model_name
    client = mlflow.MlflowClient()
    version = champion_version(client, name)
    tags = client.get_model_version(name, version).tags
    if tags.get("mloop.kind") == "baseline":  # a baseline won: no network to compress
        return nothing_to_compress(params, ws, version, tags.get("mloop.family", "a baseline"))
    net, spec = load_net(champion_weights(name, version))
    test = load_split(ws.prepared, "test")
    meta = load_meta(ws.prepared)
    classes = meta["classes"]

    with tracking.start_run(
        ws,
        params.data.name,
        run_name=f"compress-v{version}",
        tags={"mloop.parent_model": f"{name}/{version}"},
    ) as run:
        run.log_params({f"compress.{k}": v for k, v in params.compress.model_dump().items()})
        run.log_tokenizer(ws, meta)  # the shipped variant reads with it

        @contextmanager
        def student_run(run_name: str, logged: dict):  # nested under compress-vN
            tags = {"mloop.teacher": f"{name}/{version}"}
            with tracking.start_run(
                ws, params.data.name, run_name=run_name, nested=True, tags=tags
            ) as child:
                child.log_params({"teacher.version": version, **logged})
                yield child

        built = build_variants(net, spec, params, ws, ws.compressed_dir, student_run)
        val = load_split(ws.prepared, "val")  # decides; the test split is only reported
        # texts as the service sends them where the net reads any length (Family.token_ids)
        served = functools.partial(data_kind(meta["kind"]).as_served, meta=meta) if (
            families.get(spec.family).reads_ids(net)) else (lambda x: x)  # fmt: skip
        variants = measure(built, params.compress, val, test, classes, served,
                           regression=task_of(meta).outputs_values)  # fmt: skip
        best = choose(variants, params.compress.choose, params.compress.speed_tolerance)
        chosen = best.name if best else None
        markdown = table(variants, chosen)
        log.info(markdown)
        ws.reports.mkdir(parents=True, exist_ok=True)
        table_file = ws.report("compression.md")
        table_file.write_text(f"# Compression of {name} version {version}\n\n{markdown}")
        plot_file = plot(variants, chosen, ws.report("compression.png"))
        for v in variants:
            prefix = v.name.replace("+", "_")
            run.log_metrics(
                {
                    f"{prefix}.accuracy": v.accuracy,
                    f"{prefix}.val_accuracy": v.val_accuracy,
                    f"{prefix}.size_bytes": v.size_bytes,
                    f"{prefix}.speedup": v.speedup,
                }
                | {f"{prefix}.latency_{k}_ms": t for k, t in v.latency_ms.items()}
            )
        registered = None
        if best is not None:
            runner = built[best.name][0]
            uri = run.log_served_model(runner, test.x[:2].astype(np.float32))
            registered = register_compressed(name, version, uri, best)
        else:
            register_compressed(name, version, None, None)  # the alias must not outlive
        result = CompressionResult(
            version,
            variants,
            chosen,
            registered,
            ws.report("compression.json"),
            table_file,
            plot_file,
        )
        write_json(result.report, result)
        for path in (result.report, table_file, plot_file):
            run.log_artifact(path)
    return result


def nothing_to_compress(params: Params, ws: Workspace, version: str, family: str):
    """A champion that is no network (a baseline won): every variant is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = params.registry.model_name
    why = f"the champion (version {version}) is {family}, not a network"
    lines = [f"# Compression of {name} version {version}", "", f"Nothing to compress: {why}.", ""]
    lines += ["| variant | skipped because |", "|---|---|"]
    lines += [f"| {v} | {SKIPPED_BECAUSE[v]} |" for v in params.compress.variants]
    register_compressed(name, version, None, None)  # no alias outlives its champion
    ws.compressed_dir.mkdir(parents=True, exist_ok=True)  # the stage's output (DVC)
    table_file = ws.report("compression.md")
    table_file.parent.mkdir(parents=True, exist_ok=True)
    table_file.write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, f"nothing to compress: {why}", ha="center", va="center")
    plot_file = ws.report("compression.png")
    fig.savefig(plot_file, dpi=100)
    plt.close(fig)
    result = CompressionResult(
        version, [], None, None, ws.report("compression.json"), table_file, plot_file, why
    )
    write_json(result.report, result)
    log.info(f"compress: {why}; every variant skipped (reports/compression.md)")
    return result


# Why each variant does not apply to a baseline (gradient-boosted trees, a linear model,
# TF-IDF): scikit-learn models, no network.
SKIPPED_BECAUSE = {
    "pruned": "zeroes network weights; a scikit-learn model has none",
    "structured": "removes channels and neurons; a scikit-learn model has none",
    "dynamic-int8": "quantizes a network's linear layers",
    "static-int8": "quantizes a network's activations",
    "onnx": "exports a torch network (scikit-learn models would need skl2onnx, not in the lock)",
    "onnx-int8": "quantizes the ONNX export of a network",
    "distilled": "trains a smaller network from a network teacher",
    "distilled-int8": "trains a smaller network from a network teacher",
}
