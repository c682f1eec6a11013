"""The explainer a Bento carries beside its model, and the service's side of it.

The package stage writes ``explainer/`` into the BentoML model's folder (``write``):

- a network champion: its trained weights (``model.pt``, as ``train.models.save_net`` wrote
  them; a compressed variant is explained by the network it was made from, and the answer
  names that version) and ``explain.json`` (the method and its steps);
- a baseline champion (trees, TF-IDF): ``explain.json`` alone; the served scikit-learn
  model is explained as it is.

``ServedExplainer`` builds the explainer once (``get``), in the worker's explain thread:
the service asks for it when a worker starts or swaps a model in, so torch and Captum, or
SHAP, load beside the predictions rather than before them or in a request; a model swap
brings its own.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

FOLDER = "explainer"
WEIGHTS = "model.pt"
SETTINGS = "explain.json"


def write(folder: Path, weights: Path | None, baseline: str | None, steps: int, max_steps: int,
          explained_version: str) -> None:  # fmt: skip
    """The explainer's files in a BentoML model's folder (``weights``: a network's
    ``model.pt``; ``baseline``: the baseline's name, for a baseline champion)."""
    out = Path(folder) / FOLDER
    out.mkdir(parents=True, exist_ok=True)
    if weights is not None:
        shutil.copy(weights, out / WEIGHTS)
    settings = {"baseline": baseline, "steps": steps, "max_steps": max_steps,
                "explained_version": explained_version}  # fmt: skip
    (out / SETTINGS).write_text(json.dumps(settings))


def carried(folder: Path) -> bool:
    return (Path(folder) / FOLDER / SETTINGS).is_file()


class ServedExplainer:
    """A served model's explainer, made on first use (``get``), once."""

    def __init__(self, folder: Path, mlflow_model: Path, meta: dict, tokenizer,
                 threads: int = 1) -> None:  # fmt: skip
        self.folder, self.mlflow_model = Path(folder) / FOLDER, Path(mlflow_model)
        self.meta = meta
        # its own copy: the explain thread sets the tokenizer's padding as it encodes, and a
        # tokenizer that one thread changes while another reads it raises "Already borrowed"
        self.tokenizer = None if tokenizer is None else type(tokenizer).from_str(tokenizer.to_str())
        self.settings = json.loads((self.folder / SETTINGS).read_text())
        self.threads = threads  # torch's intra-op threads (MLOOP_ORT_THREADS): see _make
        self._made = None
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        """The registered version whose model the attributions are of."""
        return str(self.settings.get("explained_version", "unknown"))

    def get(self):
        with self._lock:
            if self._made is None:
                self._made = self._make()
            return self._made

    def _make(self):
        from components.core.kinds import kind as data_kind
        from components.evaluate.explain.explainer import for_baseline, for_network
        from components.evaluate.explain.views import view_of

        kind = data_kind(self.meta["kind"])
        baseline = self.settings.get("baseline")
        if baseline:
            import mlflow  # heavy: the first explanation of a baseline loads it

            model = mlflow.sklearn.load_model(str(self.mlflow_model))
            return for_baseline(baseline, model, view_of(kind, self.meta, None, self.tokenizer))
        import torch  # the first explanation loads it

        from components.train.models import load_net

        # As the served torch models (core.predict.served): at torch's default, a thread per
        # core in every worker, the explain threads would spin on the predictions' cores
        # (with the shared tokenizer's fault, fixed at the same time: SMS /explain p50 3 s,
        # /predict p99 7x under 10 explanations/s; after both, 18 ms and 4x)
        torch.set_num_threads(self.threads)
        net, spec = load_net(self.folder / WEIGHTS)  # tables' baseline row: the mean it learnt
        view = view_of(kind, self.meta, spec.data.feature_mean, self.tokenizer)
        return for_network(net, view, self.settings["steps"], self.settings["max_steps"])
