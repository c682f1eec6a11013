"""The one module that talks to MLflow tracking.

Stages get a small ``Run`` adapter from ``start_run``; nothing else imports
mlflow for tracking, so the training loop runs where MLflow is absent. The
tracking server is whatever ``MLFLOW_TRACKING_URI`` names; the entry points
default it to the workspace's SQLite file (``components.paths``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from components.core.config import Params
from components.core.paths import Workspace


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", "")


def is_embedded() -> bool:
    """True when tracking goes to a local file store rather than a server."""
    uri = tracking_uri()
    return uri.startswith(("sqlite:", "file:", "/")) or uri == ""


def ensure_experiment(ws: Workspace, name: str) -> str:
    """The experiment's id, creating it (artifacts in the workspace when embedded)."""
    import mlflow

    from components.core.logs import quiet_libraries

    quiet_libraries()
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = (ws.mlflow_artifacts / name).as_uri() if is_embedded() else None
    return mlflow.create_experiment(name, artifact_location=location)


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def dvc_hash(folder: Path) -> str:
    """The hash DVC gives a folder output (``<md5>.dir``, as in ``dvc.lock``)."""
    import tempfile

    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as tmp:
        _, _, obj = build(HashFileDB(fs, tmp), str(folder), fs, "md5")
    return obj.hash_info.value


def lineage_tags(ws: Workspace, params: Params, meta: dict) -> dict[str, str]:
    """What a run was made from: data version (DVC hash), code commit, params hash."""
    return {
        "mloop.git_commit": git_commit(ws.root),
        "mloop.data_version": dvc_hash(ws.prepared),
        "mloop.data_content": str(meta.get("version", "unknown")),
        "mloop.data_source": str(meta.get("source", "unknown")),
        "mloop.data_name": str(meta.get("name", "unknown")),
        "mloop.params_hash": params.digest(),
        # The accepted batches joined to the reference data (lineage; "no new data" reads it)
        "mloop.batches": batch_list([b["id"] for b in meta.get("batches", [])]),
    }


def batch_list(ids: list[str], limit: int = 4000) -> str:
    """Batch ids for a tag: all of them, or the first and the last when too many to list."""
    text = ",".join(ids) or "-"
    return text if len(text) <= limit else f"{ids[0]}..{ids[-1]} ({len(ids)} batches)"


def record_failed_run(
    ws: Workspace, experiment: str, run_name: str, artifacts: list[Path], tags: dict[str, str]
) -> str:
    """A run that ends FAILED at once, holding the artifacts that say why."""
    import mlflow

    experiment_id = ensure_experiment(ws, experiment)
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    for path in artifacts:
        if path.is_file():
            client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, status="FAILED")
    return run.info.run_id


def pinned(names) -> list[str]:
    """``name==version`` of each installed package (local build suffixes dropped)."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in names]


@dataclass
class Run:
    """What a stage may do with its MLflow run."""

    run_id: str
    experiment_id: str

    def log_params(self, params: dict[str, object]) -> None:
        import mlflow

        mlflow.log_params({k: str(v) for k, v in params.items()}, run_id=self.run_id)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, run_id=self.run_id)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.log_metrics(metrics, step=epoch)

    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow

        client = mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        import mlflow

        mlflow.MlflowClient().log_artifact(self.run_id, str(path), artifact_path=folder)

    def log_tokenizer(self, ws: Workspace, meta: dict) -> None:
        """Version a text data set's tokenizer with the model this run logs (its folder
        ``tokenizer/``, where packaging takes it from); other data have none."""
        if meta.get("text"):  # prepare records a tokenizer for texts alone
            self.log_artifact(ws.prepared / meta["text"]["tokenizer"], "tokenizer")

    def end(self, status: str = "FINISHED") -> None:
        """End a run opened by ``create_run``: FINISHED, FAILED or KILLED."""
        import mlflow

        mlflow.MlflowClient().set_terminated(self.run_id, status=status)

    def log_served_model(self, runner, example) -> str:
        """Log a compression variant (``components.quantization.ShippedVariant``) into the active
        run; returns its URI."""
        import mlflow
        from mlflow.models import infer_signature

        output = runner.predict(example)
        signature = infer_signature(example, output)
        requirements = pinned(
            ("onnx", "onnxruntime", "numpy")
            if runner.format == "onnx"
            else ("torch", "numpy", "cloudpickle")
        )
        if runner.format == "onnx":
            import onnx

            model = onnx.load(str(runner.file))
            if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64:
                example = example.astype("int64")  # token ids: the signature says so
                signature = infer_signature(example, output)
            info = mlflow.onnx.log_model(
                model,
                name="compressed",
                signature=signature,
                input_example=example,
                pip_requirements=requirements,
                save_as_external_data=False,
            )
        else:  # quantized torch modules do not export: pickled, with mloop's code beside
            info = mlflow.pytorch.log_model(
                runner.model,
                name="compressed",
                signature=signature,
                input_example=example,
                pip_requirements=requirements,
                code_paths=[str(Path(__file__).parents[1])],  # components/, whole
                # MLflow 3 defaults to pt2 (torch.export), which refuses a TorchScript
                # module (the traced dynamic-int8 encoder): it failed whenever that shipped
                serialization_format="pickle",
            )
        return info.model_uri

    def log_torch_model(self, module, example) -> str:
        """Log a module that maps images to probabilities; returns its model URI."""
        import mlflow
        import torch
        from mlflow.models import infer_signature

        with torch.no_grad():
            output = module(torch.from_numpy(example)).numpy()
        # pt2 (torch.export) rather than pickle: loading needs no mloop code and runs none.
        info = mlflow.pytorch.log_model(
            module,
            name="model",
            signature=infer_signature(example, output),
            input_example=example,
            serialization_format="pt2",
            pip_requirements=pinned(("torch", "mlflow", "numpy", "cloudpickle")),
        )
        return info.model_uri


def create_run(
    ws: Workspace, experiment: str, run_name: str, tags: dict[str, str] | None = None
) -> Run:
    """A RUNNING run that no process holds active: others log under it (``parent_run_id``)
    and its owner ends it with ``Run.end``."""
    import mlflow

    experiment_id = ensure_experiment(ws, experiment)
    run = mlflow.MlflowClient().create_run(experiment_id, run_name=run_name, tags=tags)
    return Run(run_id=run.info.run_id, experiment_id=experiment_id)


@contextmanager
def start_run(
    ws: Workspace,
    experiment: str,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
    nested: bool = False,
    system_metrics: bool = False,
    parent_run_id: str | None = None,
) -> Iterator[Run]:
    """Start (or, given ``run_id``, reopen) a run; it ends FAILED if the body raises.

    ``parent_run_id`` nests it under a run that another process or thread holds.

    ``system_metrics`` samples CPU, memory (and GPU, where there is one) every
    second into the run, as ``system/*`` metrics. MLflow's sampler logs nothing for a
    run that ends within its first interval, or when it cannot read the run back from
    a busy SQLite store, so the run's average CPU use and its final memory use are
    logged under the same names when it ends.
    """
    import mlflow

    experiment_id = ensure_experiment(ws, experiment)
    if system_metrics:
        import psutil  # comes with MLflow (its sampler uses it), not on a bare training machine

        mlflow.set_system_metrics_sampling_interval(1)
        mlflow.set_system_metrics_samples_before_logging(1)
        psutil.cpu_percent()  # from here: the run's average, read when it ends
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=None if run_id else experiment_id,
        run_name=run_name,
        tags=tags,
        nested=nested,
        parent_run_id=parent_run_id,
        log_system_metrics=system_metrics,
    ) as active:
        yield Run(run_id=active.info.run_id, experiment_id=active.info.experiment_id)
        if system_metrics:
            memory = psutil.virtual_memory()
            mlflow.log_metrics({
                "system/cpu_utilization_percentage": psutil.cpu_percent(),
                "system/system_memory_usage_megabytes": (memory.total - memory.available) / 1e6,
                "system/system_memory_usage_percentage": memory.percent,
            })  # fmt: skip


def ui_hint(ws: Workspace) -> str:
    uri = tracking_uri()
    if is_embedded():
        return (
            f"mlflow ui --backend-store-uri {uri} --port 5000   (then open http://127.0.0.1:5000)"
        )
    return f"open {uri} in a browser"
