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
    """A served model's explainer, made on first use (``get``), once. Picklable (what it is
    made of, not what it made): the service hands it to its explanation process
    (``package/explain_process.py``), which makes it there."""

    def __init__(self, folder: Path, mlflow_model: Path, meta: dict, tokenizer,
                 threads: int = 1) -> None:  # fmt: skip
        self.folder, self.mlflow_model = Path(folder) / FOLDER, Path(mlflow_model)
        self.meta = meta
        # its own copy, as JSON: made again where it is used (the explain process), and a
        # tokenizer that one thread changes while another reads it raises "Already borrowed"
        self.tokenizer_json = None if tokenizer is None else tokenizer.to_str()
        self.settings = json.loads((self.folder / SETTINGS).read_text())
        self.threads = threads  # torch's intra-op threads (MLOOP_ORT_THREADS): see _make
        self._made = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_made", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _made=None, _lock=threading.Lock())

    @property
    def key(self) -> str:
        """Which model's explainer it is (its folder in the BentoML store)."""
        return str(self.folder)

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
        tokenizer = None
        if self.tokenizer_json is not None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(self.tokenizer_json)
        baseline = self.settings.get("baseline")
        if baseline:
            import mlflow  # heavy: the first explanation of a baseline loads it

            model = mlflow.sklearn.load_model(str(self.mlflow_model))
            return for_baseline(baseline, model, view_of(kind, self.meta, None, tokenizer))
        import torch  # the first explanation loads it

        from components.train.models import load_net

        # As the served torch models (core.predict.served): at torch's default, a thread per
        # core, the explanations would spin on the predictions' cores
        torch.set_num_threads(self.threads)
        # what the network's family needs besides its weights travels in the Bento
        # (a pretrained model's config, your module): never a path of the training machine
        net, spec = load_net(self.folder / WEIGHTS, carried=self.folder)
        view = view_of(kind, self.meta, spec.data.feature_mean, tokenizer)
        return for_network(net, view, self.settings["steps"], self.settings["max_steps"])
