"""The prepare stage: fixed, stratified, reproducible splits."""

import hashlib

import numpy as np
import pytest

from components.core.splits import SPLITS, load_meta, load_split
from components.prepare.stage import prepare
from tests.helpers import small_params


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_prepare_writes_every_digit_once(tmp_path):
    params = small_params()
    prepared = prepare(params.data, params.seed, tmp_path / "p")
    assert sum(prepared.counts.values()) == 1797
    assert prepared.input_shape == (8, 8) and prepared.kind == "image"
    assert prepared.classes == list(range(10))
    splits = [load_split(tmp_path / "p", name) for name in SPLITS]
    # Every image lands in exactly one split: the splits hold the source's rows, each as
    # often as the source does (no row in two splits, none lost), not just their number.
    from sklearn.datasets import load_digits

    all_rows = np.concatenate([s.x.reshape(len(s), -1) for s in splits])
    source = load_digits().images.reshape(1797, -1).astype(np.float32)
    assert len(all_rows) == 1797
    mine, theirs = (np.unique(a, axis=0, return_counts=True) for a in (all_rows, source))
    assert np.array_equal(mine[0], theirs[0]) and np.array_equal(mine[1], theirs[1])
    seen = [{r.tobytes() for r in s.x.reshape(len(s), -1)} for s in splits]
    repeated = {r.tobytes() for r, n in zip(*theirs, strict=True) if n > 1}
    for i, a in enumerate(seen):  # two splits share a row only if the source repeats it
        for b in seen[i + 1 :]:
            assert (a & b) <= repeated
    for split in splits:
        assert split.x.dtype == np.float32 and split.y.dtype == np.int64
        # Stratified: every class in every split, shares close to the whole set's.
        shares = np.bincount(split.y, minlength=10) / len(split)
        assert shares.min() > 0.07 and shares.max() < 0.13
    assert load_meta(tmp_path / "p")["version"] == prepared.version


def test_prepare_is_byte_for_byte_reproducible(tmp_path):
    params = small_params()
    prepare(params.data, params.seed, tmp_path / "a")
    prepare(params.data, params.seed, tmp_path / "b")
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    other = small_params(data={"test_fraction": 0.25})
    assert (
        prepare(other.data, other.seed, tmp_path / "c").version
        != load_meta(tmp_path / "a")["version"]
    )


def test_missing_split_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the prepare stage first"):
        load_split(tmp_path, "train")


def test_synthetic_images_noise_sets_how_far_images_stray_from_their_class_pattern():
    from components.core.config import SyntheticSource
    from components.core.kinds.sources import synthetic

    def spread(noise: float) -> float:
        data = synthetic(SyntheticSource(kind="images", samples=400, noise=noise), seed=0)
        means = {c: data.images[data.labels == c].mean(axis=0) for c in set(data.labels)}
        return float(np.mean([np.std(img - means[c]) for img, c in
                              zip(data.images, data.labels, strict=True)]))  # fmt: skip

    assert spread(0.0) < 1e-3  # every image is its class's pattern (float32 means)
    assert 20 < spread(25.0) < 30  # the default
    assert spread(150.0) > 3 * spread(25.0)  # clipped at 0 and 255, still far wider
