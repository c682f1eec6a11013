"""The ``compress`` stage: the champion's variants (``variants.py``), and the one that ships.

The chosen variant is registered as its own model version, alias
``champion-compressed``, tagged with its parent. The table and a trade-off plot
go to ``reports/`` and MLflow; the two student trainings are runs nested under
the compression run.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.core.paths import Workspace
from components.core.records import write_json
from components.prepare.splits import load_meta, load_split
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

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def summary(self) -> str:
        if self.chosen is None:
            return f"no variant beats fp32 within the accuracy budget; report {self.table}"
        base, best = self.variants[0], self.variant(self.chosen)
        return (
            f"{best.name} ships as version {self.registered_version} ({COMPRESSED}):"
            f" accuracy {best.accuracy:.4f} (fp32 {base.accuracy:.4f}),"
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
    net, spec = load_net(champion_weights(name, version))
    test = load_split(ws.prepared, "test")
    classes = load_meta(ws.prepared)["classes"]

    with tracking.start_run(
        ws,
        params.data.name,
        run_name=f"compress-v{version}",
        tags={"mloop.parent_model": f"{name}/{version}"},
    ) as run:
        run.log_params({f"compress.{k}": v for k, v in params.compress.model_dump().items()})

        @contextmanager
        def student_run(run_name: str, logged: dict):  # nested under compress-vN
            tags = {"mloop.teacher": f"{name}/{version}"}
            with tracking.start_run(
                ws, params.data.name, run_name=run_name, nested=True, tags=tags
            ) as child:
                child.log_params({"teacher.version": version, **logged})
                yield child

        built = build_variants(net, spec, params, ws, ws.compressed_dir, student_run)
        variants = measure(built, params.compress, test.x, test.y, classes)
        best = choose(variants)
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
