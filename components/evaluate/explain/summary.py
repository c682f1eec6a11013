"""The whole model's explanation: what it relies on over a sample of the validation split.

``global_explanation`` answers a JSON-ready dict and draws its picture (PNG):

- tables: each source column's mean absolute attribution and its share of the total,
  beside its permutation importance (the drop in accuracy when the column is shuffled);
- texts: the words that push each class most (mean attribution toward the class over the
  texts the model gives it, words seen at least ``MIN_COUNT`` times), and each word's share
  of all attribution (what the monitor compares);
- images: a mean saliency map per class, and a few test images with their maps.

``shares`` reads the per-column or per-word shares back (the monitor's reference), and
``headline`` the line a registered version carries (``mloop models``, the MLflow UI).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from components.evaluate.explain.attribution import TOLERANCE
from components.evaluate.explain.views import ImageView, TableView, TextView
from components.evaluate.metrics import quality

MIN_COUNT = 3  # a word seen fewer times in the sample is not ranked
PERMUTATION_REPEATS = 5
PERMUTATION_ROWS = 5000


def completeness(found) -> dict | None:
    """How complete a sample's Integrated Gradients were (None: an exact method)."""
    if found.error is None:
        return None
    steps, counts = np.unique(found.steps, return_counts=True)
    return {"within_tolerance": float(np.mean(found.error <= TOLERANCE)),
            "tolerance": TOLERANCE, "median_error": float(np.median(found.error)),
            "p95_error": float(np.quantile(found.error, 0.95)),
            "steps": {str(int(s)): int(c) for s, c in zip(steps, counts, strict=True)}}  # fmt: skip


def global_explanation(explainer, x: np.ndarray, y: np.ndarray, predict, classes: list,
                       sample: int, seed: int, png: Path, examples=None) -> dict:  # fmt: skip
    """The explanation of ``explainer``'s model over up to ``sample`` rows of ``x`` (the
    validation split; ``predict``: its class probabilities), drawn to ``png``;
    ``examples``: test images to draw with their maps."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x), size=min(sample, len(x)), replace=False))
    xs = np.asarray(x[pick])
    targets = predict(xs).argmax(1)
    view, inputs = explainer.view, explainer.from_split(xs)
    found = explainer.attributor.explain(inputs, targets)
    out = {"method": explainer.method, "rows": int(len(xs)), "completeness": completeness(found)}
    if isinstance(view, TableView):
        out |= table_summary(view, found.scores, x, y, predict, rng, png)
    elif isinstance(view, TextView):
        out |= text_summary(view, inputs, found.scores, targets, classes, png)
    else:
        shown = None
        if examples is not None and len(examples):
            shown = np.asarray(examples)
            shown = (shown, explainer.attributor.explain(shown, predict(shown).argmax(1)).scores)
        out |= image_summary(view, found.scores, targets, classes, png, shown)
    out["picture"] = f"{png.parent.name}/{png.name}"  # under reports/
    return out


def table_summary(view: TableView, scores, x, y, predict, rng, png: Path) -> dict:
    magnitude = np.abs(view.by_column(scores)).mean(0)
    share = magnitude / max(magnitude.sum(), 1e-12)
    permutation = permutation_importance(view, x, y, predict, rng)
    order = np.argsort(-magnitude, kind="stable")
    columns = [{"column": view.columns[j], "mean_abs": float(magnitude[j]),
                "share": float(share[j]), "permutation": float(permutation[j])}
               for j in order]  # fmt: skip
    draw_columns(columns, png)
    return {"columns": columns, "top": [c["column"] for c in columns]}


def permutation_importance(view: TableView, x, y, predict, rng) -> np.ndarray:
    """Per source column, the mean drop in accuracy (a regression: the rise in RMSE) over
    ``PERMUTATION_REPEATS`` shuffles of its values (a categorical column's one-hot block
    moves as one) on up to ``PERMUTATION_ROWS`` rows."""
    rows = np.sort(rng.choice(len(x), size=min(PERMUTATION_ROWS, len(x)), replace=False))
    xs, ys = np.asarray(x[rows]), np.asarray(y[rows])
    base = quality(predict(xs), ys)
    source = view.source_index()
    drops = np.zeros(len(view.columns))
    for j in range(len(view.columns)):
        block = source == j
        for _ in range(PERMUTATION_REPEATS):
            moved = xs.copy()
            moved[:, block] = xs[rng.permutation(len(xs))][:, block]
            drops[j] += base - quality(predict(moved), ys)
    return drops / PERMUTATION_REPEATS


def text_summary(view: TextView, ids, scores, targets, classes, png: Path) -> dict:
    by_class: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row, line, target in zip(ids, scores, targets, strict=True):
        for word, total in view.id_words(row, line):
            by_class[int(target)][word].append(total)
    words = {}
    for c, found in sorted(by_class.items()):
        ranked = sorted(((float(np.mean(v)), w) for w, v in found.items() if len(v) >= MIN_COUNT),
                        reverse=True)  # fmt: skip
        words[str(classes[c])] = [[w, round(s, 6)] for s, w in ranked[:10]]
    draw_words(words, png)
    return {"words": words, "shares": share_of(view, ids, scores)}


def image_summary(view: ImageView, scores, targets, classes, png, examples) -> dict:
    scores = np.asarray(scores, np.float64)
    flat = scores.reshape(len(scores), -1)
    total = np.maximum(np.abs(flat).sum(1), 1e-12)
    normalised = scores / total.reshape(-1, *[1] * (scores.ndim - 1))  # each image sums to 1
    if normalised.ndim == 4:  # colours summed
        normalised = normalised.sum(1)
    present = np.unique(targets)
    maps = {str(classes[c]): normalised[targets == c].mean(0) for c in present}
    draw_maps(maps, png, examples)
    cells = view.grid(np.stack(list(maps.values()))) if maps else []
    per_class = {
        name: {"images": int((targets == c).sum()), "grid": np.round(g, 6).tolist()}
        for name, c, g in zip(maps, present, cells, strict=True)
    }
    return {"shares": share_of(view, None, scores), "classes": per_class}


def shares(explanation: dict) -> dict[str, float]:
    """The share of attribution per column (tables), word (texts) or image cell of a global
    explanation."""
    if "columns" in explanation:
        return {c["column"]: c["share"] for c in explanation["columns"]}
    return dict(explanation.get("shares", {}))


def share_of(view, inputs: np.ndarray, scores: np.ndarray, top: int = 50) -> dict[str, float]:
    """Each column's, word's (the ``top`` largest) or image cell's share of the mean
    absolute attribution over a sample (``inputs``: what the explainer read)."""
    if isinstance(view, TableView):
        magnitude = np.abs(view.by_column(scores)).mean(0)
        keys = view.columns
    elif isinstance(view, TextView):
        found: dict[str, float] = defaultdict(float)
        for row, line in zip(inputs, scores, strict=True):
            for word, total in view.id_words(row, line):
                found[word] += abs(total)
        total = max(sum(found.values()), 1e-12)
        ranked = sorted(found.items(), key=lambda item: -item[1])[:top]
        return {word: float(v / total) for word, v in ranked}
    else:
        grid = np.abs(view.grid(scores)).mean(0)
        keys = [f"cell {r},{c}" for r in range(grid.shape[0]) for c in range(grid.shape[1])]
        magnitude = grid.ravel()
    total = max(float(np.sum(magnitude)), 1e-12)
    return {k: float(v / total) for k, v in zip(keys, magnitude, strict=True)}


def headline(explanation: dict, top: int = 5) -> str:
    """One line of what the model relies on most (a registered version's tag)."""
    if "columns" in explanation:
        return ", ".join(f"{c['column']} {c['share']:.2f}" for c in explanation["columns"][:top])
    if "words" in explanation:
        return "; ".join(f"{c}: {' '.join(w for w, _ in found[:top]) or '-'}"
                         for c, found in explanation["words"].items())  # fmt: skip
    return f"saliency per class: {explanation.get('picture', '-')}"


# ---------------------------------------------------------------- pictures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_columns(columns: list[dict], png: Path, top: int = 15) -> None:
    plt = _pyplot()
    shown = columns[:top][::-1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.4 * len(shown) + 1.5), sharey=True)
    names = [c["column"] for c in shown]
    axes[0].barh(names, [c["share"] for c in shown], color="tab:blue")
    axes[0].set_xlabel("share of mean |attribution|")
    axes[1].barh(names, [c["permutation"] for c in shown], color="tab:orange")
    axes[1].set_xlabel("permutation importance (accuracy drop, validation)")
    fig.suptitle("what the model relies on, per column")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def draw_words(words: dict[str, list], png: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(len(words), 1), figsize=(4.5 * max(len(words), 1), 4.5),
                             squeeze=False)  # fmt: skip
    for ax, (c, found) in zip(axes[0], words.items(), strict=False):
        shown = found[::-1]
        ax.barh([w for w, _ in shown], [s for _, s in shown], color="tab:green")
        ax.set_title(f"words that push class {c}")
        ax.set_xlabel("mean attribution")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def draw_maps(maps: dict, png: Path, examples) -> None:
    """The mean map per class; under it, ``examples`` (images, their scores) side by side."""
    plt = _pyplot()
    rows = 2 if examples is not None else 1
    width = max(len(maps), 2 * len(examples[0]) if examples is not None else 0, 1)
    fig, axes = plt.subplots(rows, width, figsize=(1.6 * width, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (c, m) in zip(axes[0], maps.items(), strict=False):
        limit = max(float(np.abs(m).max()), 1e-12)
        ax.imshow(m, cmap="coolwarm", vmin=-limit, vmax=limit)
        ax.set_title(f"class {c}", fontsize=9)
    for k, (image, line) in enumerate(zip(*examples, strict=True) if examples else ()):
        picture = image if image.ndim == 2 else np.moveaxis(image, 0, -1).squeeze()
        axes[1][2 * k].imshow(picture, cmap="gray")
        axes[1][2 * k].set_title("test image", fontsize=8)
        line = line if line.ndim == 2 else line.sum(0)
        limit = max(float(np.abs(line).max()), 1e-12)
        axes[1][2 * k + 1].imshow(line, cmap="coolwarm", vmin=-limit, vmax=limit)
        axes[1][2 * k + 1].set_title("its map", fontsize=8)
    fig.suptitle("mean saliency per class (red: toward the class; blue: against)", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
